"""Training on several processes: `torchrun --nproc_per_node N -m hiercore train ...`.

torchrun starts N copies of the command with RANK, LOCAL_RANK and WORLD_SIZE set; `join`
reads them, joins the process group (NCCL on GPUs, gloo on CPUs) and picks this
process's device. Training then wraps its step in `DistributedDataParallel`, each process
reads every WORLD_SIZE-th image of one shared shuffled order (`DistributedSampler`), and
only rank 0 writes the run folder. `batch_size` is per process: N processes of batch B
train like one of batch N × B (the gradients are averaged over processes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    """Where this process stands among those of one run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """The process that writes files and reports progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def from_env() -> Processes:
    """This process's place, from the variables torchrun sets (one process when unset)."""
    return Processes(
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("WORLD_SIZE", "1")),
        int(os.environ.get("LOCAL_RANK", "0")),
    )


def join(device: torch.device) -> tuple[Processes, torch.device]:
    """Join the run's process group when there are several processes; this one's device."""
    procs = from_env()
    if not procs.distributed:
        return procs, device
    if device.type == "cuda":
        device = torch.device("cuda", procs.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return procs, device


def leave(procs: Processes) -> None:
    if procs.distributed and dist.is_initialized():
        dist.destroy_process_group()
