"""Training throughput on 1 and on N processes (torch.distributed over gloo on the CPU, NCCL on
CUDA GPUs, one per rank), same model, same global batch, same numerics, in one run.

One process is the ordinary single-process trainer with all the machine's threads; N ranks are
what `torchrun --nproc_per_node N` starts (distributed.py), each with its share of the threads and
of the batch. Images/s counts the global batch: the model's speed of learning, not one rank's.

    python benchmarks/scaling.py [--ranks 2] [--steps 30] [--res 64] [--batch 32] [--discriminator fastgan]

The last line printed is
    ranks=1 img_per_s=...  ranks=N img_per_s=...  speedup=...
"""
from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from studio import distributed
from studio.config import TrainConfig
from studio.numerics import Numerics
from studio.trainer import Trainer


def synthetic_images(resolution: int) -> torch.Tensor:
    return torch.randint(0, 256, (512, 3, resolution, resolution), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))


def images_per_second(trainer: Trainer, warmup: int, steps: int) -> float:
    """Global images/s over `steps` steps after `warmup`, every rank starting and ending together."""
    def barrier() -> None:
        if trainer.ranks.parallel:
            dist.barrier()
        if trainer.numerics.device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        trainer.step()
    barrier()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    barrier()
    return trainer.config.batch_size * steps / (time.perf_counter() - start)


def _rank(rank: int, world: int, port: int, config: TrainConfig, numerics: Numerics, threads: int,
          warmup: int, steps: int, out: Path) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    ranks = distributed.join(config.device)
    rate = images_per_second(Trainer(config, synthetic_images(config.resolution), numerics, ranks), warmup, steps)
    if ranks.is_main:
        out.write_text(str(rate))
    distributed.leave()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=2, help="processes to compare with one (default 2)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps each (default 30)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--res", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32, help="the global batch (default 32)")
    parser.add_argument("--discriminator", default=TrainConfig.discriminator)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    config = TrainConfig(discriminator=args.discriminator, resolution=args.res, batch_size=args.batch,
                         device=args.device)
    single = Trainer(config, synthetic_images(args.res))     # measures (or recalls) the fastest numerics
    numerics = single.numerics
    threads = torch.get_num_threads()
    cuda = numerics.device.type == "cuda"
    print(f"{numerics.describe()}, torch {torch.__version__}, {os.cpu_count()} CPUs; {config.discriminator} D, "
          f"{args.res} px, global batch {args.batch}")

    one = images_per_second(single, args.warmup, args.steps)
    print(f"1 process, {threads} threads: {one:.1f} img/s")
    per_rank_threads = threads if cuda else max(1, threads // args.ranks)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "rate"
        mp.start_processes(_rank, args=(args.ranks, _free_port(), config, numerics, per_rank_threads, args.warmup,
                                        args.steps, out), nprocs=args.ranks, start_method="spawn")
        many = float(out.read_text())
    print(f"{args.ranks} ranks, {per_rank_threads} threads each: {many:.1f} img/s")
    print(f"ranks=1 img_per_s={one:.2f}  ranks={args.ranks} img_per_s={many:.2f}  speedup={many / one:.2f}")


if __name__ == "__main__":
    main()
