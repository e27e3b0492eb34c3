"""A process's place in a torchrun group, shared by distributed training (``lincir.distributed``) and distributed
evaluation (``evaluation.distributed``): one definition, so both read ranks the same way."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dist:
    """This process's place in the group (rank 0 of 1 when not under torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1
