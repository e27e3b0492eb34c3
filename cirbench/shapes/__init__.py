"""The synthetic shapes world: renderer, caption grammar, the shipped tiny CLIP and its pretraining.

Importing this package registers the backbone id ``shapes-clip:v1``.
"""

from cirbench.shapes.backbone import BACKBONE_ID, register

register()

__all__ = ["BACKBONE_ID"]
