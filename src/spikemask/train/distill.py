"""Knowledge distillation and fine-tuning starts: a masked student learns from an unmasked teacher.

MST (001_9e47b243e487ffe3.txt) fine-tunes the masked model from the unmasked one as a teacher, without
publishing a loss; spikemask uses Hinton et al.'s (2015): with student logits s, teacher logits t,
temperature τ and weight α,

    loss = (1 - α) · CE(s, targets) + α · τ² · KL(softmax(t / τ) || softmax(s / τ))

(the targets are those of the usual loss: label-smoothed, mixed when mixup is on; the teacher sees the
same mixed input). Works for every family, directly trained or QCFS ANNs alike.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError
from .checkpoint import CheckpointError, load_checkpoint, load_model, load_weights
from .config import DistillConfig
from .mixup import soft_cross_entropy

__all__ = ["distillation_loss", "load_teacher", "init_from_checkpoint"]

log = logging.getLogger(__name__)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor,
                      cfg: DistillConfig) -> torch.Tensor:
    """``(1 - α) CE(student, target) + α τ² KL(teacher || student)`` at temperature τ; ``target`` soft ``[B, C]``."""
    tau = cfg.temperature
    kl = F.kl_div(F.log_softmax(student / tau, dim=-1), F.log_softmax(teacher / tau, dim=-1), log_target=True,
                  reduction="batchmean")
    return (1 - cfg.alpha) * soft_cross_entropy(student, target) + cfg.alpha * tau * tau * kl


def load_teacher(cfg: DistillConfig, num_classes: int, device: torch.device) -> nn.Module:
    """The frozen teacher of ``cfg`` on ``device``, in eval mode, unmasked unless ``teacher_masks: as_saved``."""
    path = Path(cfg.teacher)
    teacher, _ = load_model(path, map_location=device)
    if getattr(teacher.config, "converted", False):
        raise ConfigError(f"train.distill.teacher {str(path)!r} is a converted SNN; distil from its ANN checkpoint")
    if teacher.config.num_classes != num_classes:
        raise ConfigError(f"train.distill.teacher {str(path)!r} has {teacher.config.num_classes} classes, "
                          f"the student {num_classes}")
    if cfg.teacher_masks == "off" and hasattr(teacher, "set_mask"):
        from ..masking import MaskConfig

        teacher.set_mask(MaskConfig(sites=teacher.config.mask.sites))  # ratio 0 everywhere
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    log.info("distilling from %s (τ = %g, α = %g, teacher masks %s)", path, cfg.temperature, cfg.alpha,
             cfg.teacher_masks)
    return teacher


def init_from_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load the weights of checkpoint ``path`` into ``model`` (same architecture; masks and T may differ)."""
    state = load_checkpoint(path)
    if state["family"] != getattr(model, "family", None):
        raise CheckpointError(f"train.init_from {str(path)!r} holds a {state['family']} model, the run trains a "
                              f"{getattr(model, 'family', type(model).__name__)}")
    if state["model_config"].get("converted"):
        raise CheckpointError(f"train.init_from {str(path)!r} is a converted SNN; start from its ANN checkpoint")
    load_weights(model, state["model"], path)
    log.info("initialised the weights from %s", path)
