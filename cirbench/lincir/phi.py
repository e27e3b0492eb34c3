"""The trainer's phi is ``cirbench.phi.Phi`` (shared with inference); this name is kept for the parity tests,
which import ``cirbench.lincir.phi.Phi`` and stay untouched."""

from cirbench.phi import Phi

__all__ = ["Phi"]
