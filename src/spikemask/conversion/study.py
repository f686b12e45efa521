"""MST's experiments on the bundled digits, end to end: ``spikemask demo --config mst_digits``.

1. Train each QCFS ANN (``models``; a finished run with the same config is reused).
2. Convert it and record accuracy at every step 1..T in one pass, next to the ANN's (MST's Fig. 4 form).
3. Mask the converted SNN at inference, group of sites by group (Swin: attention vs MLP; ResNet / VGG:
   the convolutions' input spikes), over ratios τ, mean ± std over mask seeds, with the energy at each τ
   (MST's Fig. 5 form).
4. Fine-tune the first model masked, from its ANN, with and without distillation from the unmasked ANN,
   convert both and compare (MST's distillation claim).

Everything is written under ``<out_dir>/<name>/``: the runs, ``results.json``, ``accuracy_vs_T.png``,
``accuracy_vs_ratio.png``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import apply_overrides, bounded, check_bounds, from_dict, merge, to_dict
from ..io import atomic_write_json, atomic_write_text, lock_dir
from ..masking import check_ratio
from ..progress import ProgressFactory, null_progress

__all__ = ["ConversionStudyConfig", "run_conversion_study", "DEFAULT_GROUPS"]

log = logging.getLogger(__name__)

# the site groups masked separately, per family (MST Fig. 5: attention vs MLP; ResNet / VGG: convolutions)
DEFAULT_GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "swin_bn": {"attention": ("attn.q", "attn.k", "attn.scores"), "MLP": ("mlp.hidden",)},
    "resnet": {"convolutions": ("conv.input", "shortcut.input")},
    "vgg": {"convolutions": ("conv.input",)},
}


@dataclass(kw_only=True)
class ConversionStudyConfig:
    """MST's experiments (module docstring) as one config.

    kind: ``conversion`` (what ``spikemask demo`` reads to pick this study).
    name / out_dir: the study lives in ``<out_dir>/<name>/``.
    base: the training run every model starts from (data, optimiser, schedule); ``model`` is replaced.
    models: QCFS ANN variants to train and convert (families swin_bn, resnet, vgg).
    model_overrides: per model, run-config values that differ from ``base`` (``{model: {schedule: ...}}``).
    T: steps of the accuracy-vs-T curves. T_eval: steps at which the masked SNNs are evaluated.
    ratios: masking ratios τ at inference. mask_seeds: seeds for mean ± std.
    energy_samples: test inputs the energy at each τ is measured on (one mask seed).
    finetune_ratio: τ of the masked fine-tuning of the first model (on its default sites).
    finetune_epochs / finetune_lr: its schedule; distill_temperature / distill_alpha: the distilled variant.
    """

    kind: Literal["conversion"] = "conversion"
    name: str = "mst"
    out_dir: str = "runs"
    base: dict[str, Any] = field(default_factory=dict)
    models: tuple[str, ...] = ("swin_small_digits", "resnet_small_digits")
    model_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    T: int = bounded(64, ge=1)
    T_eval: int = bounded(32, ge=1)
    ratios: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    mask_seeds: int = bounded(3, ge=1)
    energy_samples: int = bounded(32, ge=1)
    finetune_ratio: float = 0.5
    finetune_epochs: int = bounded(3, ge=0)
    finetune_lr: float = bounded(5e-4, gt=0)
    distill_temperature: float = bounded(4.0, gt=0)
    distill_alpha: float = bounded(0.5, ge=0, le=1)

    def __post_init__(self) -> None:
        check_bounds(self, "study")
        self.ratios = tuple(sorted({check_ratio(r, "study.ratios") for r in (0.0, *self.ratios)}))
        check_ratio(self.finetune_ratio, "study.finetune_ratio")
        if not self.models:
            raise ValueError("study.models: name at least one QCFS ANN (e.g. swin_small_digits)")
        unknown = [m for m in self.model_overrides if m not in self.models]
        if unknown:
            raise ValueError(f"study.model_overrides names {unknown[0]!r}, which is not in study.models")

    @property
    def study_dir(self) -> Path:
        return Path(self.out_dir) / self.name


def _run_config(study: ConversionStudyConfig, model: str, name: str, extra: dict[str, Any] | None = None):
    from ..train import RunConfig

    cfg = merge(merge(study.base, study.model_overrides.get(model, {})), extra or {})
    cfg = merge(cfg, {"model": {"name": model}, "name": name, "out_dir": str(study.study_dir)})
    return from_dict(RunConfig, cfg)


def _train(cfg, label: str, progress: ProgressFactory) -> Path:
    from ..train import fit
    from ..train.loop import run_state

    state = run_state(cfg)
    if state == "done":
        log.info("%s: reusing finished run %s", label, cfg.run_dir)
    else:
        log.info("%s: %s %s", label, "resuming" if state == "partial" else "training", cfg.run_dir)
        fit(cfg, resume=state == "partial", progress=progress)
    return cfg.run_dir / "last.pt"


def _mask(model, sites: tuple[str, ...], ratio: float) -> None:
    from ..masking import MaskConfig

    model.set_mask(MaskConfig(ratio=ratio, sites=sites))


def run_conversion_study(study: ConversionStudyConfig, *, progress: ProgressFactory = null_progress) -> dict[str, Any]:
    """Run (or resume) the study in ``study.study_dir`` and write its results (module docstring)."""
    with lock_dir(study.study_dir, "study directory"):
        return _run(study, progress)


def _run(study: ConversionStudyConfig, progress: ProgressFactory) -> dict[str, Any]:
    import yaml

    from ..energy import measure_energy
    from ..plot import plot_accuracy_vs_ratio, plot_accuracy_vs_T
    from ..train import load_model
    from ..train.augment import batch_transform
    from ..train.data import test_loader
    from .convert import convert
    from .evaluate import accuracy_per_step

    out = study.study_dir
    atomic_write_text(out / "study.yaml", yaml.safe_dump(to_dict(study), sort_keys=False))
    result: dict[str, Any] = {"study": to_dict(study), "models": {}, "finetune": {}}
    loaders: dict[str, Any] = {}

    def evaluate(snn, ann, cfg, T, seeds):
        if cfg.data.name not in loaders:
            loaders[cfg.data.name] = test_loader(cfg.data, 1, cfg.data.eval_batch_size or cfg.data.batch_size)
        return accuracy_per_step(snn, loaders[cfg.data.name], T=T, ann=ann, mask_seeds=list(range(seeds)),
                                 transform=batch_transform(cfg.data.eval_transform), progress=progress)

    def energy(snn, cfg, T) -> dict[str, Any]:
        sample = test_loader(cfg.data, 1, study.energy_samples, study.energy_samples, seed=1)
        transform = batch_transform(cfg.data.eval_transform)
        batches = [(transform(x, None), y) for x, y in sample]
        snn.config.T = T
        totals = measure_energy(snn, batches, config=cfg.energy, mask_seeds=[0])["totals"]
        return {k: totals[k] for k in ("energy_mj", "sops", "macs", "spikes", "mst_power_alpha", "mask_draws")}

    for index, model_name in enumerate(study.models):
        label = f"[{index + 1}/{len(study.models)}] {model_name}"
        cfg = _run_config(study, model_name, f"{model_name}_ann")
        ann, _ = load_model(_train(cfg, label, progress))
        family = ann.family
        groups = DEFAULT_GROUPS.get(family)
        if groups is None:
            raise ValueError(f"study.models: {model_name} is a {family} model; the conversion study converts QCFS "
                             f"ANNs ({', '.join(DEFAULT_GROUPS)})")
        snn = convert(ann, study.T)
        log.info("%s: accuracy at every step 1..%d", label, study.T)
        curve = evaluate(snn, ann, cfg, study.T, 1)
        sweep, unmasked = [], None
        for group, sites in groups.items():
            for ratio in study.ratios:
                _mask(snn, sites, ratio)
                if ratio == 0 and study.T_eval <= study.T:  # no masks, deterministic: the curve's step T_eval
                    step = study.T_eval - 1
                    acc = {"acc": [curve["acc"][step]], "acc_std": [0.0], "per_seed": [[curve["acc"][step]]]}
                else:
                    log.info("%s: %s masked at τ=%g, T=%d", label, group, ratio, study.T_eval)
                    acc = evaluate(snn, None, cfg, study.T_eval, study.mask_seeds if ratio else 1)
                if ratio == 0:  # the same unmasked SNN for every group: measured once
                    unmasked = unmasked or energy(snn, cfg, study.T_eval)
                sweep.append({"group": group, "sites": list(sites), "ratio": ratio, "acc": acc["acc"][-1],
                              "acc_std": acc["acc_std"][-1], "per_seed": [c[-1] for c in acc["per_seed"]],
                              "energy": unmasked if ratio == 0 else energy(snn, cfg, study.T_eval)})
            _mask(snn, sites, 0.0)
        result["models"][model_name] = {"family": family, "run": str(cfg.run_dir), "curve": curve,
                                        "ann_acc": curve["ann_acc"], "masking": sweep,
                                        "neurons": snn.conversion_report.as_dict()["num_neurons"]}

    if study.finetune_epochs:
        first = study.models[0]
        ann_ckpt = str(study.study_dir / f"{first}_ann" / "last.pt")
        base = _run_config(study, first, "unused")
        tune = {"model": {"mask": {"ratio": study.finetune_ratio}},
                "optim": {"lr": study.finetune_lr},
                "schedule": {"epochs": study.finetune_epochs, "warmup_epochs": 0, "cooldown_epochs": 0,
                             "min_lr": study.finetune_lr / 10},
                "train": {"init_from": ann_ckpt}}
        variants = {
            "masked, no fine-tuning": None,
            "fine-tuned masked": _run_config(study, first, f"{first}_finetuned", tune),
            "fine-tuned masked, distilled": _run_config(study, first, f"{first}_distilled", merge(tune, {
                "train": {"distill": {"teacher": ann_ckpt, "temperature": study.distill_temperature,
                                      "alpha": study.distill_alpha}}})),
        }
        for label, cfg in variants.items():
            if cfg is None:  # the unmasked ANN with the masks switched on
                ann, _ = load_model(ann_ckpt)
                _mask(ann, tuple(ann.default_mask_sites), study.finetune_ratio)
                cfg = base
            else:
                ann, _ = load_model(_train(cfg, f"[fine-tune] {label}", progress))
            snn = convert(ann, study.T_eval)
            acc = evaluate(snn, ann, cfg, study.T_eval, study.mask_seeds)
            result["finetune"][label] = {"ratio": study.finetune_ratio, "sites": list(ann.config.mask.sites),
                                         "snn_acc": acc["acc"][-1], "snn_acc_std": acc["acc_std"][-1],
                                         "ann_acc": acc["ann_acc"], "ann_acc_std": acc["ann_acc_std"],
                                         "T": study.T_eval}
    atomic_write_json(out / "results.json", result)
    curves = {f"{m} SNN": r["curve"] for m, r in result["models"].items()}
    plot_accuracy_vs_T(curves, out / "accuracy_vs_T.png",
                       ann_lines={f"{m} ANN": r["ann_acc"] for m, r in result["models"].items()},
                       title="QCFS ANNs converted to SNNs on digits: accuracy against T")
    plot_accuracy_vs_ratio(result["models"], out / "accuracy_vs_ratio.png", T=study.T_eval)
    return result


def load_conversion_study(data: dict[str, Any], overrides: list[str] = ()) -> ConversionStudyConfig:
    return from_dict(ConversionStudyConfig, apply_overrides(data, list(overrides)), where="study")
