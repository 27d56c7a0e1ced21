"""Devices, process ranks and the collectives the trainer needs.

One process per device. Rank 0 alone writes logs, TensorBoard events and checkpoints;
every rank computes, and validation totals are summed over ranks so metrics are those of
one process that saw the whole split. How the processes get started lives in launch.py.
"""

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from project.errors import UserError


@dataclass(frozen=True)
class ProcessContext:
    """Where this process sits: its global rank, its rank on this node, how many in all."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes logs, TensorBoard events and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_environment(cls) -> "ProcessContext":
        """torchrun (and submitit's exported SLURM variables) set RANK, LOCAL_RANK, WORLD_SIZE."""
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
        )


SINGLE_PROCESS = ProcessContext()


def check_gpus(gpus: int) -> None:
    """More GPUs asked for than exist is an error before any work starts."""
    if gpus == 0:
        return
    available = torch.cuda.device_count()
    if gpus > available:
        raise UserError(
            f"trainer.gpus={gpus} but this machine has {available} CUDA device(s); use trainer.gpus=0 for the CPU"
        )


def gpu_indices(gpus: int, devices: list[int] | None, available: int) -> list[int]:
    """CUDA indices for `trainer.gpus` and `trainer.devices` (taken modulo the device count,
    so `trainer.devices=[${hydra:job.num}]` spreads the jobs of a sweep over the GPUs)."""
    if devices is None:
        return list(range(gpus))
    if len(devices) != gpus:
        raise UserError(
            f"trainer.devices={list(devices)} names {len(devices)} device(s) but trainer.gpus={gpus}; give one index per GPU"
        )
    return [index % available for index in devices]


def select_device(
    gpus: int, process: ProcessContext = SINGLE_PROCESS, devices: list[int] | None = None
) -> torch.device:
    """The CPU for `trainer.gpus=0`; otherwise this process's GPU (one per process under DDP)."""
    if gpus == 0:
        if process.distributed and "OMP_NUM_THREADS" not in os.environ:
            # DDP on the CPU: share the cores among this machine's ranks (as torchrun does),
            # or each rank starts a thread per core and they spin against each other.
            ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", process.world_size))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // ranks_here))
        return torch.device("cpu")
    check_gpus(1 if process.distributed else gpus)
    indices = gpu_indices(gpus, devices, torch.cuda.device_count())
    # Spawned workers and DP use the configured indices; torchrun/SLURM ranks their LOCAL_RANK.
    index = indices[process.local_rank] if process.local_rank < len(indices) else process.local_rank
    device = torch.device("cuda", index)
    torch.cuda.set_device(device)  # NCCL and cuDNN default to the current device
    return device


def inference_device(trained_gpus: int, gpus: int | None) -> torch.device:
    """evaluate.py and predict.py: one device, as in training (a run trained on N GPUs is
    evaluated on one) unless `gpus` says otherwise (0 = CPU)."""
    return select_device(min(trained_gpus, 1) if gpus is None else gpus)


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def wrap_model(
    model: nn.Module, strategy: str | None, device: torch.device, device_ids: list[int]
) -> nn.Module:
    """The model as the training step calls it: bare, DistributedDataParallel or DataParallel.
    Checkpoints always save the bare model (see `unwrap`), so they never carry `module.`."""
    if strategy == "ddp":
        device_ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if strategy == "dp":
        return nn.DataParallel(model, device_ids=device_ids)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DDP or DataParallel wrapper (or the model itself)."""
    if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
        return model.module
    return model


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """`trainer.sync_bn=true`: BatchNorm statistics over the global batch, not each GPU's.
    The modules are replaced on any device, but PyTorch runs SyncBatchNorm only on CUDA,
    so launch.plan_launch refuses sync_bn on the CPU before any work."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum `tensor` over ranks (in place); a no-op in a single process."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def sum_totals_over_ranks(
    totals: dict[str, Tensor], samples: int, device: torch.device
) -> tuple[dict[str, Tensor], int]:
    """Validation sums and sample count added over ranks: one all-reduce of every total
    (flattened into one float64 vector) and the count."""
    names = sorted(totals)
    shapes = [totals[name].shape for name in names]
    flat = torch.cat(
        [totals[name].reshape(-1) for name in names]
        + [torch.tensor([float(samples)], dtype=torch.float64, device=device)]
    )
    flat = all_reduce_sum(flat)
    summed, offset = {}, 0
    for name, shape in zip(names, shapes, strict=True):
        size = shape.numel()
        summed[name] = flat[offset : offset + size].reshape(shape)
        offset += size
    return summed, int(flat[-1].item())


def broadcast_buffers(module: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) to every rank. DDP broadcasts them at
    the start of each forward, so after the last training step each rank still holds the
    statistics of its own last batch; validation and the saved checkpoint must agree."""
    if dist.is_available() and dist.is_initialized():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if it is true on one: ranks must agree to stop at the same step,
    or the others would wait forever in the next collective."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


@contextlib.contextmanager
def main_process_first(process: ProcessContext) -> Iterator[None]:
    """Rank 0 runs the block before the other ranks do (they wait at a barrier). If rank 0
    fails inside, the launcher (our spawn, torchrun) ends the waiting ranks."""
    distributed = process.distributed and dist.is_available() and dist.is_initialized()
    if distributed and not process.is_main:
        dist.barrier()
    yield
    if distributed and process.is_main:
        dist.barrier()


@contextlib.contextmanager
def process_group(process: ProcessContext, device: torch.device, store=None) -> Iterator[None]:
    """Join the process group for one job (if distributed) and leave it at the end, so the
    next job of a multirun starts a fresh one."""
    if not process.distributed:
        yield
        return
    created = not dist.is_initialized()  # torchrun: launch.py may have created it already
    if created:
        dist.init_process_group(
            backend_for(device),
            store=store,
            rank=process.rank if store is not None else -1,
            world_size=process.world_size if store is not None else -1,
            device_id=device if device.type == "cuda" else None,
        )
    try:
        yield
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
