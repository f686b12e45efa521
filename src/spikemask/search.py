"""Per-layer masking ratios: a multi-objective search for the accuracy–energy front of a trained model.

MST (001_9e47b243e487ffe3.txt) leaves open how the masking ratio τ should vary across layers; the Masked
Spikformer (000_766e5557120f520b.txt) uses one τ everywhere. Given a checkpoint, this search tries
:class:`~spikemask.masking.MaskConfig` s with one τ per mask *site* (``site_ratios``), per *block*
(``block_ratios``) or both, and keeps the ones no other trial beats on both objectives: test accuracy
(maximised, mean over mask seeds) and counted energy per sample (minimised, the same mask seeds), optionally
under an energy budget. The masks are applied at inference only (no retraining): a front point is a
config to train or fine-tune next, and each one carries a complete run config for ``spikemask train``.

The optimiser is Optuna's (TPE or NSGA-II, seeded: the same config gives the same trials). The first trial
is the unmasked reference (every τ = 0), the second every τ at ``max_ratio``, so both ends of the front
are always measured. Every number is measured by :func:`spikemask.train.evaluate` and
:func:`spikemask.energy.measure_energy` on a fixed seeded sample of the test split, and
:func:`reevaluate` measures a point again in exactly the same way.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from .config import ConfigError, bounded, check_bounds, close_matches_hint, from_dict, to_dict
from .energy import EnergyConfig, measure_energy, saving_pct
from .io import atomic_write_json, atomic_write_text
from .masking import MaskableMixin, MaskConfig, SpikeMask
from .progress import ProgressFactory, null_progress

__all__ = ["SearchConfig", "run_search", "reevaluate", "write_search", "pareto_front", "front_csv"]

log = logging.getLogger(__name__)

PARAMS = ("sites", "blocks", "both")


@dataclass(kw_only=True)
class SearchConfig:
    """A search over per-layer masking ratios of one trained model.

    checkpoint: the trained model (a spikemask checkpoint; its config and stored run config are used).
    params: what gets its own τ. ``sites``: one per mask site (``site_ratios``; every block alike).
        ``blocks``: one per block (``block_ratios``, applied to ``sites``). ``both``: one per block, and
        each site either follows its block's τ or takes its own (``site_ratios`` win over ``block_ratios``,
        so that is every combination a MaskConfig can hold); a site in no block always has its own.
    sites: the sites searched (None: every site of the model, ``model.mask_sites``, for ``sites`` and
        ``both``; for ``blocks`` the model's default sites, ``model.default_mask_sites``, that sit in blocks).
    max_ratio / step: each τ is searched on the grid 0, step, 2·step, ..., max_ratio.
    trials: configurations measured, the reference (all τ = 0) and the all-``max_ratio`` corner included.
    energy_budget_mj: constraint energy per sample <= budget (mJ); None: no constraint.
    sampler: ``tpe`` (Optuna's multi-objective TPE, good with tens of trials) or ``nsga2`` (NSGA-II,
        population based, for hundreds).
    mask_seeds: accuracy and energy are means over mask seeds 0 .. mask_seeds-1.
    samples / energy_samples: accuracy / energy are measured on a seeded random sample of this many test
        samples (None: the whole test split); the energy sample is drawn with the same seed.
    batch_size: evaluation batch size.
    seed: the sampler's seed (the same config gives the same trials).
    data_seed: seed of the test samples drawn.
    data / root: evaluate on another data set / data folder (default: the checkpoint's own).
    device: ``cpu`` (bit-for-bit reproducible), ``cuda``, ``auto``.
    engine: how each trial's model computes (``dense``, ``event``, ``auto``: :mod:`spikemask.engine`; the same
        numbers to float rounding, less time at low firing rates).
    """

    checkpoint: str
    params: Literal["sites", "blocks", "both"] = "sites"
    sites: tuple[str, ...] | None = None
    max_ratio: float = bounded(0.9, gt=0, lt=1)
    step: float = bounded(0.05, gt=0, lt=1)
    trials: int = bounded(40, ge=1)
    energy_budget_mj: float | None = bounded(None, gt=0)
    sampler: Literal["tpe", "nsga2"] = "tpe"
    mask_seeds: int = bounded(2, ge=1)
    samples: int | None = bounded(128, ge=1)
    energy_samples: int | None = bounded(16, ge=1)
    batch_size: int = bounded(64, ge=1)
    seed: int = bounded(0, ge=0, lt=2**32)
    data_seed: int = bounded(0, ge=0, lt=2**32)
    data: str | None = None
    root: str | None = None
    device: str = "cpu"
    engine: Literal["dense", "event", "auto"] = "dense"

    def __post_init__(self) -> None:
        check_bounds(self, "search")
        if self.params not in PARAMS:
            raise ConfigError(f"search.params must be one of {', '.join(PARAMS)}, got {self.params!r}")
        if self.sampler not in ("tpe", "nsga2"):
            raise ConfigError(f"search.sampler must be 'tpe' or 'nsga2', got {self.sampler!r}")
        if self.step > self.max_ratio:
            raise ConfigError(f"search.step ({self.step:g}) must be <= search.max_ratio ({self.max_ratio:g})")
        steps = self.max_ratio / self.step
        if abs(steps - round(steps)) > 1e-6:
            raise ConfigError(f"search.max_ratio ({self.max_ratio:g}) must be a multiple of search.step "
                              f"({self.step:g}), e.g. {round(steps) * self.step:g}")
        if self.sites is not None:
            self.sites = tuple(self.sites)
            if not self.sites:
                raise ConfigError("search.sites is empty: name at least one mask site, or leave it unset")
            twice = sorted({s for s in self.sites if self.sites.count(s) > 1})
            if twice:
                raise ConfigError(f"search.sites names {twice[0]!r} twice")
        from .train.config import check_device

        check_device(self.device)


# ----------------------------------------------------------------------------------------------------------
# the search space: Optuna parameters <-> MaskConfig


def _grid(value: float) -> float:
    """Optuna's stepped floats carry float noise (0.15000000000000002): the τ a user reads and writes."""
    return round(float(value), 6)


class _Space:
    """The parameters of one search and the MaskConfig each assignment stands for.

    Parameter names: ``site:<site>`` (τ of a site), ``block:<i>`` (τ of block i), and with ``both``
    ``own:<site>`` (True: the site takes ``site:<site>``, False: it follows the block τ).
    """

    def __init__(self, cfg: SearchConfig, model: MaskableMixin, base: MaskConfig):
        self.cfg, self.base = cfg, base
        names = model.mask_blocks()
        self.blocks = list(range(len(names)))
        in_blocks = {m.site for n, m in model.named_modules()
                     if isinstance(m, SpikeMask) and any(n.startswith(b + ".") for b in names)}
        if cfg.params in ("blocks", "both") and not self.blocks:
            raise ConfigError(f"search.params={cfg.params!r}: {type(model).__name__} has no blocks to give "
                              "ratios to; search params=sites instead")
        if cfg.params == "blocks":
            self.sites = tuple(s for s in model.default_mask_sites if s in in_blocks)
            outside = [s for s in cfg.sites or () if s not in in_blocks]
            if outside:
                raise ConfigError(f"mask site {outside[0]!r} sits in no block of {type(model).__name__}, so a "
                                  "per-block ratio never reaches it; search it with params=sites or both")
        else:
            self.sites = tuple(model.mask_sites)
        self.sites = tuple(cfg.sites) if cfg.sites is not None else self.sites
        # with ``both``, a site in no block (the patch stem) has no block τ to follow: it always has its own
        self.free = tuple(s for s in self.sites if s in in_blocks) if cfg.params == "both" else ()

    def suggest(self, trial: Any) -> MaskConfig:
        hi, step = self.cfg.max_ratio, self.cfg.step
        site_ratios, block_ratios = {}, {}
        if self.cfg.params in ("blocks", "both"):
            block_ratios = {b: _grid(trial.suggest_float(f"block:{b}", 0.0, hi, step=step)) for b in self.blocks}
        for s in self.sites if self.cfg.params != "blocks" else ():
            if s in self.free and not trial.suggest_categorical(f"own:{s}", [False, True]):
                continue
            site_ratios[s] = _grid(trial.suggest_float(f"site:{s}", 0.0, hi, step=step))
        return self.mask(site_ratios, block_ratios)

    def mask(self, site_ratios: dict[str, float], block_ratios: dict[int, float]) -> MaskConfig:
        # ratio 0: nothing is masked but what a parameter names; blocks None: every block
        return dataclasses.replace(self.base, ratio=0.0, sites=self.sites, site_ratios=site_ratios, blocks=None,
                                   block_ratios=block_ratios)

    def corner(self, tau: float) -> dict[str, Any]:
        """The Optuna parameters of every τ equal to ``tau`` (enqueued: reference and cheapest corner)."""
        params: dict[str, Any] = {}
        if self.cfg.params in ("blocks", "both"):
            params.update({f"block:{b}": tau for b in self.blocks})
        if self.cfg.params in ("sites", "both"):
            params.update({f"site:{s}": tau for s in self.sites if s not in self.free})
            params.update({f"own:{s}": False for s in self.free})
        return params

    def keys(self) -> list[str]:
        """The keys of :meth:`ratios`, in order: searched sites, then blocks."""
        sites = list(self.sites) if self.cfg.params != "blocks" else []
        blocks = [f"block {b}" for b in self.blocks] if self.cfg.params != "sites" else []
        return sites + blocks

    @staticmethod
    def ratios(mask: MaskConfig) -> dict[str, float]:
        """The searched τ of a mask, flat and readable: ``{"attn.q": 0.3, "block 0": 0.1}``."""
        out = {s: r for s, r in mask.site_ratios.items()}
        out.update({f"block {b}": r for b, r in sorted(mask.block_ratios.items())})
        return out


# ----------------------------------------------------------------------------------------------------------
# measuring one mask


class _Evaluator:
    """A checkpoint, its test sample and energy config, loaded once; :meth:`measure` scores one mask."""

    def __init__(self, cfg: SearchConfig):
        from .train import load_model
        from .train.augment import batch_transform
        from .train.data import checkpoint_data_config, test_loader
        from .train.distributed import DistInfo, resolve_device

        self.cfg = cfg
        self.device = resolve_device(cfg.device, DistInfo())
        model, self.state = load_model(cfg.checkpoint)
        if not isinstance(model, MaskableMixin) or not model.mask_sites:
            raise ValueError(f"{cfg.checkpoint}: {type(model).__name__} has no Random Spike Masking sites, so "
                             "there are no ratios to search (`spikemask models` lists the models with sites)")
        unknown = [s for s in (cfg.sites or ()) if s not in model.mask_sites]
        if unknown:
            raise ConfigError(f"unknown mask site {unknown[0]!r} for {model.variant}."
                              f"{close_matches_hint(unknown[0], model.mask_sites)} "
                              f"Valid sites: {', '.join(model.mask_sites)}")
        if cfg.engine != "dense":
            from .engine import apply_engine

            apply_engine(model, cfg.engine)
        self.model = model.to(self.device)
        self.seeds = list(range(cfg.mask_seeds))
        run_config = self.state.get("run_config") or {}
        self.energy_cfg = from_dict(EnergyConfig, run_config.get("energy") or {}, where="energy")
        self.data_cfg = checkpoint_data_config(self.state, cfg.data, cfg.root)
        self.transform = batch_transform(self.data_cfg.eval_transform)
        T = model.config.T

        def batches(samples: int | None):
            loader = test_loader(self.data_cfg, T, cfg.batch_size, samples, cfg.data_seed)
            # a sample is read once per trial and seed: keep it in memory; the whole split is streamed
            return list(loader) if samples is not None else loader

        self.acc_batches = batches(cfg.samples)
        self.energy_batches = batches(cfg.energy_samples)
        self.samples = sum(len(y) for _, y in self.acc_batches)
        self.energy_sample_count = sum(len(y) for _, y in self.energy_batches)
        # masks on at inference whatever the checkpoint's mode: that is what is searched
        self.base_mask = dataclasses.replace(model.config.mask, mode="always")

    def measure(self, mask: MaskConfig) -> dict[str, Any]:
        from .train import evaluate
        from .train.evaluate import TimeFirstBatches

        self.model.set_mask(mask)
        acc = evaluate(self.model, self.acc_batches, self.device, mask_seeds=self.seeds, transform=self.transform)
        report = measure_energy(self.model, TimeFirstBatches(self.energy_batches, self.transform),
                                config=self.energy_cfg, mask_seeds=self.seeds, device=self.device)
        totals = report["totals"]
        return {"acc": acc["acc"], "acc_std": acc["acc_std"], "energy_mj": totals["energy_mj"],
                "energy_mj_std": totals["energy_mj_std"]}

    def run_config(self, mask: MaskConfig, name: str) -> dict[str, Any]:
        """The checkpoint's run config with this mask (a complete config for ``spikemask train``)."""
        stored = self.state.get("run_config")
        if stored is None:  # a checkpoint saved outside ``fit``: its model and the data it is evaluated on
            stored = {"model": {"name": self.state.get("variant") or self.state["family"],
                                **self.state["model_config"]}}
        run = json.loads(json.dumps(stored))  # a deep copy of plain values
        run["model"]["mask"] = to_dict(mask)
        run["data"] = to_dict(self.data_cfg)
        run["name"] = name
        from .train.config import RunConfig

        from_dict(RunConfig, run)  # it must load as it will be written
        return run


# ----------------------------------------------------------------------------------------------------------
# the search


def pareto_front(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points no other point beats: none has accuracy >= and energy <= with one of them strict.

    Points with identical (acc, energy_mj) count once (the first). Returned by increasing energy.
    """
    front: list[dict[str, Any]] = []
    seen: set[tuple[float, float]] = set()
    for p in points:
        key = (p["acc"], p["energy_mj"])
        if key in seen:
            continue
        dominated = any(q["acc"] >= p["acc"] and q["energy_mj"] <= p["energy_mj"]
                        and (q["acc"] > p["acc"] or q["energy_mj"] < p["energy_mj"]) for q in points)
        if not dominated:
            front.append(p)
            seen.add(key)
    return sorted(front, key=lambda p: (p["energy_mj"], -p["acc"]))


def _sampler(optuna: Any, cfg: SearchConfig, constraints_func: Any) -> Any:
    extra = {"constraints_func": constraints_func} if constraints_func is not None else {}
    if cfg.sampler == "nsga2":
        population = min(50, max(4, cfg.trials // 5))
        return optuna.samplers.NSGAIISampler(population_size=population, seed=cfg.seed, **extra)
    startup = min(10, max(3, cfg.trials // 3))  # the two enqueued corners count among them
    return optuna.samplers.TPESampler(n_startup_trials=startup, multivariate=True, group=cfg.params == "both",
                                      seed=cfg.seed, **extra)


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ImportError("the ratio search needs Optuna: pip install 'spikemask[search]' "
                          "(or pip install 'optuna>=4')") from None
    return optuna


def run_search(cfg: SearchConfig, *, progress: ProgressFactory = null_progress) -> dict[str, Any]:
    """Run the search; return every trial, the reference and the accuracy–energy front (see module doc).

    Each trial: ``number``, ``mask`` (a MaskConfig as a dict), ``ratios`` (the searched τ, flat), ``acc``,
    ``acc_std`` (%, over mask seeds), ``energy_mj``, ``energy_mj_std`` (per sample), ``feasible``. Each front
    point adds ``point`` (its index), ``delta_e_pct`` and ``delta_acc`` against the reference, and
    ``run_config`` (the checkpoint's run config with this mask). With a budget no trial meets, ``front`` is
    empty and ``note`` says so.
    """
    optuna = _import_optuna()
    start = time.perf_counter()
    ev = _Evaluator(cfg)
    space = _Space(cfg, ev.model, ev.base_mask)
    budget = cfg.energy_budget_mj
    use_set_constraint = hasattr(optuna.trial.Trial, "set_constraint")  # Optuna >= 5
    constraints_func = None
    if budget is not None and not use_set_constraint:
        constraints_func = lambda t: (t.user_attrs["energy_mj"] - budget,)  # noqa: E731
    measured: dict[str, dict[str, Any]] = {}  # the same mask drawn twice is measured once
    trials: list[dict[str, Any]] = []
    bar = progress(total=cfg.trials, desc="search", unit="trial")

    def objective(trial: Any) -> tuple[float, float]:
        mask = space.suggest(trial)
        key = json.dumps(to_dict(mask), sort_keys=True)
        if key not in measured:
            measured[key] = ev.measure(mask)
        m = measured[key]
        trial.set_user_attr("energy_mj", m["energy_mj"])
        if budget is not None and use_set_constraint:
            trial.set_constraint("energy_budget", m["energy_mj"] - budget)
        feasible = budget is None or m["energy_mj"] <= budget
        trials.append({"number": trial.number, "mask": to_dict(mask), "ratios": space.ratios(mask), **m,
                       "feasible": feasible})
        log.info("trial %d: acc %.2f %%, energy %.4g mJ%s  %s", trial.number, m["acc"], m["energy_mj"],
                 "" if feasible else " (over budget)", _label(space.ratios(mask)))
        bar.update(1)
        bar.set_postfix(acc=f"{m['acc']:.1f}", energy_mj=f"{m['energy_mj']:.3g}")
        return m["acc"], m["energy_mj"]

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the library logs its own trials; Optuna's go quiet
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study = optuna.create_study(directions=["maximize", "minimize"],
                                        sampler=_sampler(optuna, cfg, constraints_func))
            study.enqueue_trial(space.corner(0.0))
            if cfg.trials > 1:
                study.enqueue_trial(space.corner(cfg.max_ratio))
            study.optimize(objective, n_trials=cfg.trials)
    finally:
        optuna.logging.set_verbosity(verbosity)
        bar.close()
        ev.model.set_mask(ev.base_mask)

    reference = trials[0]
    feasible = [t for t in trials if t["feasible"]]
    front = []
    for i, t in enumerate(pareto_front(feasible)):
        mask = from_dict(MaskConfig, t["mask"], where="mask")
        front.append({"point": i, **t, "delta_e_pct": saving_pct(t["energy_mj"], reference["energy_mj"]),
                      "delta_acc": t["acc"] - reference["acc"],
                      "run_config": ev.run_config(mask, f"{_run_name(ev.state)}_search_p{i}")})
    cheapest = min(t["energy_mj"] for t in trials)
    note = None
    if not feasible:
        corner = f" (every τ = {cfg.max_ratio:g}: {trials[1]['energy_mj']:.4g} mJ)" if len(trials) > 1 else ""
        note = (f"no trial met the energy budget of {budget:g} mJ per sample: the cheapest of {len(trials)} took "
                f"{cheapest:.4g} mJ{corner}; raise the budget (or max_ratio)")
        log.warning(note)  # the result carries it too
    return {
        "search": to_dict(cfg),
        "model": ev.model.variant,
        "data": ev.data_cfg.name,
        "samples": ev.samples,
        "energy_samples": ev.energy_sample_count,
        "mask_seeds": ev.seeds,
        "searched": {"params": cfg.params, "sites": list(space.sites), "blocks": ev.model.mask_blocks(),
                     "keys": space.keys()},
        "reference": {k: reference[k] for k in ("acc", "acc_std", "energy_mj", "energy_mj_std")},
        "energy_budget_mj": budget,
        "trials": trials,
        "front": front,
        "feasible_trials": len(feasible),
        "distinct_configs": len(measured),  # a grid point drawn again is not measured again
        "cheapest_energy_mj": cheapest,
        "note": note,
        "seconds": time.perf_counter() - start,
        "optuna_version": optuna.__version__,
    }


def _run_name(state: dict[str, Any]) -> str:
    return str(((state.get("run_config") or {}).get("name")) or state.get("variant") or "run")


def _label(ratios: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in ratios.items()) or "unmasked"


def reevaluate(cfg: SearchConfig, point: dict[str, Any] | MaskConfig) -> tuple[float, float]:
    """(accuracy %, energy mJ per sample) of a point (a trial or front point of :func:`run_search`, or its
    MaskConfig), measured again from the checkpoint with the search's samples and mask seeds."""
    ev = _Evaluator(cfg)
    mask = point if isinstance(point, MaskConfig) else from_dict(MaskConfig, point["mask"], where="mask")
    m = ev.measure(mask)
    return m["acc"], m["energy_mj"]


# ----------------------------------------------------------------------------------------------------------
# results on disk


def front_csv(result: dict[str, Any]) -> str:
    """One row per front point: numbers, then one column per searched τ."""
    keys = [k for k in result["searched"]["keys"] if any(k in p["ratios"] for p in result["front"])]
    columns = ["point", "trial", "acc", "acc_std", "energy_mj", "energy_mj_std", "delta_e_pct", "delta_acc"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns + [f"tau[{k}]" for k in keys])
    for p in result["front"]:
        writer.writerow([p["point"], p["number"]] + [p[c] for c in columns[2:]]
                        + [p["ratios"].get(k, "") for k in keys])
    return buf.getvalue()


def _point_yaml(result: dict[str, Any], p: dict[str, Any]) -> str:
    head = (f"# Search point {p['point']} (trial {p['number']}) of {result['model']}: accuracy {p['acc']:.2f} % "
            f"and {p['energy_mj']:.4g} mJ per sample\n# with these masks at inference only, on {result['samples']} "
            f"/ {result['energy_samples']} {result['data']} test samples, mean over mask seeds "
            f"{result['mask_seeds']}.\n# Train it:     spikemask train --config point_{p['point']}.yaml\n"
            f"# Fine-tune it: spikemask train --config point_{p['point']}.yaml "
            f"--set train.init_from={result['search']['checkpoint']}\n")
    return head + yaml.safe_dump(p["run_config"], sort_keys=False)


def write_search(result: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``search.json`` (everything), ``front.csv``, ``point_<i>.yaml`` per front point and ``front.png``."""
    out = Path(out_dir)
    keep = {f"point_{p['point']}.yaml" for p in result["front"]}
    for old in out.glob("point_*.yaml"):  # a previous search's points would pass for this one's
        if old.name not in keep and old.stem.removeprefix("point_").isdigit():
            old.unlink()
            log.info("removed %s of a previous search", old)
    paths = {"json": atomic_write_json(out / "search.json", result),
             "csv": atomic_write_text(out / "front.csv", front_csv(result))}
    for p in result["front"]:
        paths[f"point_{p['point']}"] = atomic_write_text(out / f"point_{p['point']}.yaml", _point_yaml(result, p))
    paths["plot"] = plot_front(result, out / "front.png")
    return paths


def plot_front(result: dict[str, Any], path: str | Path) -> Path:
    """Accuracy against energy: every trial grey, the front highlighted and numbered, the budget dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plot import save_figure

    trials, front, budget = result["trials"], result["front"], result["energy_budget_mj"]
    energies = [t["energy_mj"] for t in trials] + ([budget] if budget is not None else [])
    scale, unit = (1e3, "µJ") if max(energies) < 0.1 else (1.0, "mJ")  # as plot.py: µJ on the bundled data
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter([t["energy_mj"] * scale for t in trials], [t["acc"] for t in trials], color="0.7", s=18,
               label=f"trials ({len(trials)})")
    ref = result["reference"]
    ax.scatter([ref["energy_mj"] * scale], [ref["acc"]], marker="*", s=120, color="black", zorder=3,
               label="unmasked reference")
    if front:
        xs, ys = [p["energy_mj"] * scale for p in front], [p["acc"] for p in front]
        ax.step(xs, ys, where="post", color="tab:red", alpha=0.5)
        ax.scatter(xs, ys, color="tab:red", s=30, zorder=4, label=f"front ({len(front)})")
        for p, x, y in zip(front, xs, ys):
            ax.annotate(str(p["point"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if budget is not None:
        ax.axvline(budget * scale, color="tab:blue", linestyle="--", linewidth=1, label=f"budget {budget * scale:.4g} "
                   f"{unit}")
    ax.set_xlabel(f"compute energy per sample ({unit}, 45 nm estimate)")
    ax.set_ylabel(f"test accuracy (%, {result['samples']} samples)")
    what = {"sites": "per-site", "blocks": "per-block", "both": "per-block and per-site"}[result["searched"]["params"]]
    ax.set_title(f"{result['model']}: {what} masking ratios")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, path)
