"""Sweeps: a grid of run configs, trained and measured, every result in one results database.

``spikemask sweep --config FILE --grid "model.T=4,8" --grid "model.mask.ratio=0,0.5" --train-seeds 3``

Each grid cell and training seed is one run, identified by a stable id: a hash of its resolved config (the
model section expanded to the model's full config; the run's name and folder left out), so the same run is
found again however the grid is written. A re-run of the sweep skips finished runs (their results are in the
database) and resumes interrupted ones from their last checkpoint (after ``kill -9`` too: the database row
of a run is only marked done, with all its evaluations, in one transaction). Runs go to ``<sweep>/runs/<id>/``,
the database is ``<sweep>/results.db``; ``workers > 1`` trains runs in parallel processes, each with its
share of the cores. What is measured per run is described in :mod:`spikemask.results`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal, Mapping

from ..config import ConfigError, apply_overrides, bounded, check_bounds, from_dict, merge, parse_overrides, to_dict
from ..io import atomic_write_text, lock_dir
from ..masking import check_ratio
from ..progress import ProgressFactory, null_progress
from .db import DB_NAME, ResultsDB

__all__ = ["SweepConfig", "Sweep", "RunSpec", "parse_grid", "run_sweep", "run_id_of", "site_groups", "DB_NAME"]

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class SweepConfig:
    """A sweep (module docstring); as a YAML file (``kind: sweep``) it is what ``spikemask demo`` runs.

    name / out_dir: the sweep lives in ``<out_dir>/<name>/``.
    base: the run config every run starts from (a preset or YAML's contents).
    grid: ``{dotted.key: [values]}``; every combination is a run (at least one key, one value each).
    train_seeds: training seeds per cell (``seed``, ``seed + 1``, ...): mean ± std and a confidence interval.
    mask_seeds: mask seeds of every masked evaluation (mean ± std over them).
    workers: runs trained at once, in separate processes.
    energy_samples: test samples the energy is measured on (a seeded draw; None: the whole split).
    eval_ratios: Random Spike Masking ratios applied at inference only to every unmasked run, one group of
        sites at a time (``eval_groups``; MST Fig. 5). Empty: none.
    eval_groups: ``{label: [sites]}``; None: the model's default sites split by module (attention, MLP).
    block_ratio: with ``blocks_eval``, every unmasked run is masked at inference on its default sites in its
        first k blocks, k = 1..depth, at this ratio (MST Fig. 6).
    probes: store spike maps, input histograms and firing rates per run (for the report).
    engine: how the evaluations compute (``dense``, ``event``, ``auto``: :mod:`spikemask.engine`; the same
        numbers to float rounding, so it is not part of a run's identity; training always runs dense).
    """

    kind: Literal["sweep"] = "sweep"
    name: str = "sweep"
    out_dir: str = "runs"
    base: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    train_seeds: int = bounded(1, ge=1)
    mask_seeds: int = bounded(3, ge=1)
    workers: int = bounded(1, ge=1)
    energy_samples: int | None = bounded(64, ge=1)
    eval_ratios: tuple[float, ...] = ()
    eval_groups: dict[str, list[str]] | None = None
    blocks_eval: bool = False
    block_ratio: float = 0.5
    probes: bool = True
    engine: Literal["dense", "event", "auto"] = "dense"

    def __post_init__(self) -> None:
        check_bounds(self, "sweep")
        if self.engine not in ("dense", "event", "auto"):
            raise ConfigError(f"sweep.engine must be one of dense, event, auto; got {self.engine!r}")
        if not self.grid:
            raise ConfigError("the sweep's grid is empty: give at least one --grid KEY=V1,V2 (e.g. model.T=4,8)")
        empty = [k for k, v in self.grid.items() if not v]
        if empty:
            raise ConfigError(f"grid key {empty[0]!r} has no values: write {empty[0]}=V1,V2,...")
        self.eval_ratios = tuple(sorted({check_ratio(r, "sweep.eval_ratios") for r in self.eval_ratios} - {0.0}))
        check_ratio(self.block_ratio, "sweep.block_ratio")

    @property
    def sweep_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    @property
    def db_path(self) -> Path:
        return self.sweep_dir / DB_NAME


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its id, grid values, training seed and full run config (a plain dict)."""

    run_id: str
    values: tuple[tuple[str, Any], ...]
    train_seed: int
    config: dict[str, Any]

    @property
    def label(self) -> str:
        return " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in self.values) + f" seed={self.train_seed}"


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["model.T=4,8", "model.mask.ratio=0,0.5"]`` -> ``{"model.T": [4, 8], ...}`` (values parsed as YAML)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--grid {item!r}: write KEY=V1,V2,... (e.g. model.T=4,8)")
        if key in grid:
            raise ConfigError(f"--grid names {key!r} twice: give all its values in one --grid")
        parts = [v.strip() for v in values.split(",") if v.strip()]
        if not parts:
            raise ConfigError(f"grid key {key!r} has no values: write {key}=V1,V2,...")
        grid[key] = [parse_overrides([f"{key}={p}"])[0][1] for p in parts]
    return grid


def run_id_of(resolved: Mapping[str, Any]) -> str:
    """12 hex digits of the SHA-256 of the resolved config without its name and folder."""
    ident = {k: v for k, v in resolved.items() if k not in ("name", "out_dir")}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]


class Sweep:
    """The runs of a :class:`SweepConfig`, resolved and validated (bad keys and values fail here, before any run)."""

    def __init__(self, cfg: SweepConfig):
        from ..train import RunConfig
        from ..train.loop import resolved_config

        self.cfg = cfg
        base = from_dict(RunConfig, cfg.base, where="config")  # the base itself must be valid
        keys = list(cfg.grid)
        self.runs: list[RunSpec] = []
        seen: dict[str, RunSpec] = {}
        for combo in itertools.product(*(cfg.grid[k] for k in keys)):
            for s in range(cfg.train_seeds):
                data = to_dict(base)
                for key, value in zip(keys, combo):
                    data = _set(data, key, value)
                seed = data["seed"] + s
                data = merge(data, {"seed": seed, "train": {"eval_mask_seeds": cfg.mask_seeds}})
                try:
                    run = from_dict(RunConfig, data, where="config")
                    resolved = resolved_config(run)
                except (ConfigError, ValueError, TypeError) as exc:
                    where = ", ".join(f"{k}={v}" for k, v in zip(keys, combo))
                    raise ConfigError(f"grid cell {where}: {exc}") from None
                rid = run_id_of(resolved)
                data = merge(data, {"name": rid, "out_dir": str(cfg.sweep_dir / "runs")})
                spec = RunSpec(rid, tuple(zip(keys, combo)), seed, data)
                if rid in seen:  # two cells resolving to one config (e.g. a value equal to the default)
                    log.warning("grid cells %s and %s are the same run (%s): measured once",
                                seen[rid].label, spec.label, rid)
                    continue
                seen[rid] = spec
                self.runs.append(spec)


def _set(data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    try:
        return apply_overrides(data, [f"{key}={json.dumps(value)}"])
    except ConfigError as exc:
        raise ConfigError(f"grid key {key!r}: {exc}") from None


def site_groups(model) -> dict[str, list[str]]:
    """The model's default mask sites grouped by module: ``attn.*`` -> attention, ``mlp.*`` -> MLP, others by
    their first component."""
    names = {"attn": "attention", "mlp": "MLP", "sps": "tokenizer"}
    groups: dict[str, list[str]] = {}
    for site in model.default_mask_sites:
        head = site.split(".", 1)[0]
        groups.setdefault(names.get(head, head), []).append(site)
    return groups


def machine() -> dict[str, Any]:
    import torch

    return {"host": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


# ------------------------------------------------------------------------------------------------ one run


def execute_run(cfg: SweepConfig, spec: RunSpec, progress: ProgressFactory = null_progress,
                threads: int | None = None) -> dict[str, Any]:
    """Train (or resume) one run, measure it, and record everything in the database in one transaction."""
    import torch

    from ..train import RunConfig, fit
    from ..train.loop import resolved_config, run_state

    if threads:
        torch.set_num_threads(threads)
    run = from_dict(RunConfig, spec.config, where="config")
    resolved = resolved_config(run)
    model_cfg = resolved["model"]
    fields = {"model": run.model["name"], "T": model_cfg.get("T"), "mask_ratio": model_cfg.get("mask", {}).get("ratio"),
              "train_seed": spec.train_seed, "run_dir": str(run.run_dir), "machine": machine()}
    with ResultsDB(cfg.db_path) as db:
        db.start_run(spec.run_id, resolved, sweep=cfg.name, fields=fields)
    t0 = time.perf_counter()
    try:
        state = run_state(run)
        if state != "done":
            fit(run, resume=state == "partial", progress=progress)
        evaluations, artifacts, params, family = measure_run(cfg, run, progress)
    except BaseException as exc:
        with ResultsDB(cfg.db_path) as db:
            db.fail_run(spec.run_id, f"{type(exc).__name__}: {exc}")
        raise
    with ResultsDB(cfg.db_path) as db:
        db.finish_run(spec.run_id, evaluations, artifacts=artifacts,
                      fields={"params": params, "family": family, "wall_s": time.perf_counter() - t0})
    return {"run_id": spec.run_id, "evaluations": len(evaluations)}


def measure_run(cfg: SweepConfig, run, progress: ProgressFactory = null_progress):
    """(evaluations, artifacts, parameters, family) of a finished run (see :mod:`spikemask.results`)."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from ..data import get_dataset
    from ..energy import measure_energy
    from ..models import count_parameters
    from ..train import evaluate, load_model
    from ..train.augment import batch_transform
    from ..train.evaluate import TimeFirstBatches
    from ..train.loop import eval_subset

    model, _ = load_model(run.run_dir / "last.pt")
    model.eval()
    if cfg.engine != "dense":
        from ..engine import apply_engine

        apply_engine(model, cfg.engine)
    device = torch.device("cpu")
    T = model.config.T
    ds = get_dataset(run.data.name, split="test", T=T, **run.data.dataset_options())
    batch = run.data.eval_batch_size or run.data.batch_size
    transform = batch_transform(run.data.eval_transform)
    acc_loader = DataLoader(ds, batch_size=batch, shuffle=False)
    if cfg.energy_samples is not None and cfg.energy_samples < len(ds):
        energy_ds = Subset(ds, eval_subset(len(ds), 1, cfg.energy_samples, run.seed))
    else:
        energy_ds = ds
    energy_batches = TimeFirstBatches(DataLoader(energy_ds, batch_size=batch, shuffle=False), transform)
    seeds = list(range(cfg.mask_seeds))
    final = json.loads((run.run_dir / "final.json").read_text())["final"]
    evaluations: list[dict[str, Any]] = []

    def record(name: str, kind: str, masked: str | None, blocks: int | None, with_energy: bool,
               reuse: dict[str, Any] | None = None) -> None:
        mask = model.config.mask
        active = mask.active
        acc = reuse or evaluate(model, acc_loader, device, mask_seeds=seeds, transform=transform,
                                progress=progress, desc=name)
        per_seed = acc["per_seed"]
        for i, seed in enumerate(seeds if active else [None]):
            energy = None
            if with_energy:
                energy = measure_energy(model, energy_batches, config=run.energy,
                                        mask_seeds=[seed if seed is not None else 0], device=device)
            evaluations.append({"name": name, "kind": kind, "masked": masked, "blocks": blocks,
                                "mask_ratio": mask.ratio if active else 0.0, "mask_seed": seed,
                                "mask": to_dict(mask), "acc": per_seed[i], "samples": len(ds), "energy": energy})

    trained = dataclasses.replace(model.config.mask)
    wanted = seeds if trained.active else []
    reuse = final if (run.train.max_eval_batches is None and final.get("mask_seeds") == wanted) else None
    record("as trained", "as_trained", "trained sites" if trained.active else None, None, True, reuse)
    if not trained.active:
        groups = cfg.eval_groups or site_groups(model)
        for group, sites in groups.items():
            for ratio in cfg.eval_ratios:
                model.set_mask(dataclasses.replace(trained, ratio=ratio, sites=tuple(sites), seed=None))
                record(f"inference {group} τ={ratio:g}", "inference", group, None, True)
        if cfg.blocks_eval:
            for k in range(1, len(model.mask_blocks()) + 1):
                model.set_mask(dataclasses.replace(trained, ratio=cfg.block_ratio, sites=None,
                                                   blocks=tuple(range(k)), seed=None))
                record(f"blocks k={k} τ={cfg.block_ratio:g}", "blocks", "default sites", k, False)
        model.set_mask(trained)
    artifacts = {}
    if cfg.probes:
        from .probes import collect_probes

        x, _ = next(iter(TimeFirstBatches(DataLoader(energy_ds, batch_size=2, shuffle=False), transform)))
        artifacts["probes"] = collect_probes(model, x, seed=0)
        model.set_mask(trained)
    return evaluations, artifacts, count_parameters(model), model.family


# ------------------------------------------------------------------------------------------------ the sweep


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    logging.getLogger("spikemask").setLevel(logging.WARNING)


def run_sweep(cfg: SweepConfig, *, progress: ProgressFactory = null_progress) -> dict[str, Any]:
    """Run every pending run of ``cfg`` (finished ones are skipped) and return a summary.

    The sweep directory is locked while it runs (a second sweep on it is refused, naming the first). A run
    that fails is recorded as failed with its error and the others go on; the summary lists the failures."""
    import yaml

    sweep = Sweep(cfg)
    with lock_dir(cfg.sweep_dir, "sweep directory"):
        atomic_write_text(cfg.sweep_dir / "sweep.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        with ResultsDB(cfg.db_path) as db:
            status = {spec.run_id: db.run_status(spec.run_id) for spec in sweep.runs}
        pending = [s for s in sweep.runs if status[s.run_id] != "done"]
        summary = {"sweep_dir": str(cfg.sweep_dir), "db": str(cfg.db_path), "runs": len(sweep.runs),
                   "skipped": len(sweep.runs) - len(pending), "resumed": 0, "done": 0, "failed": {}}
        summary["resumed"] = sum(1 for s in pending if status[s.run_id] is not None)
        log.info("sweep %s: %d runs, %d already done, %d to run (%d resumed)", cfg.name, len(sweep.runs),
                 summary["skipped"], len(pending), summary["resumed"])
        bar = progress(total=len(pending), desc=f"sweep {cfg.name}", unit="run")
        workers = min(cfg.workers, max(1, len(pending)))
        if workers == 1:
            for spec in pending:
                bar.set_postfix(run=spec.label)
                try:
                    execute_run(cfg, spec, progress)
                    summary["done"] += 1
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:  # noqa: BLE001 - recorded, reported, and the sweep goes on
                    log.error("run %s (%s) failed: %s", spec.run_id, spec.label, exc)
                    summary["failed"][spec.run_id] = f"{spec.label}: {exc}"
                bar.update(1)
        else:
            threads = max(1, (os.cpu_count() or 1) // workers)
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                     initargs=(threads,)) as pool:
                futures = {pool.submit(execute_run, cfg, spec, null_progress, threads): spec for spec in pending}
                for fut in as_completed(futures):
                    spec = futures[fut]
                    try:
                        fut.result()
                        summary["done"] += 1
                    except Exception as exc:  # noqa: BLE001
                        log.error("run %s (%s) failed: %s", spec.run_id, spec.label, exc)
                        summary["failed"][spec.run_id] = f"{spec.label}: {exc}"
                    bar.update(1)
        bar.close()
        with ResultsDB(cfg.db_path) as db:
            summary["counts"] = db.counts()
    return summary
