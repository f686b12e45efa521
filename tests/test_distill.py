"""Distillation and fine-tuning starts: the loss against a hand computation, the teacher unmasked and frozen,
a masked student fine-tuned from its teacher, with every family."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import spikemask as sm
from spikemask.config import ConfigError
from spikemask.masking import SpikeMask
from spikemask.train import CheckpointError, fit, load_checkpoint, load_run_config, save_checkpoint
from spikemask.train.config import DistillConfig
from spikemask.train.distill import distillation_loss, load_teacher


def test_loss_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    target = rng.dirichlet(np.ones(4), size=5)
    tau, alpha = 3.0, 0.7

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    ps, pt = softmax(s / tau), softmax(t / tau)
    kl = np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), axis=1))
    ce = np.mean(-np.sum(target * np.log(softmax(s)), axis=1))
    expected = (1 - alpha) * ce + alpha * tau ** 2 * kl
    ours = distillation_loss(torch.tensor(s), torch.tensor(t), torch.tensor(target),
                             DistillConfig(teacher="x", temperature=tau, alpha=alpha))
    assert float(ours) == pytest.approx(expected, rel=1e-9)
    # alpha 0 is the plain loss; a student equal to its teacher pays no KL
    plain = distillation_loss(torch.tensor(s), torch.tensor(t), torch.tensor(target), DistillConfig(alpha=0.0))
    assert float(plain) == pytest.approx(ce)
    same = distillation_loss(torch.tensor(s), torch.tensor(s), torch.tensor(target), DistillConfig(alpha=1.0))
    assert float(same) == pytest.approx(0.0, abs=1e-12)


BASE = {"device": "cpu", "seed": 0, "data": {"name": "ndigits", "batch_size": 16}, "optim": {"lr": 3e-3},
        "schedule": {"epochs": 1, "warmup_epochs": 0, "cooldown_epochs": 0},
        "train": {"max_train_batches": 6, "max_eval_batches": 2, "eval_mask_seeds": 1, "mixup_prob": 0.0}}


@pytest.mark.parametrize("name", ["test_spikformer", "test_spikingformer"])
def test_a_masked_student_learns_from_its_unmasked_teacher(name, ndigits_root, tmp_path):
    teacher_cfg = load_run_config({**BASE, "name": "teacher", "out_dir": str(tmp_path),
                                   "model": {"name": name, "mask": {"ratio": 0.3}}})
    teacher_ckpt = fit(teacher_cfg).checkpoint
    teacher = load_teacher(DistillConfig(teacher=str(teacher_ckpt)), 10, torch.device("cpu"))
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    assert all(m.ratio == 0.0 for m in teacher.modules() if isinstance(m, SpikeMask))  # MST's teacher: unmasked
    kept = load_teacher(DistillConfig(teacher=str(teacher_ckpt), teacher_masks="as_saved"), 10, torch.device("cpu"))
    assert any(m.ratio == 0.3 for m in kept.modules() if isinstance(m, SpikeMask))

    student_cfg = load_run_config({
        **BASE, "name": "student", "out_dir": str(tmp_path),
        "model": {"name": name, "mask": {"ratio": 0.5}},
        "train": {**BASE["train"], "init_from": str(teacher_ckpt),
                  "distill": {"teacher": str(teacher_ckpt), "temperature": 2.0, "alpha": 0.8}}})
    # starting from the teacher: before any step the student's weights are the teacher's
    from spikemask.train.distill import init_from_checkpoint
    from spikemask.train.loop import build_model_for

    fresh = build_model_for(student_cfg)
    init_from_checkpoint(fresh, teacher_ckpt)
    t_state = load_checkpoint(teacher_ckpt)["model"]
    assert all(torch.equal(v, t_state[k]) for k, v in fresh.state_dict().items())
    result = fit(student_cfg)
    state = load_checkpoint(result.checkpoint)
    assert state["run_config"]["train"]["distill"]["alpha"] == 0.8
    assert state["model_config"]["mask"]["ratio"] == 0.5
    assert math.isfinite(result.history[0]["train_loss"])


def test_bad_teachers_and_starts_are_refused(ndigits_root, tmp_path):
    ckpt = save_checkpoint(tmp_path / "other.pt", sm.create_model("test_spikformer", num_classes=5))
    with pytest.raises(ConfigError, match="has 5 classes, the student 10"):
        load_teacher(DistillConfig(teacher=str(ckpt)), 10, torch.device("cpu"))
    cfg = load_run_config({**BASE, "name": "s", "out_dir": str(tmp_path), "model": {"name": "test_spikingformer"},
                           "train": {**BASE["train"], "init_from": str(ckpt)}})
    with pytest.raises(CheckpointError, match="holds a spikformer model, the run trains a spikingformer"):
        fit(cfg)
    with pytest.raises(ConfigError, match="train.distill.alpha"):
        load_run_config({**BASE, "model": {"name": "test_spikformer"}, "train": {"distill": {"alpha": 1.5}}})
