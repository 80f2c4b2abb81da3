"""Training on several processes (distributed.py), on the CPU over gloo with 2 ranks: the gradients
are those of one process on both ranks' images, the ranks stay identical, a run stopped and
resumed on 2 ranks is the run never stopped, and a rank that dies ends the run with a message and
an intact checkpoint that resumes on any number of processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from browser import free_port
from conftest import CPU_FP32, TINY, draw_shapes, images_tensor, wait_for
from studio import distributed
from studio.checkpoint import latest_checkpoint, list_checkpoints, step_of
from studio.cli import main
from studio.config import TrainConfig
from studio.run_folder import read_log
from studio.trainer import Trainer

WORLD = 2
TINY_TRAIN = ["--res", "32", "--width", "8", "--batch", "4", "--z-dim", "16", "--device", "cpu",
              "--precision", "fp32", "--memory-format", "contiguous", "--preview-minutes", "60"]
# The same images, latents and no augmentation on both sides, and no reconstruction loss (whose
# random quarter each rank draws for itself): what differs is only who computes what.
UNION = dict(batch_size=8, augment=(), flip=False, augment_p_init=0.0, adaptive_augment=False,
             reconstruction_weight=0.0)
# Summing a batch in another order changes single elements of these gradients by up to 5% (those
# near 0), but each tensor by about 2e-6 of its norm: the ranks must agree with one process as
# closely as that, give or take 50 times.
GRADIENT_TOLERANCE = 1e-4
DISCRIMINATORS = {"fastgan": {}, "projected": dict(discriminator="projected", projection_size=64)}


def images() -> torch.Tensor:
    return images_tensor(draw_shapes(16, 32, seed=1))


class FixedBatches(Trainer):
    """Each rank trains on its slice of one fixed batch of reals and latents."""
    reals = images()[:8].float().div(127.5).sub(1.0)
    latents = torch.randn(8, TINY["z_dim"], generator=torch.Generator().manual_seed(0))

    def _slice(self, batch: torch.Tensor) -> torch.Tensor:
        start = self.ranks.rank * self.batch_per_rank
        return batch[start:start + self.batch_per_rank].clone()

    def _real_batch(self) -> torch.Tensor:
        return self._slice(self.reals)

    def _latents(self, count: int) -> torch.Tensor:
        return self._slice(self.latents)


class Recording(Trainer):
    """Remembers the reals it drew."""

    def _real_batch(self) -> torch.Tensor:
        batch = super()._real_batch()
        self.drawn = getattr(self, "drawn", []) + [batch]
        return batch


def gradients(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in network.named_parameters() if p.grad is not None}


def _rank(rank: int, port: int, out: Path) -> None:
    """One rank, as torchrun would start it: both checks, results into `out`."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ranks = distributed.join("cpu", timeout_minutes=2)
    results = {}
    for name, changes in DISCRIMINATORS.items():
        trainer = FixedBatches(TrainConfig(**{**TINY, **UNION, **changes}), images(), CPU_FP32, ranks)
        stats = trainer.step()
        results[f"union-{name}"] = {"D": gradients(trainer.D), "G": gradients(trainer.G), "loss_d": stats.loss_d,
                                    "r1": stats.r1}
    # ADA adjusts p at every step, always upwards (every E[sign] is above a target of -2), by the
    # number of images its statistic counted over the images to full: 4 / 200 for the global batch,
    # 2 / 200 for one rank's.
    config = TrainConfig(**{**TINY, "r1_interval": 3, "ada_interval": 1, "ada_images_to_full": 200,
                            "ada_target": -2.0})
    trainer = Recording(config, images(), CPU_FP32, ranks)
    for _ in range(6):
        trainer.step()
    results["six-steps"] = {"state": trainer.state_dict(), "drawn": trainer.drawn}
    torch.save(results, out / f"rank{rank}.pt")
    distributed.leave()


@pytest.fixture(scope="module")
def ranks_results(tmp_path_factory) -> list[dict]:
    """What each of 2 ranks computed (spawned once for all the tests that read it)."""
    out = tmp_path_factory.mktemp("ranks")
    mp.start_processes(_rank, args=(free_port(), out), nprocs=WORLD, start_method="spawn")
    return [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD)]


# ---------------------------------------------------------------- one model on two ranks
@pytest.mark.parametrize("discriminator", DISCRIMINATORS)
def test_gradients_over_two_ranks_are_one_process_gradients_on_both_batches(ranks_results, discriminator):
    """Half the batch on each rank, BatchNorm over both halves and the R1 step (of the FastGAN D's
    recipe) included: G's and D's gradients are those of one process on the whole batch."""
    single = FixedBatches(TrainConfig(**{**TINY, **UNION, **DISCRIMINATORS[discriminator]}), images(), CPU_FP32)
    stats = single.step()
    assert stats.diverged is None and (stats.r1 is not None) == (discriminator == "fastgan")
    expected = {"D": gradients(single.D), "G": gradients(single.G)}
    for rank in ranks_results:
        got = rank[f"union-{discriminator}"]
        assert got["loss_d"] == pytest.approx(stats.loss_d, rel=1e-5)
        assert got["r1"] == (None if stats.r1 is None else pytest.approx(stats.r1, rel=1e-4))
        for network in ("D", "G"):
            assert got[network].keys() == expected[network].keys() and expected[network]
            for name, grad in expected[network].items():
                error = (got[network][name] - grad).norm() / grad.norm().clamp_min(1e-30)   # the unused decoders: 0
                assert error < GRADIENT_TOLERANCE, f"{network}.{name} is off by {error:.2g} of its norm"



def test_two_ranks_draw_their_own_batches_and_hold_identical_models(ranks_results):
    first, second = (rank["six-steps"] for rank in ranks_results)
    assert not any(torch.equal(a, b) for a, b in zip(first["drawn"], second["drawn"]))
    assert first["state"]["augment"]["p"] == pytest.approx(6 * 4 / 200)   # ADA counted both ranks' images
    assert first["state"]["augment"] == second["state"]["augment"]
    for network in ("G", "D", "G_ema"):             # weights, BatchNorm statistics, spectral norm's vectors
        a, b = first["state"][network], second["state"][network]
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], torch.Tensor):
                assert torch.equal(a[key], b[key]), f"{network}.{key} differs between the ranks"
    for optimizer in ("opt_g", "opt_d"):
        for slot, state in first["state"][optimizer]["state"].items():
            for key, value in state.items():
                assert torch.equal(value, second["state"][optimizer]["state"][slot][key])


# ---------------------------------------------------------------- torchrun, end to end
def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
            "--master_port", str(free_port()), "-m", "studio", *args]


def run_torchrun(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(torchrun(*args), capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_a_two_rank_run_stopped_and_resumed_is_the_run_never_stopped(dataset32, tmp_path):
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    run_torchrun("train", str(dataset32), "--out", str(whole), "--steps", "6", *TINY_TRAIN)
    run_torchrun("train", str(dataset32), "--out", str(halves), "--steps", "3", *TINY_TRAIN)
    resumed = run_torchrun("train", str(dataset32), "--out", str(halves), "--steps", "6", "--resume", *TINY_TRAIN)

    assert json.loads(resumed.stdout.splitlines()[-1])["step"] == 6
    assert resumed.stdout.count("Resuming") == 1    # rank 0 alone speaks
    _, expected = latest_checkpoint(whole)
    _, got = latest_checkpoint(halves)
    assert got["step"] == expected["step"] == 6 and got["images_seen"] == 24   # the batch of 4 is global
    for network in ("G", "D", "G_ema"):
        for key, value in expected[network].items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(got[network][key], value), f"{network}.{key}"
    assert got["augment"] == expected["augment"]

    def without_time(rows):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]
    assert without_time(read_log(halves)) == without_time(read_log(whole))
    assert [row["step"] for row in read_log(whole)] == [1, 2, 3, 4, 5, 6]


def _worker_of_rank(launcher: int, rank: int) -> int:
    """The pid of the process torchrun (`launcher`) started as `rank`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environment = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if parent == launcher and f"RANK={rank}".encode() in environment:
            return int(entry.name)
    return 0


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds torchrun's workers through Linux's /proc")
def test_a_rank_that_dies_ends_the_run_with_a_message_and_an_intact_checkpoint(dataset32, tmp_path, capsys):
    run_dir = tmp_path / "run"
    launcher = subprocess.Popen(torchrun("train", str(dataset32), "--out", str(run_dir), "--checkpoint-minutes",
                                         "0.001", *TINY_TRAIN),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        wait_for(lambda: any(step_of(p) >= 2 for p in list_checkpoints(run_dir)), timeout=120)
        os.kill(wait_for(lambda: _worker_of_rank(launcher.pid, 1)), signal.SIGKILL)
        _, stderr = launcher.communicate(timeout=120)   # a hang fails here
    finally:
        launcher.kill()
    assert launcher.returncode != 0
    assert "another process of this run ended or stopped answering, so this one stops too" in stderr
    assert "is intact. Continue with --resume" in stderr

    path, payload = latest_checkpoint(run_dir)       # loads: the kill cut no file short
    step = payload["step"]
    capsys.readouterr()
    assert main(["train", str(dataset32), "--out", str(run_dir), "--resume", "--steps", str(step + 2),
                 *TINY_TRAIN]) == 0                   # and resumes on one process
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["step"] == step + 2
