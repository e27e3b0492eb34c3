"""The synthetic shapes world: renderer, caption grammar, the shipped tiny CLIP and its pretraining.

``cirbench.shapes.backbone`` registers the backbone id ``shapes-clip:v1`` (the backbone registry imports it on
first lookup).
"""
