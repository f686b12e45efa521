"""Mixup / CutMix with soft, label-smoothed targets (timm's ``Mixup``, batch mode, flip pairing).

Clips are ``[B, T, C, H, W]`` (or ``[B, C, H, W]``): every frame of a clip gets the same mix and
the same CutMix box. Random draws come from the epoch's ``torch.Generator``, so runs replay.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .config import TrainConfig

__all__ = ["smooth_one_hot", "mix_batch", "soft_cross_entropy"]


def smooth_one_hot(y: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    off = smoothing / num_classes
    return torch.full((y.shape[0], num_classes), off, device=y.device).scatter_(1, y[:, None], 1.0 - smoothing + off)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()


def mix_batch(
    x: torch.Tensor, y: torch.Tensor, *, num_classes: int, cfg: TrainConfig, epoch: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (inputs, soft targets); mixes with probability ``cfg.mixup_prob`` until ``mixup_off_epoch``."""
    target = smooth_one_hot(y, num_classes, cfg.label_smoothing)
    off = cfg.mixup_off_epoch is not None and epoch >= cfg.mixup_off_epoch
    # always draw the same numbers per batch, mixed or not, so the random stream does not depend on the outcome
    draws = torch.rand(2, generator=generator).tolist()
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    if off or (cfg.mixup_alpha <= 0 and cfg.cutmix_alpha <= 0) or draws[0] >= cfg.mixup_prob:
        return x, target
    use_cutmix = cfg.cutmix_alpha > 0 and (cfg.mixup_alpha <= 0 or draws[1] < 0.5)
    alpha = cfg.cutmix_alpha if use_cutmix else cfg.mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    if use_cutmix:
        H, W = x.shape[-2:]
        cut = np.sqrt(1.0 - lam)
        ch, cw = int(H * cut), int(W * cut)
        cy, cx = int(rng.integers(H)), int(rng.integers(W))
        y0, y1 = np.clip([cy - ch // 2, cy + ch // 2], 0, H)
        x0, x1 = np.clip([cx - cw // 2, cx + cw // 2], 0, W)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x.flip(0)[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (H * W)  # the area actually kept
    else:
        x = x * lam + x.flip(0) * (1.0 - lam)
    return x, target * lam + target.flip(0) * (1.0 - lam)
