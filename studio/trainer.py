"""One GAN training step per call, and everything a step needs to resume exactly.

The recipe is the few-shot one: the discriminator the config names (projected, FastGAN or DCGAN),
hinge loss, DiffAugment on reals and fakes (always on, or with ADA's adaptive probability), lazy
zero-centred R1 where the recipe has it, an exponential moving average of G (G_ema) that renders
every sample, and Adam. All randomness comes from the trainer's own torch.Generator, so a
checkpoint's state reproduces the next step bit for bit (on the same machine and numerics).

A step whose loss is not finite, or whose gradients explode, is not taken: it is reported in
`StepStats.diverged`, and what to do about it (roll back, see run.py) is the caller's choice.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass

import torch

from . import losses
from .augment import AdaptiveProbability, augment
from .config import TrainConfig
from .distributed import LOCAL, Ranks
from .models import build_discriminator, build_generator
from .numerics import Numerics, choose_numerics, time_steps

# A gradient norm above this is an explosion, not learning. Tiny runs of every recipe measured at
# most about 640 (D on its R1 steps; G stays under 100) and 3e4 (WGAN-GP's D in its first steps),
# so healthy training stays far below it, and an explosion passes it on its way to overflowing.
EXPLODING_GRADIENT_NORM = 1e7


@dataclass(frozen=True)
class StepStats:
    step: int                 # steps done, this one included
    images_seen: int          # real images shown to D so far
    loss_g: float
    loss_d: float             # adversarial part only
    loss_reconstruction: float
    r1: float | None          # squared gradient norm at the reals, on steps that regularise
    augment_p: float
    real_sign: float          # E[sign(D(real))]: near 1 means D is sure (overfitting), ADA's signal
    seconds: float            # wall time of this step
    # Why this step was not taken (a loss that is not finite, an exploding gradient norm); its
    # losses are then NaN, and the trainer's state is only fit to be rolled back from.
    diverged: str | None = None


class Trainer:
    def __init__(self, config: TrainConfig, images: torch.Tensor, numerics: Numerics | None = None,
                 ranks: Ranks = LOCAL):
        """`images`: uint8 (N, 3, R, R) at the config's resolution. With `numerics` None, the
        fastest allowed device precision and layout is measured (or read from the cache, by rank 0
        for all). With several `ranks`, this is one of them (distributed.py): `config.batch_size`
        is the batch of all ranks together."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError("images must be a uint8 tensor of shape (N, 3, H, W)")
        if images.shape[-1] != config.resolution or images.shape[-2] != config.resolution:
            raise ValueError(f"images are {images.shape[-1]} px, the config trains at {config.resolution} px")
        self.config = config
        self.ranks = ranks
        self.batch_per_rank = ranks.share_of_batch(config.batch_size)
        # The networks first: missing pretrained weights are reported before any speed probe.
        with torch.random.fork_rng(devices=[]):   # same initial weights for the same seed
            torch.manual_seed(config.seed)
            G, D = build_generator(config), build_discriminator(config)
        G, D = ranks.synchronise_batch_norm(G), ranks.synchronise_batch_norm(D)
        self.numerics = numerics or ranks.from_main(
            lambda: choose_numerics(config, lambda n: _probe(config, images, n)))
        device, layout = self.numerics.device, self.numerics.memory_format
        self.images = images.to(device)
        self.G = G.to(device, memory_format=layout)
        self.D = D.to(device, memory_format=layout)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        # What the step trains through: G and D themselves, or their DDP wrappers.
        self.G_parallel, self.D_parallel = ranks.data_parallel(self.G), ranks.data_parallel(self.D)
        betas = tuple(config.adam_betas)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=config.lr_d, betas=betas)
        scaler_on = self.numerics.needs_grad_scaler
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=scaler_on)
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=scaler_on)
        self.ada = AdaptiveProbability(config.augment_p_init, config.ada_target, config.ada_interval,
                                       config.ada_images_to_full, enabled=config.adaptive_augment)
        self.rng = torch.Generator().manual_seed(config.seed)
        self.step_count = 0
        self.images_seen = 0

    # ------------------------------------------------------------------ training
    def step(self) -> StepStats:
        """One step of D, then of G. A network whose loss or gradients show divergence takes no
        optimizer step and the step stops there, uncounted; by then the forward passes have moved
        the RNG and the BatchNorm statistics (G_ema's stay as they were)."""
        start = time.perf_counter()
        cfg, n = self.config, self.numerics
        self.ranks.seed_step(self.rng, cfg.seed, self.step_count)
        real = self._real_batch()
        z = self._latents(self.batch_per_rank)
        quarter = int(torch.randint(4, (1,), generator=self.rng))
        regularise = cfg.loss != "wgan-gp" and cfg.r1_gamma > 0 and self.step_count % cfg.r1_interval == 0

        with n.autocast():
            fake = self.G_parallel(z)

        # Discriminator: reals up, fakes down, reconstruct reals, R1 every few steps.
        real_aug = self._augment(real)
        if regularise:
            real_aug = real_aug.detach().requires_grad_(True)
        with n.autocast():
            real_logits, reconstruction = self._discriminate_real(real_aug, quarter)
            fake_logits = self.D_parallel(self._augment(fake.detach()))
            loss_d = losses.discriminator_loss(cfg.loss, real_logits, fake_logits)
            total_d = loss_d + cfg.reconstruction_weight * reconstruction
            r1 = None
            if regularise:
                r1 = losses.r1_penalty(real_logits, real_aug, scale=self.scaler_d.get_scale())
                total_d = total_d + (cfg.r1_gamma / 2) * r1 * cfg.r1_interval
            if cfg.loss == "wgan-gp":
                total_d = total_d + cfg.gp_weight * losses.gradient_penalty(
                    self.D_parallel, real_aug, self._augment(fake.detach()), self.rng)
        diverged = self._optimise(self.opt_d, self.scaler_d, total_d, "D")
        if diverged:
            return self._diverged(diverged, start)
        real_per_image = self.ranks.gather(real_logits.detach().float().flatten(1).mean(1, keepdim=True))
        self.ada.observe(real_per_image)

        # Generator: fool the freshly updated D on the same fakes (its gradients are G's alone:
        # G's wrapper averages them; D's BatchNorm still sees every rank's fakes).
        self.D.requires_grad_(False)
        with n.autocast():
            loss_g = losses.generator_loss(cfg.loss, self.D(self._augment(fake)))
        diverged = self._optimise(self.opt_g, self.scaler_g, loss_g, "G")
        self.D.requires_grad_(True)
        if diverged:
            return self._diverged(diverged, start)

        self.step_count += 1
        self.images_seen += cfg.batch_size
        self._update_ema()
        reported = torch.stack([loss_g, loss_d, reconstruction, loss_g if r1 is None else r1]).detach()
        loss_g_value, loss_d_value, reconstruction_value, r1_value = self.ranks.mean(reported).tolist()
        return StepStats(
            step=self.step_count,
            images_seen=self.images_seen,
            loss_g=loss_g_value,
            loss_d=loss_d_value,
            loss_reconstruction=reconstruction_value,
            r1=None if r1 is None else r1_value,
            augment_p=self.ada.p,
            real_sign=real_per_image.sign().mean().item(),
            seconds=time.perf_counter() - start,
        )

    def _real_batch(self) -> torch.Tensor:
        index = torch.randint(len(self.images), (self.batch_per_rank,), generator=self.rng)
        batch = self.images[index.to(self.images.device)].float().div_(127.5).sub_(1.0)
        return batch.contiguous(memory_format=self.numerics.memory_format)

    def _latents(self, count: int) -> torch.Tensor:
        return torch.randn(count, self.config.z_dim, generator=self.rng).to(self.numerics.device)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        return augment(x, self.ada.p, cfg.augment, cfg.flip, self.rng).contiguous(
            memory_format=self.numerics.memory_format)

    def _discriminate_real(self, real: torch.Tensor, quarter: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.D.has_decoder:
            return self.D_parallel(real, quarter)
        return self.D_parallel(real), torch.zeros((), device=real.device)

    def _diverged(self, reason: str, start: float) -> StepStats:
        return StepStats(step=self.step_count + 1, images_seen=self.images_seen, loss_g=math.nan, loss_d=math.nan,
                         loss_reconstruction=math.nan, r1=None, augment_p=self.ada.p, real_sign=math.nan,
                         seconds=time.perf_counter() - start, diverged=reason)

    def _optimise(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, loss: torch.Tensor,
                  network: str) -> str | None:
        """Backpropagate `loss` and step, unless the loss or the gradient norm says `network` is
        diverging: then the step is not taken and the reason is returned. Both numbers come back in
        one transfer: on a GPU, one wait per network and step. With several ranks the gradients
        are already averaged, and the loss is too, so that all ranks decide alike."""
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)   # the norm of the true gradients; a no-op without a scaler
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        checked = torch.stack([loss.detach().float(), torch.nn.utils.get_total_norm(grads)])
        loss_value, norm = self.ranks.mean(checked).tolist()
        diverged = _divergence(network, loss_value, norm, scaled=scaler.is_enabled())
        if diverged is None:
            scaler.step(optimizer)
        scaler.update()              # even when skipped: the scaler's next unscale_ needs it
        return diverged

    def scale_learning_rates(self, factor: float) -> None:
        """Both learning rates times `factor`, in the optimizers and in the config, which every
        later checkpoint records."""
        cfg = self.config
        self.config = dataclasses.replace(cfg, lr_g=cfg.lr_g * factor, lr_d=cfg.lr_d * factor)
        for optimizer, lr in ((self.opt_g, self.config.lr_g), (self.opt_d, self.config.lr_d)):
            for group in optimizer.param_groups:
                group["lr"] = lr

    @torch.no_grad()
    def _update_ema(self) -> None:
        """G_ema <- lerp towards G with a half-life in images, ramped up early (StyleGAN2-ADA),
        so a short run's samples are not dominated by the random initial weights."""
        cfg = self.config
        half_life = cfg.ema_half_life_images
        if cfg.ema_rampup > 0:
            half_life = min(half_life, self.images_seen * cfg.ema_rampup)
        keep = 0.5 ** (cfg.batch_size / max(half_life, 1e-8))
        ema_params = list(self.G_ema.parameters())
        torch._foreach_lerp_(ema_params, list(self.G.parameters()), 1 - keep)
        for ema_buffer, buffer in zip(self.G_ema.buffers(), self.G.buffers()):
            if ema_buffer.is_floating_point():   # BatchNorm running statistics
                ema_buffer.lerp_(buffer, 1 - keep)
            else:
                ema_buffer.copy_(buffer)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], float32 on the CPU, rendered by G_ema."""
        with self.numerics.autocast():
            images = self.G_ema(z.to(self.numerics.device))
        return images.float().clamp(-1, 1).cpu()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "step": self.step_count,
            "images_seen": self.images_seen,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "augment": self.ada.state_dict(),
            "rng": self.rng.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
        self.images_seen = int(state["images_seen"])
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if state["scaler_g"]:
            self.scaler_g.load_state_dict(state["scaler_g"])
            self.scaler_d.load_state_dict(state["scaler_d"])
        self.ada.load_state_dict(state["augment"])
        self.rng.set_state(state["rng"])


def _divergence(network: str, loss: float, norm: float, scaled: bool) -> str | None:
    """Why a step of `network` must not be taken, or None. Under a grad scaler (fp16) gradients
    that overflow are routine: the scaler skips that step itself and lowers its scale."""
    if not math.isfinite(loss):
        return f"{network}'s loss is {loss}"
    overflow = not math.isfinite(norm)
    if (overflow and not scaled) or (not overflow and norm > EXPLODING_GRADIENT_NORM):
        return f"{network}'s gradient norm is {norm:.3g}"
    return None


def _probe(config: TrainConfig, images: torch.Tensor, numerics: Numerics) -> float:
    """Seconds per step of a throwaway trainer, inf if its losses are not finite."""
    trainer = Trainer(config, images, numerics)
    finite = True

    def one_step() -> None:
        nonlocal finite
        stats = trainer.step()
        finite = finite and math.isfinite(stats.loss_g) and math.isfinite(stats.loss_d)

    seconds = time_steps(one_step)
    return seconds if finite else math.inf
