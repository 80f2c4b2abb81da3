"""Training throughput of the default 64 px model (or another discriminator's) in every precision and memory layout the
"auto" probe considers, against plain fp32.

All trainers are the same model and recipe, timed in the same process, on the same synthetic
batch source (speed does not depend on what the pixels show). The achieved FLOP rate of the
chosen numerics is compared with a matrix multiply in the same precision on the same machine:
the ceiling a convolution network could approach.

    python benchmarks/throughput.py [--steps 32] [--res 64] [--discriminator projected]

The last line printed is
    img_per_s=... fp32_img_per_s=... speedup=... model_tflops=... gemm_tflops=... gemm_fraction=...
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from studio.config import TrainConfig
from studio.numerics import Numerics, candidates, time_steps
from studio.trainer import Trainer

_GEMM_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def gemm_tflops(precision: str, device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """Best-of-three dense matrix multiply rate, in TFLOP/s."""
    dtype = _GEMM_DTYPES[precision]
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    best = float("inf")
    for _ in range(3):
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / best / 1e12


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_per_ordinary_step(trainer: Trainer) -> float:
    """FLOPs of a step without the R1 penalty. (The counter cannot follow R1's double backward;
    leaving those extra FLOPs out makes the reported rate a lower bound.)"""
    while trainer.step_count % trainer.config.r1_interval == 0:
        trainer.step()
    with FlopCounterMode(display=False) as counter:
        trainer.step()
    return counter.get_total_flops()


def images_per_second(config: TrainConfig, images: torch.Tensor, numerics: Numerics,
                      warmup: int, steps: int) -> float:
    trainer = Trainer(config, images, numerics)
    seconds = time_steps(trainer.step, warmup=warmup, timed=steps)
    return config.batch_size / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=32, help="timed steps per numerics (default 32)")
    parser.add_argument("--res", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32,
                        help="images per step (default 32: large enough that per-step overheads do not hide the FLOP rate)")
    parser.add_argument("--discriminator", default=TrainConfig.discriminator, help="whose recipe to time")
    parser.add_argument("--projection-size", type=int, help="default twice --res, from 64 to 256")
    args = parser.parse_args()

    config = TrainConfig(discriminator=args.discriminator, resolution=args.res, batch_size=args.batch,
                         projection_size=args.projection_size)
    images = torch.randint(0, 256, (512, 3, args.res, args.res), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    chosen_trainer = Trainer(config, images)          # measures (or recalls) the fastest numerics
    chosen = chosen_trainer.numerics
    plain = Numerics(chosen.device, "fp32", channels_last=False)
    print(f"device {chosen.device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{config.discriminator} discriminator, batch {config.batch_size}; chosen numerics: {chosen.describe()}")

    step_flops = flops_per_ordinary_step(chosen_trainer)
    warmup = 3

    # Every precision and layout the probe considers, timed here in one run.
    rates = {n: images_per_second(config, images, n, warmup, args.steps) for n in candidates(config)}
    fp32_rate, chosen_rate = rates[plain], rates[chosen]
    for numerics, rate in rates.items():
        mark = "  <- chosen" if numerics == chosen else ""
        print(f"{numerics.describe():<26} {rate:6.1f} img/s  {rate / fp32_rate:.2f}x{mark}")

    model_tflops = step_flops * chosen_rate / config.batch_size / 1e12
    gemm = gemm_tflops(chosen.precision, chosen.device)
    fp32_gemm = gemm_tflops("fp32", chosen.device)
    print(f"training step: {step_flops / config.batch_size / 1e9:.2f} GFLOP per image")
    print(f"matrix multiply: {gemm:.3f} TFLOP/s in {chosen.precision}, {fp32_gemm:.3f} in fp32")
    print(f"img_per_s={chosen_rate:.2f} fp32_img_per_s={fp32_rate:.2f} speedup={chosen_rate / fp32_rate:.2f} "
          f"model_tflops={model_tflops:.3f} gemm_tflops={gemm:.3f} gemm_fraction={model_tflops / gemm:.2f}")


if __name__ == "__main__":
    main()
