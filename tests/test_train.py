"""The training loop: reproducible, resumable, NaN-safe; schedule, mixup, augmentation and run outputs."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

import spikemask as sm
from spikemask.config import ConfigError, to_dict
from spikemask.train import NonFiniteLossError, TrainConfig, build_model_for, fit, load_checkpoint, load_run_config
from spikemask.train.augment import random_translate
from spikemask.train.config import ScheduleConfig
from spikemask.train.loop import _param_groups
from spikemask.train.mixup import mix_batch, smooth_one_hot
from spikemask.train.schedule import lr_at

BASE = {
    "device": "cpu",
    "seed": 0,
    "model": {"name": "test_spikformer"},
    "data": {"name": "ndigits", "batch_size": 8},
    "optim": {"lr": 3e-3},
    "schedule": {"epochs": 2, "warmup_epochs": 1, "warmup_lr": 1e-4, "min_lr": 1e-5, "cooldown_epochs": 0},
    "train": {"max_train_batches": 3, "max_eval_batches": 2, "eval_mask_seeds": 2},
}
# every random source of the loop at once: masks from the global generator, mixup/cutmix, translation
BASE_WD = 0.06  # OptimConfig's default weight decay
RANDOM = ["model.mask.ratio=0.5", "model.mask.seed=null", "data.translate=2", "train.mixup_prob=0.8",
          "train.mixup_alpha=0.5", "train.cutmix_alpha=1.0"]


def tiny(tmp_path, name: str, *overrides: str):
    return load_run_config({**BASE, "name": name, "out_dir": str(tmp_path / "runs")}, list(overrides))


def metrics(run_dir) -> list[dict]:
    """metrics.jsonl without the wall-clock times."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time_s"} for r in rows]


def weights(path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- reproducibility and resume


def test_same_config_gives_same_numbers(ndigits_root, tmp_path):
    a = fit(tiny(tmp_path, "a", *RANDOM))
    b = fit(tiny(tmp_path, "b", *RANDOM))
    c = fit(tiny(tmp_path, "c", *RANDOM, "seed=1"))
    assert metrics(a.run_dir) == metrics(b.run_dir)
    assert len(metrics(a.run_dir)) == 2
    assert same_weights(weights(a.checkpoint), weights(b.checkpoint))
    assert a.final == b.final
    # the comparison can tell runs apart: another seed changes the weights
    assert not same_weights(weights(a.checkpoint), weights(c.checkpoint))


def test_compiled_training_steps_give_the_same_run(ndigits_root, tmp_path):
    """``train.compile``: torch.compile's tracing (backend ``eager``: dynamo, no code generation, seconds instead
    of the minutes inductor takes here) runs the same operations, so the same weights; checkpoints hold the
    module itself (no ``_orig_mod.`` keys). Weights agree to float rounding (the traced backward may sum
    gradients in another order); biases followed by BN get ~0 gradients, which AdamW's normalisation turns into
    visible steps from rounding noise alone, so they are left out."""
    short = ("schedule.epochs=1", "train.max_train_batches=2")
    plain = fit(tiny(tmp_path, "plain", *short))
    traced = fit(tiny(tmp_path, "traced", *short, "train.compile=eager"))
    assert metrics(plain.run_dir)[0]["train_loss"] == pytest.approx(metrics(traced.run_dir)[0]["train_loss"], abs=1e-6)
    a, b = weights(plain.checkpoint), weights(traced.checkpoint)
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a if k.endswith(".weight"))
    assert not same_weights(a, weights(fit(tiny(tmp_path, "other", *short, "seed=1")).checkpoint))
    with pytest.raises(ConfigError, match="train.compile"):
        tiny(tmp_path, "bad", "train.compile=fast")


def test_evaluating_does_not_change_training(ndigits_root, tmp_path):
    """Evaluation must not draw from the generator the training masks use (seed: null)."""
    every = fit(tiny(tmp_path, "every", *RANDOM, "schedule.epochs=3", "train.eval_every=1"))
    last = fit(tiny(tmp_path, "last", *RANDOM, "schedule.epochs=3", "train.eval_every=3"))
    assert same_weights(weights(every.checkpoint), weights(last.checkpoint))
    assert [m["train_loss"] for m in metrics(every.run_dir)] == [m["train_loss"] for m in metrics(last.run_dir)]


class Interrupt(Exception):
    pass


def interrupt_at_epoch(epoch: int):
    """A progress factory that stops training after the first batch of ``epoch`` (1-based), as Ctrl-C would."""
    from spikemask.progress import null_progress

    class Bar:
        def update(self, n=1):
            raise Interrupt

        def set_postfix(self, *a, **k):
            pass

        def close(self):
            pass

    def factory(**kw):
        return Bar() if kw.get("desc", "").startswith(f"epoch {epoch}/") else null_progress(**kw)

    return factory


def test_resume_replays_the_uninterrupted_run(ndigits_root, tmp_path):
    straight = fit(tiny(tmp_path, "straight", *RANDOM))

    cfg = tiny(tmp_path, "split", *RANDOM)
    with pytest.raises(Interrupt):
        fit(cfg, progress=interrupt_at_epoch(2))  # epoch 2 took a step in memory; last.pt holds epoch 1 (index 0)
    assert load_checkpoint(cfg.run_dir / "last.pt")["epoch"] == 0
    assert not (cfg.run_dir / "final.json").exists()
    with open(cfg.run_dir / "metrics.jsonl", "a") as fh:  # as if it died between the metrics line and the save
        fh.write(json.dumps({"epoch": 1, "lr": 0.0}) + "\n")
    resumed = fit(cfg, resume=True)

    assert metrics(resumed.run_dir) == metrics(straight.run_dir)  # one line per epoch, no duplicates
    assert same_weights(weights(resumed.checkpoint), weights(straight.checkpoint))
    assert resumed.final == straight.final
    assert [h["epoch"] for h in resumed.history] == [0, 1]


def test_resume_refuses_a_different_model(ndigits_root, tmp_path):
    cfg = tiny(tmp_path, "r", "schedule.epochs=1", "schedule.warmup_epochs=0")
    fit(cfg)
    other = tiny(tmp_path, "r", "schedule.epochs=1", "schedule.warmup_epochs=0", "model.embed_dim=64")
    with pytest.raises(ConfigError, match="embed_dim"):
        fit(other, resume=True)


def test_overwrite_replaces_outputs_of_an_earlier_run(ndigits_root, tmp_path):
    fit(tiny(tmp_path, "r"))
    again = fit(tiny(tmp_path, "r", "optim.lr=1e-3"), overwrite=True)
    assert [r["epoch"] for r in metrics(again.run_dir)] == [0, 1]  # not appended to the old run's lines


# ---------------------------------------------------------------- NaN safety


@pytest.mark.parametrize("how", [
    # epoch 1 warms up at 1e-4 (fine); epoch 2 runs at ~1e30 and the loss turns NaN mid-epoch
    ["schedule.warmup_epochs=1", "train.max_train_batches=6"],
    # one step per epoch at 1e30: the weights reach ~1e30 (finite) in epoch 1 and overflow at the end of
    # epoch 2 with the loss of that step still finite, so only the weights tell
    ["schedule.warmup_epochs=0", "train.max_train_batches=1"],
], ids=["loss", "weights"])
def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(ndigits_root, tmp_path, how):
    cfg = tiny(tmp_path, "nan", "optim.lr=1e30", "schedule.epochs=3", *how)
    last = cfg.run_dir / "last.pt"
    with pytest.raises(NonFiniteLossError) as err:
        fit(cfg)
    message = str(err.value)
    assert str(last) in message and "kept" in message
    assert "epoch 2" in message and "optim.lr" in message

    state = load_checkpoint(last)
    assert state["epoch"] == 0  # the last good epoch (0-based)
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert [h["epoch"] for h in state["history"]] == [0]
    assert [r["epoch"] for r in metrics(cfg.run_dir)] == [0]
    assert not (cfg.run_dir / "final.json").exists()
    model = build_model_for(cfg)
    model.load_state_dict(state["model"])  # the kept checkpoint loads


def test_nonfinite_loss_in_first_epoch_says_nothing_was_kept(ndigits_root, tmp_path):
    cfg = tiny(tmp_path, "nan0", "optim.lr=1e30", "schedule.warmup_epochs=0", "train.max_train_batches=8")
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written"):
        fit(cfg)
    assert not (cfg.run_dir / "last.pt").exists()


# ---------------------------------------------------------------- learning-rate schedule


def timm_cosine(epoch: int, peak: float, epochs: int, warmup: int, warmup_lr: float, min_lr: float) -> float:
    """timm CosineLRScheduler (t_initial=epochs, warmup_prefix=False, cycle_limit=1), stepped per epoch."""
    if epoch < warmup:
        return warmup_lr + epoch * (peak - warmup_lr) / warmup
    if epoch >= epochs:  # cool-down
        return min_lr
    return min_lr + 0.5 * (peak - min_lr) * (1 + math.cos(math.pi * epoch / epochs))


@pytest.mark.parametrize("epochs,warmup,cooldown", [(96, 10, 10), (8, 0, 0), (5, 2, 3), (1, 0, 2)])
def test_lr_schedule_matches_timm(epochs, warmup, cooldown):
    sched = ScheduleConfig(epochs=epochs, warmup_epochs=warmup, warmup_lr=2e-5, min_lr=1e-5, cooldown_epochs=cooldown)
    got = [lr_at(e, sched, 1e-3) for e in range(sched.total_epochs)]
    want = [timm_cosine(e, 1e-3, epochs, warmup, 2e-5, 1e-5) for e in range(epochs + cooldown)]
    assert got == pytest.approx(want, rel=1e-12)
    if warmup:
        assert got[0] == pytest.approx(2e-5)
    assert all(lr == pytest.approx(1e-5) for lr in got[epochs:])


def test_fit_uses_the_schedule(ndigits_root, tmp_path):
    cfg = tiny(tmp_path, "lr", "schedule.epochs=2", "schedule.cooldown_epochs=1", "train.max_train_batches=1",
               "train.eval_every=3")
    res = fit(cfg)
    lrs = [r["lr"] for r in metrics(res.run_dir)]
    assert lrs == pytest.approx([timm_cosine(e, 3e-3, 2, 1, 1e-4, 1e-5) for e in range(3)])
    groups = load_checkpoint(res.checkpoint)["optimizer"]["param_groups"]
    assert all(g["lr"] == pytest.approx(lrs[-1]) for g in groups)


# ---------------------------------------------------------------- mixup / cutmix / label smoothing


def tcfg(**kw) -> TrainConfig:
    return TrainConfig(**{"label_smoothing": 0.0, "mixup_alpha": 0.0, "cutmix_alpha": 0.0, "mixup_prob": 1.0,
                          "mixup_off_epoch": None, **kw})


def labelled_batch(B=6, T=2, H=16, W=16):
    """Clips whose every pixel holds ``b + 1`` (so a mixed pixel tells its source), distinct labels."""
    x = torch.arange(1, B + 1, dtype=torch.float32).view(B, 1, 1, 1, 1).expand(B, T, 2, H, W).clone()
    return x, torch.arange(B)


def test_label_smoothing_values():
    y = torch.tensor([3, 0, 9])
    t = smooth_one_hot(y, 10, 0.1)
    assert t.sum(1) == pytest.approx(torch.ones(3))
    assert t[0, 3] == pytest.approx(1 - 0.1 + 0.1 / 10)  # timm: on = 1 - s + s/C, off = s/C
    assert t[0, 4] == pytest.approx(0.1 / 10)
    x, target = mix_batch(torch.zeros(3, 2, 2, 4, 4), y, num_classes=10, cfg=tcfg(label_smoothing=0.1, mixup_prob=0.0),
                          epoch=0, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(target, t)


@pytest.mark.parametrize("seed", range(5))
def test_mixup_mixes_inputs_and_targets_by_the_same_lambda(seed):
    x, y = labelled_batch()
    out, target = mix_batch(x, y, num_classes=10, cfg=tcfg(mixup_alpha=0.5), epoch=0,
                            generator=torch.Generator().manual_seed(seed))
    assert target.sum(1) == pytest.approx(torch.ones(6))
    lam = float(target[0, 0])  # sample 0 is paired with the last (flip)
    assert float(target[0, 5]) == pytest.approx(1 - lam, abs=1e-6)
    assert torch.allclose(out[0], lam * x[0] + (1 - lam) * x[5])


@pytest.mark.parametrize("seed", range(8))
def test_cutmix_box_area_matches_lambda(seed):
    H = W = 16
    x, y = labelled_batch(H=H, W=W)
    out, target = mix_batch(x, y, num_classes=10, cfg=tcfg(label_smoothing=0.2, cutmix_alpha=1.0), epoch=0,
                            generator=torch.Generator().manual_seed(seed))
    assert target.sum(1) == pytest.approx(torch.ones(6))
    off = 0.2 / 10
    for b in range(6):
        pasted = (out[b] != x[b])  # [T, C, H, W]: pixels taken from the partner clip
        assert torch.equal(pasted, pasted[:1].expand_as(pasted)), "every frame and channel gets the same box"
        area = float(pasted[0, 0].sum()) / (H * W)
        assert torch.all(out[b][pasted] == x[5 - b][pasted])
        # target = lam * smooth(own) + (1 - lam) * smooth(partner), lam = kept area
        lam_from_target = (float(target[b, b]) - off) / (1 - 0.2)
        assert lam_from_target == pytest.approx(1 - area, abs=1e-6)


def test_no_mixing_from_mixup_off_epoch():
    x, y = labelled_batch()
    cfg = tcfg(mixup_alpha=1.0, mixup_off_epoch=3, label_smoothing=0.1)
    for epoch, mixed in [(2, True), (3, False), (7, False)]:
        out, target = mix_batch(x, y, num_classes=10, cfg=cfg, epoch=epoch, generator=torch.Generator().manual_seed(1))
        assert (not torch.equal(out, x)) == mixed
        assert torch.allclose(target, smooth_one_hot(y, 10, 0.1)) != mixed


def test_mixing_consumes_the_same_draws_either_way():
    """A batch that is not mixed still consumes its draws: later batches replay whatever happened before."""
    x, y = labelled_batch()
    states = []
    for cfg, epoch in [(tcfg(mixup_alpha=1.0), 0), (tcfg(mixup_alpha=1.0, mixup_prob=0.0), 0),
                       (tcfg(cutmix_alpha=1.0), 0), (tcfg(mixup_alpha=1.0, mixup_off_epoch=1), 5), (tcfg(), 0)]:
        g = torch.Generator().manual_seed(42)
        mix_batch(x, y, num_classes=10, cfg=cfg, epoch=epoch, generator=g)
        states.append(g.get_state())
    assert all(torch.equal(s, states[0]) for s in states)


# ---------------------------------------------------------------- augmentation, optimiser, outputs


def test_random_translate_moves_content_by_the_drawn_shift():
    B, T, m = 5, 3, 3
    x = torch.rand(B, T, 2, 12, 12) + 0.5  # no zeros: zero-fill is visible
    g, twin = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    shifts = torch.randint(-m, m + 1, (B, 2), generator=twin).tolist()  # (dy, dx) per clip
    out = random_translate(x, m, g)
    assert out.shape == x.shape
    for b, (dy, dx) in enumerate(shifts):
        want = torch.zeros_like(x[b])
        for i in range(12):
            for j in range(12):
                if 0 <= i - dy < 12 and 0 <= j - dx < 12:
                    want[..., i, j] = x[b, ..., i - dy, j - dx]
        assert torch.equal(out[b], want), (b, dy, dx)
    assert torch.equal(random_translate(x, 0, g), x)


def test_no_weight_decay_on_one_dimensional_parameters(ndigits_root, tmp_path):
    model = sm.create_model("test_spikformer")
    decay, no_decay = _param_groups(model, 0.06)
    assert decay["weight_decay"] == 0.06 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each parameter exactly once
    assert any("bn" in n and p.ndim == 1 for n, p in model.named_parameters())
    # the optimiser of a real run holds the same split
    res = fit(tiny(tmp_path, "wd", "schedule.epochs=1", "schedule.warmup_epochs=0", "train.max_train_batches=1"))
    groups = load_checkpoint(res.checkpoint)["optimizer"]["param_groups"]
    n_1d = sum(1 for p in model.parameters() if p.ndim <= 1)
    assert sorted((g["weight_decay"], len(g["params"])) for g in groups) == sorted(
        [(0.0, n_1d), (BASE_WD, sum(1 for _ in model.parameters()) - n_1d)])


def test_metrics_lines_per_epoch(ndigits_root, tmp_path):
    res = fit(tiny(tmp_path, "m", "schedule.epochs=3", "train.eval_every=2", "train.max_train_batches=1"))
    rows = [json.loads(line) for line in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    base = {"epoch", "lr", "train_loss", "train_acc", "time_s"}
    assert [set(r) for r in rows] == [base, base | {"test_acc", "test_loss"}, base | {"test_acc", "test_loss"}]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert all(0 <= r["train_acc"] <= 100 and math.isfinite(r["train_loss"]) for r in rows)
    final = json.loads((res.run_dir / "final.json").read_text())
    assert final["epochs"] == 3 and final["best_acc"] == max(r["test_acc"] for r in rows if "test_acc" in r)


def test_config_yaml_is_the_resolved_config(ndigits_root, tmp_path):
    cfg = tiny(tmp_path, "c", "schedule.epochs=1", "schedule.warmup_epochs=0", "train.max_train_batches=1",
               "model.mask.ratio=0.3", "model.mask.sites=[attn.q, mlp.hidden]")
    res = fit(cfg)
    stored = yaml.safe_load((res.run_dir / "config.yaml").read_text())
    mask = {"ratio": 0.3, "sites": ["attn.q", "mlp.hidden"]}
    model_cfg = sm.create_model("test_spikformer", num_classes=10, mask=mask).config
    want = to_dict(cfg)
    want["model"] = {"name": "test_spikformer", **to_dict(model_cfg)}
    assert stored == want
    assert stored["model"]["embed_dim"] == 32 and stored["model"]["mask"]["ratio"] == 0.3  # expanded, overrides kept
    assert load_checkpoint(res.checkpoint)["run_config"] == stored
    # the file alone reproduces the run's config
    again = load_run_config(res.run_dir / "config.yaml")
    assert to_dict(again) == stored


def test_model_must_fit_the_data():
    cfg = load_run_config({**BASE, "model": {"name": "spikformer_4_256"}})  # 3x32x32 RGB vs 2x32x32 events
    with pytest.raises(ConfigError) as err:
        build_model_for(cfg)
    assert "3x32x32" in str(err.value) and "2x32x32" in str(err.value)
    cfg = load_run_config({**BASE, "model": {"name": "test_spikformer", "num_classes": 11}})
    with pytest.raises(ConfigError, match="11.*10 classes"):
        build_model_for(cfg)
    assert build_model_for(load_run_config(BASE)).config.num_classes == 10  # default: the data set's


def test_capped_evaluation_samples_across_classes(ndigits_root):
    """The test split is stored class by class: a cap must not mean 'the first classes only'."""
    from spikemask.data import get_dataset
    from spikemask.train.loop import eval_subset

    labels = get_dataset("ndigits", split="test", T=2).labels
    assert len(set(labels[:16].tolist())) == 1  # the first two batches of 8 hold one class
    picked = eval_subset(len(labels), max_batches=2, batch_size=8, seed=0)
    assert len(picked) == 16 == len(set(picked)) and picked == sorted(picked)
    assert len(set(labels[picked].tolist())) >= 5
    assert picked == eval_subset(len(labels), 2, 8, seed=0) != eval_subset(len(labels), 2, 8, seed=1)
    assert eval_subset(len(labels), max_batches=100, batch_size=8, seed=0) is None  # the cap covers everything
    assert eval_subset(len(labels), max_batches=None, batch_size=8, seed=0) is None
