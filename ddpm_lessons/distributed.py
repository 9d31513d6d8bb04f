"""Data-parallel training under ``torchrun``: the process group, and which slice of a batch is ours.

``torchrun --nproc_per_node=N -m ddpm_lessons train ...`` starts N copies of the same command with
RANK, LOCAL_RANK and WORLD_SIZE in their environment. Each copy draws the *same* global batch (same
seeds), keeps its own 1/N slice, and DistributedDataParallel averages the gradients, so N processes
take the same optimiser steps as one process with the whole batch (up to the order of float sums).
Without torchrun nothing here does anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: str = "cpu"  # where the collectives' tensors live: the GPU under NCCL

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and sample grids; the others only train."""
        return self.rank == 0

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's slice along dim 0 of a tensor drawn identically on every rank."""
        if self.size == 1:
            return x
        if len(x) % self.size:
            raise ValueError(f"a batch of {len(x)} does not split over {self.size} processes; use a multiple")
        n = len(x) // self.size
        return x[self.rank * n : (self.rank + 1) * n]

    def mean(self, value: float) -> float:
        """The mean of a number over all ranks (every rank gets it)."""
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.item() / self.size

    def max(self, value: float) -> float:
        """The largest value of a number over all ranks (every rank gets it)."""
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.item()

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one (e.g. a signal that reached only some processes)."""
        if self.size == 1:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(t)
        return bool(t.item())

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group, once every rank has finished. A process that exits still in a gloo group can
        abort while the interpreter shuts down ("terminate called without an active exception"), as gloo's worker
        threads outlive it; destroying the group first stops them while Python is still whole."""
        if self.size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def init_from_env() -> World:
    """Join the process group that torchrun describes in the environment, once; a World of one otherwise.

    NCCL where there are GPUs (one per process, by LOCAL_RANK), gloo on CPUs.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=size)
    return World(rank, size, local_rank, f"cuda:{local_rank}" if cuda else "cpu")
