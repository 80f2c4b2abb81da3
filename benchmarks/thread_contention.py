"""Training speed when something else wants the CPU too, with OpenMP's idle threads spinning (GNU
OpenMP's default, which the studio keeps), spinning briefly, or sleeping (OMP_WAIT_POLICY=PASSIVE).

A laptop is never idle: a browser, the studio's own web server, a music player. On 2 cores,
OpenMP threads that spin between parallel regions could take the core from the thread with work
to do; threads that sleep must be woken for every parallel region. Each case runs in a fresh
process (the policy is read when OpenMP loads) and times training steps of a 64 px model after a
warm-up; "busy" adds one process that spins a core in pure Python, as a stand-in for any other
program.

    python benchmarks/thread_contention.py [--steps 30] [--discriminator projected]

The last line printed is JSON with images/s for every case.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

# The environment of each case; GNU OpenMP spins 300,000 times before it sleeps, by default.
POLICIES = {"spin (OpenMP's default)": {}, "short spin (GOMP_SPINCOUNT=10000)": {"GOMP_SPINCOUNT": "10000"},
            "sleep (OMP_WAIT_POLICY=PASSIVE)": {"OMP_WAIT_POLICY": "PASSIVE"}}
_OPENMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
BUSY_LOOP = "while True: pass"


def child(discriminator: str, steps: int) -> None:
    import torch

    from studio.config import TrainConfig
    from studio.trainer import Trainer

    images = torch.randint(0, 256, (256, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    trainer = Trainer(TrainConfig(discriminator=discriminator, resolution=64), images)   # "auto" numerics, as users get
    for _ in range(5):
        trainer.step()
    seconds = statistics.median(trainer.step().seconds for _ in range(steps))
    print(json.dumps({"img_per_s": trainer.config.batch_size / seconds, "numerics": trainer.numerics.describe()}))


def run_case(policy: dict, busy: bool, args) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _OPENMP_VARIABLES} | policy
    competitor = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if busy else None
    try:
        out = subprocess.run([sys.executable, __file__, "--child", "--discriminator", args.discriminator,
                              "--steps", str(args.steps)], env=env, capture_output=True, text=True, check=True)
    finally:
        if competitor:
            competitor.kill()
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per case (median taken)")
    parser.add_argument("--discriminator", default="projected")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.discriminator, args.steps)
        return
    results = {}
    for label, policy in POLICIES.items():
        for busy in (False, True):
            case = f"{label}, {'one other busy process' if busy else 'idle machine'}"
            results[case] = run_case(policy, busy, args)
            print(f"{case:<66} {results[case]['img_per_s']:6.1f} img/s  ({results[case]['numerics']})", flush=True)
    print(json.dumps({"discriminator": args.discriminator, "steps": args.steps, "results": results}))


if __name__ == "__main__":
    main()
