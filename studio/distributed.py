"""Training one model on several processes: torch.distributed under torchrun.

`torchrun --nproc_per_node N -m studio train ...` starts N copies of the command, one per GPU (or
CPU process); each calls `join()` and becomes one rank of the run:

- Every rank draws its own share of the batch and its own augmentation, from a generator seeded
  at each step from (run seed, rank, step): a run resumed on the same ranks draws what it would
  have drawn, and no state of the other ranks' generators has to be gathered into checkpoints.
- G and D are wrapped in DistributedDataParallel, which averages their gradients (the R1 step's
  too) and broadcasts rank 0's buffers, spectral norm's power-iteration vectors among them, at
  each forward. BatchNorm normalises over every rank's images (`GlobalBatchNorm2d`).
- Whatever decides the run's course is the same on every rank: losses and ADA's statistic are
  reduced over the ranks, so divergence and the augmentation probability agree, and whether to
  stop (the budget, Ctrl-C, a SIGTERM) is decided by rank 0 and sent to all (`should_stop`).
- Rank 0 alone reads and writes the run folder; what the others need from it (a checkpoint, the
  dataset's path) it reads and broadcasts (`from_main`), so the folder need not be shared between
  machines. The dataset must be on every machine, at the same path.

One process (`LOCAL`) runs the same code with every collective a no-op: a run without torchrun
behaves as it always did.
"""
from __future__ import annotations

import datetime
import hashlib
import os
import signal
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from .config import ConfigError
from .numerics import resolve_device

T = TypeVar("T")

# How long a rank waits in a collective for the others before it gives up. Rank 0 alone measures
# KID and writes checkpoints while the others wait at their next step, and a full disk pauses it
# until space is freed, so this is long; a rank whose process ends is noticed at once anyway
# (its connections close).
DEFAULT_TIMEOUT_MINUTES = 30.0


@dataclass
class Ranks:
    """This process's place among the processes training one model."""
    rank: int = 0
    world_size: int = 1
    stop_requested: bool = False  # by a signal to this process
    interrupted: bool = False     # the run was stopped by a signal to any of its processes

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    # ------------------------------------------------------------------ the batch and its randomness
    def share_of_batch(self, batch_size: int) -> int:
        """Images each rank draws per step; `batch_size` is the global batch."""
        if batch_size % self.world_size:
            raise ConfigError(f"the batch of {batch_size} cannot be shared evenly by {self.world_size} processes: "
                              f"choose a --batch that is a multiple of {self.world_size}")
        share = batch_size // self.world_size
        if share < 2 and self.parallel:   # BatchNorm of one image is zero
            raise ConfigError(f"a batch of {batch_size} gives each of {self.world_size} processes fewer than 2 "
                              f"images: use at least --batch {2 * self.world_size}")
        return share

    def seed_step(self, generator: torch.Generator, seed: int, step: int) -> None:
        """Reseed a rank's generator for `step` (ranks of one process keep theirs going)."""
        if self.parallel:
            digest = hashlib.sha256(f"{seed}/{self.rank}/{step}".encode()).digest()
            generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)

    # ------------------------------------------------------------------ networks
    def synchronise_batch_norm(self, module: nn.Module) -> nn.Module:
        """`module` with each BatchNorm2d normalising over the batch of every rank."""
        if self.parallel:
            for child in module.modules():
                if type(child) is nn.BatchNorm2d:
                    child.__class__ = GlobalBatchNorm2d   # the same parameters and state-dict keys
        return module

    def data_parallel(self, module: nn.Module) -> nn.Module:
        """`module` as a training step runs it: a DistributedDataParallel wrapper, which averages
        gradients over the ranks, or the module itself in one process."""
        if not self.parallel:
            return module
        return nn.parallel.DistributedDataParallel(module)   # which broadcasts rank 0's buffers by default

    # ------------------------------------------------------------------ agreeing
    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of `values` over the ranks (a copy; the tensor itself in one process)."""
        if not self.parallel:
            return values
        values = values.clone()
        dist.all_reduce(values)
        return values / self.world_size

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        """Every rank's `values` (equal shapes), concatenated in rank order along dim 0."""
        if not self.parallel:
            return values
        every = [torch.empty_like(values) for _ in range(self.world_size)]
        dist.all_gather(every, values.contiguous())
        return torch.cat(every)

    def from_main(self, compute: Callable[[], T]) -> T:
        """`compute()` on rank 0, its result (or its exception) on every rank."""
        if not self.parallel:
            return compute()
        box: list = [None]
        if self.is_main:
            try:
                box[0] = (True, compute())
            except Exception as error:    # every rank raises it, none waits for a result forever
                box[0] = (False, error)
        dist.broadcast_object_list(box, src=0, device=_collective_device())
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def should_stop(self, decide: Callable[[], bool]) -> bool:
        """Whether to stop now: rank 0's `decide()` (its budget, its caller's stop), or a signal to
        any rank. All ranks get the same answer at the same step; `interrupted` says it was a
        signal."""
        if not self.parallel:
            return decide()
        flags = torch.tensor([float(self.is_main and decide()), float(self.stop_requested)],
                             device=_collective_device())
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        self.interrupted = bool(flags[1])
        return bool(flags.max())

    def request_stop(self, signum, frame) -> None:
        """A signal handler: stop at the next step, all ranks together, with a checkpoint."""
        self.stop_requested = True


LOCAL = Ranks()
_current = LOCAL


def current() -> Ranks:
    """The ranks this process trains with: those `join()` joined, else this process alone."""
    return _current


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device: str = "auto", timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES) -> Ranks:
    """Join the processes torchrun started (its environment says which), over NCCL on CUDA and
    gloo otherwise; on CUDA each rank takes the GPU of its local rank. Ctrl-C and SIGTERM then
    stop every rank at the same step, with a checkpoint. Without torchrun: this process alone."""
    global _current
    if not launched_by_torchrun():
        return _current
    if not dist.is_initialized():
        cuda = resolve_device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo",
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    _current = Ranks(rank=dist.get_rank(), world_size=dist.get_world_size())
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _current.request_stop)
    return _current


def leave() -> None:
    global _current
    if dist.is_initialized():
        dist.destroy_process_group()
    _current = LOCAL


def _collective_device() -> torch.device:
    """Where small tensors for collectives live: NCCL takes only GPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# Marks of a collective that failed because a rank is gone: its process ended (connections reset
# or closed) or stopped answering (the timeout).
_LOST_RANK_MARKS = ("connection", "closed", "reset by peer", "timed out", "timeout", "nccl", "gloo")


def lost_rank(error: BaseException) -> bool:
    """Whether `error` says that another rank of the run has gone."""
    if not (dist.is_available() and dist.is_initialized() and isinstance(error, (RuntimeError, dist.DistError))):
        return False
    text = str(error).lower()
    return isinstance(error, dist.DistError) or any(mark in text for mark in _LOST_RANK_MARKS)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of every rank's images together.

    torch's SyncBatchNorm does this on GPUs only, and its backward cannot be differentiated again,
    which R1 does (it backpropagates through D's gradient). This one is built from differentiable
    operations and a differentiable all-reduce, so it runs on gloo and NCCL and under R1. In eval
    mode, and outside a process group, it is plain BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        world = dist.get_world_size()
        local = x.float()
        count = local.numel() // local.shape[1] * world
        # Two passes, as BatchNorm2d computes it: the variance as E[x²] - E[x]² loses most of its
        # digits in fp32 where a channel's mean is large next to its spread, which moved the FastGAN
        # D's gradients by 1% against one process on one CPU and not on another.
        mean = _Sum.apply(local.sum((0, 2, 3))) / count
        centred = local - mean[None, :, None, None]
        variance = _Sum.apply(centred.square().sum((0, 2, 3))) / count
        if self.track_running_stats:
            self._track(mean.detach(), variance.detach(), count)
        y = centred * torch.rsqrt(variance + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, variance: torch.Tensor, count: int) -> None:
        self.num_batches_tracked.add_(1)
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        self.running_mean.lerp_(mean, momentum)
        self.running_var.lerp_(variance * count / max(count - 1, 1), momentum)   # unbiased, as BatchNorm2d's


class _Sum(torch.autograd.Function):
    """The sum over the ranks of a tensor, differentiable any number of times: the gradient of a
    sum that every rank holds is the sum of every rank's gradient, again over the ranks."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _Sum.apply(grad)
