"""A τ x T study: train one model per (model, T, τ), then report accuracy and energy side by side.

This is Table 1 / 2 of 000_766e5557120f520b.txt made reproducible: every cell is a full training
run with masking active in training and inference (Masked Spikformer), τ = 0 is the unmasked
Spikformer of the same T, and every energy number is measured on the test set with the masks on,
as mean ± std over mask seeds. Optionally each unmasked model is also evaluated with RSM switched
on at inference only (no retraining), which separates what masking does by itself from what
training under masking changes.

With several ``models`` (e.g. Spikformer, Spikingformer and SAFormer of one size) the same sweep runs for
each, and every ΔE compares a model with its own unmasked run. Cells whose run directory already holds a
finished run with the same resolved config are reused, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from torch.utils.data import DataLoader

from .config import apply_overrides, from_dict, load_yaml, merge, to_dict
from .data import get_dataset
from .energy import energy_by_group, measure_energy, saving_pct
from .engine import apply_engine
from .io import atomic_write_json, atomic_write_text, lock_dir
from .masking import check_ratio
from .models import count_parameters
from .progress import ProgressFactory, null_progress
from .train import RunConfig, evaluate, fit, load_model
from .train.augment import batch_transform
from .train.config import preset_path
from .train.evaluate import TimeFirstBatches
from .train.loop import resolved_config, run_state
from .train.rundir import RunExistsError, config_changes

__all__ = ["StudyConfig", "run_study", "load_study_config", "study_rows_csv"]

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class StudyConfig:
    """A sweep over masking ratios τ and time steps T.

    kind: ``masking`` (this study); ``spikemask demo`` runs a ``conversion`` study (MST) with
        :mod:`spikemask.conversion.study` instead.
    name: directory under ``out_dir`` holding the study and one run directory per cell.
    base: the run every cell starts from; each cell overrides ``model.T`` and ``model.mask.ratio``.
    models: registered models to compare (each cell also overrides ``model.name``; run directories are
        then ``<model>_T<T>_tau<τ>``); empty: ``base.model.name`` alone (directories ``T<T>_tau<τ>``).
    ratios: masking ratios τ; 0 is the unmasked baseline (added if missing).
    time_steps: values of T.
    eval_mask_seeds: mask seeds for accuracy and energy (mean ± std).
    energy_samples: test samples the energy is measured on (None: the whole test split); accuracy is
        always measured on the whole test split.
    inference_only: also evaluate every unmasked model with RSM on at inference only.
    engine: how the evaluations compute (``dense``, ``event``, ``auto``: :mod:`spikemask.engine`).
    """

    kind: Literal["masking"] = "masking"
    name: str = "demo"
    out_dir: str = "runs"
    base: RunConfig = field(default_factory=RunConfig)
    models: tuple[str, ...] = ()
    ratios: tuple[float, ...] = (0.0, 0.2, 0.5, 0.7)
    time_steps: tuple[int, ...] = (4, 8)
    eval_mask_seeds: int = 3
    energy_samples: int | None = None
    inference_only: bool = True
    engine: Literal["dense", "event", "auto"] = "dense"

    def __post_init__(self) -> None:
        self.ratios = tuple(sorted({check_ratio(r, "study.ratios") for r in (0.0, *self.ratios)}))
        if not self.time_steps or any(t < 1 for t in self.time_steps):
            raise ValueError(f"study.time_steps must be positive integers, got {self.time_steps}")
        if self.eval_mask_seeds < 1:
            raise ValueError("study.eval_mask_seeds must be >= 1")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"study.models lists a model twice: {list(self.models)}")
        from .models import list_models

        unknown = [m for m in self.models if m not in list_models()]
        if unknown:
            raise ValueError(f"study.models: unknown model {unknown[0]!r}; `spikemask models` lists them")

    @property
    def model_names(self) -> tuple[str, ...]:
        return self.models or (self.base.model["name"],)

    @property
    def study_dir(self) -> Path:
        return Path(self.out_dir) / self.name


def load_study_config(source: str | Path | dict[str, Any], overrides: list[str] = ()):
    """A :class:`StudyConfig`, a :class:`~spikemask.conversion.study.ConversionStudyConfig` when the file says
    ``kind: conversion``, or a :class:`~spikemask.results.sweep.SweepConfig` for ``kind: sweep``."""
    data = load_yaml(preset_path(source)) if isinstance(source, (str, Path)) else dict(source)
    if data.get("kind") == "sweep":
        from .results.sweep import SweepConfig

        return from_dict(SweepConfig, apply_overrides(data, list(overrides)), where="sweep")
    if data.get("kind") == "conversion":
        from .conversion.study import load_conversion_study

        return load_conversion_study(data, list(overrides))
    return from_dict(StudyConfig, apply_overrides(data, list(overrides)))


def _cell_config(study: StudyConfig, model: str, T: int, ratio: float) -> RunConfig:
    base = to_dict(study.base)
    mask = merge(base["model"].get("mask", {}), {"ratio": ratio})
    # the run's own final evaluation uses the study's mask seeds, so the study can reuse it
    train = merge(base["train"], {"eval_mask_seeds": study.eval_mask_seeds})
    name = f"T{T}_tau{int(round(ratio * 100)):02d}"
    cell = merge(base, {"model": {"name": model, "T": T, "mask": mask}, "train": train,
                        "out_dir": str(study.study_dir), "name": f"{model}_{name}" if study.models else name})
    return from_dict(RunConfig, cell)


_DISPLAY = {"spikformer": "Spikformer", "spikingformer": "Spikingformer", "saformer": "SAFormer"}


def _labels(model) -> tuple[str, str, str]:
    """(unmasked, masked, masked at inference only) row labels of ``model``: ``Spikformer``, ``Masked
    Spikformer``, ``Spikformer + RSM at inference`` (the attention is named when not the family's own)."""
    from .models.registry import resolve_config

    name = _DISPLAY.get(model.family, model.family)
    if model.config.attention != resolve_config(model.variant).attention:
        name += f" ({model.config.attention.upper()})"
    return name, f"Masked {name}", f"{name} + RSM at inference"


def _test_loaders(study: StudyConfig, cfg: RunConfig, T: int) -> tuple[DataLoader, DataLoader]:
    """(accuracy: the whole test split, energy: its first ``energy_samples`` samples)."""
    ds = get_dataset(cfg.data.name, split="test", T=T, **cfg.data.dataset_options())
    batch_size = cfg.data.eval_batch_size or cfg.data.batch_size
    full = DataLoader(ds, batch_size=batch_size, shuffle=False)
    if study.energy_samples is None:
        return full, full
    subset = torch.utils.data.Subset(ds, range(min(study.energy_samples, len(ds))))
    return full, DataLoader(subset, batch_size=batch_size, shuffle=False)


def _final_accuracy(cfg: RunConfig, model, seeds: list[int]) -> dict[str, Any] | None:
    """The accuracy ``fit`` already measured at the end of the run, if it is exactly the one wanted:
    the whole test split, with these mask seeds (or no active mask)."""
    if cfg.train.max_eval_batches is not None:
        return None
    final = json.loads((cfg.run_dir / "final.json").read_text())["final"]
    wanted = seeds if model.config.mask.active else []
    return final if final["mask_seeds"] == wanted else None


def _measure(model, cfg: RunConfig, study: StudyConfig, loaders: tuple[DataLoader, DataLoader], device, label: str,
             progress: ProgressFactory, accuracy: dict[str, Any] | None = None) -> dict[str, Any]:
    seeds = list(range(study.eval_mask_seeds))
    acc_loader, energy_loader = loaders
    transform = batch_transform(cfg.data.eval_transform)
    acc = accuracy or evaluate(model, acc_loader, device, mask_seeds=seeds, progress=progress,
                               desc=f"{label} accuracy", transform=transform)
    report = measure_energy(model, TimeFirstBatches(energy_loader, transform), config=cfg.energy, mask_seeds=seeds,
                            device=device)
    return {"accuracy": acc, "energy": report}


def _row(kind: str, variant: str, T: int, ratio: float, m: dict[str, Any], params: int,
         run_dir: Path) -> dict[str, Any]:
    tot = m["energy"]["totals"]
    return {
        "model": kind,
        "variant": variant,
        "T": T,
        "mask_ratio": ratio,
        "acc": m["accuracy"]["acc"],
        "acc_std": m["accuracy"]["acc_std"],
        "energy_mj": tot["energy_mj"],
        "energy_mj_std": tot["energy_mj_std"],
        "params_m": params / 1e6,
        "sops": tot["sops"],
        "macs": tot["macs"],
        "ann_energy_mj": tot["ann_energy_mj"],
        "papers_formula_energy_mj": tot["papers_formula_energy_mj"],
        "papers_formula_extra_mask_factor_energy_mj": tot["papers_formula_extra_mask_factor_energy_mj"],
        "neuron_energy_mj": tot["neuron_energy_mj"],
        "memory_energy_mj": tot["memory_energy_mj"],
        "mask_draws": tot["mask_draws"],
        "mask_draw_energy_mj": tot["mask_draw_energy_mj"],
        "breakdown_mj": energy_by_group(m["energy"]),
        "masked_consumers_mj": sum(r["energy_pj"] for r in m["energy"]["layers"] if r["masks"]) / 1e9,
        "run_dir": str(run_dir),
    }


def _add_deltas(rows: list[dict[str, Any]], baselines: dict[tuple[str, int], dict[str, Any]], ref_T: int) -> None:
    """ΔE against the same model's unmasked run at the same T, and at the reference (largest) T."""
    for row in rows:
        base = baselines[row["variant"], row["T"]]
        row["delta_e_pct"] = saving_pct(row["energy_mj"], base["energy_mj"])
        row["delta_e_ref_pct"] = saving_pct(row["energy_mj"], baselines[row["variant"], ref_T]["energy_mj"])
        # split the change against the same-T baseline: layers that read masked tensors vs the rest
        direct = base["masked_consumers_mj"] - row["masked_consumers_mj"]
        total = base["energy_mj"] - row["energy_mj"]
        row["saved_in_masked_layers_mj"] = direct
        row["saved_elsewhere_mj"] = total - direct


def _train_cell(cfg: RunConfig, label: str, overwrite: bool, progress: ProgressFactory) -> None:
    """Train (or resume) one cell; a cell directory holding a run of another config is kept unless ``overwrite``."""
    state = run_state(cfg)
    if state == "done":
        log.info("%s: reusing finished run %s", label, cfg.run_dir)
        return
    log.info("%s: %s %s", label, "resuming" if state == "partial" else "training", cfg.run_dir)
    try:
        fit(cfg, resume=state == "partial", overwrite=overwrite, progress=progress)
    except RunExistsError:
        try:
            stored = yaml.safe_load((cfg.run_dir / "config.yaml").read_text()) or {}
        except (OSError, yaml.YAMLError):
            stored = {}
        changed = ", ".join(config_changes(stored, resolved_config(cfg))) or "unknown keys"
        raise RunExistsError(
            f"{cfg.run_dir} holds a run of this study made with another config ({changed} differ); "
            f"retrain it with --overwrite (deletes that run), or give this study another --out or name"
        ) from None


def run_study(study: StudyConfig, *, overwrite: bool = False,
              progress: ProgressFactory = null_progress) -> dict[str, Any]:
    """Run every cell (reusing finished ones), measure, and write results.{json,csv}, the plot and configs.

    The study directory is locked while the study runs. A cell whose directory holds a run of another
    config (the study's settings changed) is refused unless ``overwrite``: finished runs are never
    deleted implicitly.
    """
    with lock_dir(study.study_dir, "study directory"):
        return _run_study(study, overwrite, progress)


def _run_study(study: StudyConfig, overwrite: bool, progress: ProgressFactory) -> dict[str, Any]:
    out = study.study_dir
    atomic_write_text(out / "study.yaml", yaml.safe_dump(to_dict(study), sort_keys=False))
    rows: list[dict[str, Any]] = []
    baselines: dict[tuple[str, int], dict[str, Any]] = {}
    reports: dict[str, Any] = {}
    cells = [(name, T, r) for name in study.model_names for T in study.time_steps for r in study.ratios]
    for index, (name, T, ratio) in enumerate(cells):
        cfg = _cell_config(study, name, T, ratio)
        label = f"[{index + 1}/{len(cells)}] {name + ' ' if study.models else ''}T={T} τ={ratio:g}"
        _train_cell(cfg, label, overwrite, progress)
        model, _ = load_model(cfg.run_dir / "last.pt")
        apply_engine(model, None if study.engine == "dense" else study.engine)
        device = torch.device("cpu")
        loaders = _test_loaders(study, cfg, T)
        params = count_parameters(model)
        accuracy = _final_accuracy(cfg, model, list(range(study.eval_mask_seeds)))
        measured = _measure(model, cfg, study, loaders, device, label, progress, accuracy)
        plain, masked, inference_only = _labels(model)
        row = _row(masked if ratio else plain, name, T, ratio, measured, params, cfg.run_dir)
        rows.append(row)
        key = f"{name}_" if study.models else ""
        reports[f"{key}T{T}_tau{ratio:g}"] = measured["energy"]
        if ratio == 0:
            baselines[name, T] = row
            if study.inference_only:
                for r in study.ratios[1:]:
                    model.set_mask(dataclasses.replace(model.config.mask, ratio=r))
                    m = _measure(model, cfg, study, loaders, device, f"T={T} τ={r:g} (inference only)", progress)
                    rows.append(_row(inference_only, name, T, r, m, params, cfg.run_dir))
                    reports[f"{key}T{T}_tau{r:g}_inference_only"] = m["energy"]
                model.set_mask(dataclasses.replace(model.config.mask, ratio=0.0))
    ref_T = max(study.time_steps)
    _add_deltas(rows, baselines, ref_T)
    refs = {name: baselines[name, ref_T]["energy_mj"] for name in study.model_names}
    result = {"study": to_dict(study), "rows": rows,
              "reference": {"T": ref_T, "energy_mj": refs[study.model_names[0]], "energy_mj_by_model": refs}}
    atomic_write_json(out / "results.json", result)
    atomic_write_json(out / "energy_reports.json", reports)
    atomic_write_text(out / "results.csv", study_rows_csv(rows))
    from .plot import plot_accuracy_vs_energy  # matplotlib only when a study writes its plot

    plot_accuracy_vs_energy(rows, out / "accuracy_vs_energy.png")
    return result


CSV_COLUMNS = ["model", "variant", "T", "mask_ratio", "acc", "acc_std", "energy_mj", "energy_mj_std", "delta_e_pct",
               "delta_e_ref_pct", "params_m", "sops", "macs", "saved_in_masked_layers_mj", "saved_elsewhere_mj",
               "ann_energy_mj", "papers_formula_energy_mj", "papers_formula_extra_mask_factor_energy_mj",
               "neuron_energy_mj", "memory_energy_mj", "mask_draws", "mask_draw_energy_mj", "run_dir"]


def study_rows_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buf.getvalue()

