"""A report built from a results database alone: PNG figures, ``report.md`` and one self-contained ``report.html``.

Only :mod:`.db`, numpy, matplotlib and the standard library are used (no torch, no model, no training code), so a
report can be made anywhere the database is copied to. What each figure shows and which sweep options produce its
data: docs/reports.md. The table is the papers' form (000_766e5557120f520b.txt, Tables 1-2): accuracy, energy, and
the energy saved (ΔE) against the same model unmasked, at the same T and at the largest T, as separate columns.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..io import atomic_write_text
from . import report_figures as F
from .db import ResultsDB, ResultsError
from .report_html import render_html

__all__ = ["build_report", "summary_rows", "summary_table", "energy_unit", "DB_FILE", "FIGURES"]

DB_FILE = "results.db"  # a sweep directory's database (spikemask.results.sweep.DB_NAME; not imported: torch)

# figure id -> (file, title, what it shows, the sweep option that produces its data when it is missing)
FIGURES: dict[str, tuple[str, str, str, str]] = {
    "accuracy_vs_energy": (
        "accuracy_vs_energy.png", "Accuracy against energy",
        "One point per model, T and trained masking ratio (mean ± std); hollow triangles: RSM at inference "
        "only. The Pareto front (no other point is both more accurate and cheaper) is the dashed line.",
        "no evaluation of a model as trained with its energy: every sweep run records one (`spikemask sweep`)"),
    "energy_by_group": (
        "energy_by_group.png", "Where the energy goes",
        "Compute energy per sample of each trained model, stacked by layer group (first layer, tokenizer, "
        "attention, MLP, head, pooling).",
        "no per-layer energy of a model as trained: every sweep run records it (`spikemask sweep`)"),
    "inference_masking": (
        "inference_masking.png", "RSM at inference only, per masked module (MST Fig. 5)",
        "Accuracy of unmasked models when Random Spike Masking is switched on at inference only, on one group "
        "of sites at a time, against the masking ratio; mean ± std over mask (and training) seeds.",
        "run the sweep with `--eval-ratios 0.25,0.5,0.75` and unmasked runs in the grid (model.mask.ratio=0)"),
    "blocks_masking": (
        "blocks_masking.png", "Masking the first k blocks (MST Fig. 6)",
        "Accuracy of unmasked models masked at inference on their default sites in their first k blocks.",
        "run the sweep with `--blocks` (ratio `--block-ratio`, default 0.5) and unmasked runs in the grid"),
    "spike_maps": (
        "spike_maps_{model}.png", "Spike activation maps per time step (MST Fig. 7)",
        "Spiking channels per position of one test sample, per time step (columns), at masking ratios "
        "τ = 0, 0.5, 0.75 on the default sites (rows), for the last tokenizer neuron and the first block's "
        "attention and MLP neurons; masked sites are drawn after their mask (the spikes sent on).",
        "probes are stored per run unless the sweep ran with `--no-probes`"),
    "synaptic_inputs": (
        "synaptic_inputs.png", "Values entering each synaptic layer (004 appendix E)",
        "For every convolution and linear layer, how often each input value occurs (colour: log10 count): "
        "spikes are 0/1; Spikformer's residual stream feeds integers 2, 3, ... to the next block's layers; "
        "first layers and heads read real values.",
        "probes are stored per run unless the sweep ran with `--no-probes`"),
    "firing_rates": (
        "firing_rates.png", "Firing rate per neuron layer and time step",
        "Spikes per neuron and step of every neuron layer (rows) at every time step (columns), one test batch.",
        "probes are stored per run unless the sweep ran with `--no-probes`"),
}

_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """Student's t 97.5 % quantile (a two-sided 95 % interval) for ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    return 1.960 + 2.4 / df  # within 0.003 of the exact value for df > 30


def saving_pct(energy: float, reference: float) -> float:
    """ΔE as the papers print it: percent of the reference energy saved (positive = less energy)."""
    return 100.0 * (1.0 - energy / reference) if reference else float("nan")


def energy_unit(max_mj: float) -> tuple[float, str]:
    """(factor from mJ, unit): µJ when energies are small (the bundled data), mJ otherwise (the papers')."""
    return (1e3, "µJ") if max_mj < 0.1 else (1.0, "mJ")


def _dataset(config: dict[str, Any]) -> str:
    data = config.get("data") if isinstance(config, dict) else None
    return str(data.get("name", "")) if isinstance(data, dict) else ""


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summary_rows(evaluations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The papers' table from the ``as_trained`` evaluations: one row per (model, data set, T, trained τ).

    acc / acc_std: mean and std over every evaluation of the row (training seeds x mask seeds); ci: the 95 %
    Student-t interval of the mean over training seeds (each run's mean over its mask seeds), None with fewer
    than 2 training seeds; energy_mj: mean over the same evaluations; delta_same_t: % saved against the same
    model unmasked at the same T (None for the unmasked rows); delta_ref: % saved against the same model
    unmasked at its largest T (``ref_T``). Missing references give NaN."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for e in evaluations:
        if e["kind"] == "as_trained":
            groups[e["model"], _dataset(e["config"]), e["T"], float(e["mask_ratio"])].append(e)
    rows = []
    for (model, data, T, ratio), evs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0,
                                                                                 kv[0][3])):
        per_run: dict[str, list[float]] = defaultdict(list)
        for e in evs:
            per_run[e["run_id"]].append(e["acc"])
        run_means = [statistics.fmean(v) for v in per_run.values()]
        accs = [e["acc"] for e in evs]
        ci = None
        if len(run_means) >= 2:
            half = t975(len(run_means) - 1) * statistics.stdev(run_means) / math.sqrt(len(run_means))
            centre = statistics.fmean(run_means)
            ci = (centre - half, centre + half)
        energies = [e["energy_mj"] for e in evs if e["energy_mj"] is not None]
        rows.append({
            "model": model, "data": data, "T": T, "mask_ratio": ratio, "family": evs[0].get("family"),
            "runs": sorted(per_run), "train_seeds": len(per_run),
            "mask_seeds": len({e["mask_seed"] for e in evs if e["mask_seed"] is not None}),
            "evaluations": len(evs), "acc": statistics.fmean(accs), "acc_std": _std(accs), "ci": ci,
            "energy_mj": statistics.fmean(energies) if energies else None, "energy_mj_std": _std(energies),
            "params": max((e["params"] or 0) for e in evs) or None, "eval_ids": [e["eval_id"] for e in evs],
        })
    base = {(r["model"], r["data"], r["T"]): r for r in rows if r["mask_ratio"] == 0}
    ref_T: dict[tuple, int] = {}
    for (model, data, T), r in base.items():
        if r["energy_mj"] is not None and T is not None and T > ref_T.get((model, data), -1):
            ref_T[model, data] = T
    for r in rows:
        b = base.get((r["model"], r["data"], r["T"]))
        T_ref = ref_T.get((r["model"], r["data"]))
        ref = base.get((r["model"], r["data"], T_ref)) if T_ref is not None else None
        E = r["energy_mj"]
        r["delta_same_t"] = None if r["mask_ratio"] == 0 else (
            saving_pct(E, b["energy_mj"]) if E is not None and b and b["energy_mj"] else float("nan"))
        r["ref_T"] = T_ref
        r["delta_ref"] = saving_pct(E, ref["energy_mj"]) if E is not None and ref else float("nan")
    return rows


def _curves(evaluations: list[dict[str, Any]], kind: str, x_key: str, line_key) -> dict[tuple, dict]:
    """Mean ± std accuracy per (model, data) panel, line and x, with the unmasked as-trained accuracy at x = 0."""
    panels: dict[tuple, dict[Any, dict[float, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(
        list)))
    unmasked: dict[tuple, list[float]] = defaultdict(list)
    for e in evaluations:
        panel = (e["model"], _dataset(e["config"]))
        if e["kind"] == kind:
            panels[panel][line_key(e)][float(e[x_key])].append(e["acc"])
        elif e["kind"] == "as_trained" and e["mask_ratio"] == 0:
            unmasked[panel + (e["T"],)].append(e["acc"])
    out = {}
    for panel, lines in panels.items():
        out[panel] = {}
        for line, points in lines.items():
            base = unmasked.get(panel + (line[0],))
            if base:
                points.setdefault(0.0, base)
            xs = sorted(points)
            out[panel][line] = {"x": xs, "acc": [statistics.fmean(points[x]) for x in xs],
                                "std": [_std(points[x]) for x in xs], "n": [len(points[x]) for x in xs]}
    return out


def _probe_runs(db: ResultsDB, runs: list[dict[str, Any]]) -> dict[tuple, tuple[dict[str, Any], dict]]:
    """One run with probes per (model, data set): unmasked if any, then the largest T, then the first seed."""
    have = {rid for rid, name in db.artifact_names() if name == "probes"}
    best: dict[tuple, dict[str, Any]] = {}
    for r in runs:
        if r["run_id"] not in have:
            continue
        key = (r["model"], _dataset(r["config"]))
        rank = ((r["mask_ratio"] or 0) == 0, r["T"] or 0, -(r["train_seed"] or 0))
        if key not in best or rank > best[key][0]:
            best[key] = (rank, r)
    return {key: (r, db.artifact(r["run_id"], "probes")) for key, (_, r) in sorted(best.items())}


def _open(source: str | Path) -> ResultsDB:
    path = Path(source)
    if path.is_dir():
        if not (path / DB_FILE).is_file():
            raise ResultsError(f"{path} holds no {DB_FILE}: nothing to report (run a sweep into it first: "
                               f"spikemask sweep --config ... --out {path.parent})")
        path = path / DB_FILE
    elif not path.exists():
        raise ResultsError(f"{path} does not exist: give a sweep directory (holding {DB_FILE}) or a results database")
    elif path.stat().st_size == 0:
        raise ResultsError(f"{path} is empty: not a results database (nothing to report)")
    return ResultsDB(path, create=False)


def build_report(source: str | Path, out_dir: str | Path | None = None, *, title: str | None = None
                 ) -> dict[str, Any]:
    """Write the figures, ``report.md`` and ``report.html`` for the results database ``source`` into ``out_dir``.

    source: a results database file, or a directory holding ``results.db`` (a sweep's). out_dir: default
    ``<that directory>/report``. A database without finished runs raises :class:`ResultsError` and writes nothing.
    Every file is written atomically. Returns the paths written (``out_dir``, ``markdown``, ``html``,
    ``figures``: id -> path), the ids of figures ``missing`` (-> why) and the table rows.
    """
    with _open(source) as db:
        db_path = db.path
        counts = db.counts()
        runs = db.runs()
        evaluations = db.evaluations()
        if not runs or not evaluations:
            raise ResultsError(f"{db_path} has no finished runs with evaluations ({counts['done']} done, "
                               f"{counts['running']} running or interrupted, {counts['failed']} failed): "
                               f"nothing to report yet")
        rows = summary_rows(evaluations)
        layer_rows: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for layer in db.table("layers", [i for r in rows for i in r["eval_ids"]]):
            layer_rows[layer["eval_id"]].append(layer)
        probes = _probe_runs(db, runs)
        all_runs = db.runs(status=None)
    out = Path(out_dir) if out_dir is not None else db_path.parent / "report"
    energies = [r["energy_mj"] for r in rows if r["energy_mj"] is not None]
    energies += [e["energy_mj"] for e in evaluations if e["energy_mj"] is not None]
    scale, unit = energy_unit(max(energies) if energies else 0.0)

    figures: dict[str, Path] = {}
    missing: dict[str, str] = {}

    def make(fig_id: str, data_ok: bool, draw, *args, file: str | None = None, key: str | None = None) -> None:
        name = file or FIGURES[fig_id][0]
        if not data_ok:
            missing[key or fig_id] = FIGURES[fig_id][3]
            return
        figures[key or fig_id] = draw(*args, out / name)

    points = [r for r in rows if r["energy_mj"] is not None]
    inference_points = _inference_points(evaluations)
    make("accuracy_vs_energy", bool(points), F.accuracy_vs_energy, points, inference_points, scale, unit)
    grouped = [(r, F.energy_groups([layer_rows[i] for i in r["eval_ids"]])) for r in points]
    make("energy_by_group", any(g for _, g in grouped), F.energy_by_group, grouped, scale, unit)
    inference = _curves(evaluations, "inference", "mask_ratio", lambda e: (e["T"], e["masked"] or "?"))
    make("inference_masking", bool(inference), F.inference_masking, inference)
    blocks = _curves(evaluations, "blocks", "blocks", lambda e: (e["T"], float(e["mask_ratio"])))
    make("blocks_masking", bool(blocks), F.blocks_masking, blocks)
    if probes:
        for (model, data), (run, arrays) in probes.items():
            label = f"{model}{f'-{data}' if data else ''}"
            make("spike_maps", True, F.spike_maps, run, arrays, file=f"spike_maps_{F.slug(label)}.png",
                 key=f"spike_maps:{label}")
    else:
        missing["spike_maps"] = FIGURES["spike_maps"][3]
    make("synaptic_inputs", bool(probes), F.synaptic_inputs, probes)
    make("firing_rates", bool(probes), F.firing_rates, probes)

    info = {"title": title or "spikemask results report", "db": str(db_path), "counts": counts,
            "generated": time.strftime("%Y-%m-%d %H:%M:%S"), "unit": unit, "scale": scale}
    tables = [summary_table(rows, scale, unit), runs_table(all_runs)]
    sections = [_section(fig_id, path) for fig_id, path in figures.items()]
    md = render_markdown(info, tables, sections, missing)
    html = render_html(info, tables, sections, missing)
    md_path = atomic_write_text(out / "report.md", md)
    html_path = atomic_write_text(out / "report.html", html)
    return {"out_dir": out, "markdown": md_path, "html": html_path, "figures": figures, "missing": missing,
            "rows": [{k: v for k, v in r.items() if k != "eval_ids"} for r in rows], "unit": unit}


def _inference_points(evaluations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy and energy of the inference-only maskings: one point per (model, data, T, group, τ)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for e in evaluations:
        if e["kind"] == "inference" and e["energy_mj"] is not None:
            groups[e["model"], _dataset(e["config"]), e["T"], e["masked"], float(e["mask_ratio"])].append(e)
    return [{"model": m, "data": d, "T": T, "masked": g, "mask_ratio": r,
             "acc": statistics.fmean(e["acc"] for e in evs), "acc_std": _std([e["acc"] for e in evs]),
             "energy_mj": statistics.fmean(e["energy_mj"] for e in evs),
             "energy_mj_std": _std([e["energy_mj"] for e in evs])}
            for (m, d, T, g, r), evs in sorted(groups.items(), key=lambda kv: str(kv[0]))]


def _section(key: str, path: Path) -> dict[str, str]:
    fig_id, _, which = key.partition(":")
    _, title, caption, _ = FIGURES[fig_id]
    return {"id": key, "title": f"{title}: {which}" if which else title, "caption": caption, "file": path.name,
            "path": str(path)}


# ------------------------------------------------------------------------------------------------ tables
# a table: {"id", "title", "headers", "rows": [[(text, sort value), ...]], "notes"}; rendered as Markdown
# here and as sortable HTML by report_html


def _num(x: float | None, fmt: str) -> tuple[str, float | str]:
    if x is None:
        return "–", ""
    if isinstance(x, float) and not math.isfinite(x):
        return "n/a", ""
    return format(x, fmt), float(x)


def summary_table(rows: list[dict[str, Any]], scale: float, unit: str) -> dict[str, Any]:
    """The papers' table (000, Tables 1-2) with both ΔE columns, the CI and the seed counts."""
    refs = sorted({r["ref_T"] for r in rows if r["ref_T"] is not None})
    ref_head = f"ΔE vs T={refs[0]} unmasked (% saved)" if len(refs) == 1 else "ΔE vs largest-T unmasked (% saved)"
    several_data = len({r["data"] for r in rows}) > 1
    headers = ["Model"] + (["Data"] if several_data else []) + [
        "T", "M (%)", "Acc (%) mean ± std", "Acc 95 % CI (train seeds)", "train seeds", "mask seeds",
        f"E ({unit})", "ΔE vs same-T unmasked (% saved)", ref_head, "Param (M)"]
    out = []
    for r in rows:
        ci = r["ci"]
        E = None if r["energy_mj"] is None else r["energy_mj"] * scale
        out.append([(r["model"], r["model"])] + ([(r["data"] or "–", r["data"])] if several_data else []) + [
            (str(r["T"]), r["T"] if r["T"] is not None else ""),
            (f"{100 * r['mask_ratio']:g}" if r["mask_ratio"] else "–", 100 * r["mask_ratio"]),
            (f"{r['acc']:.2f} ± {r['acc_std']:.2f}", r["acc"]),
            (f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "–", ci[0] if ci else ""),
            (str(r["train_seeds"]), r["train_seeds"]), (str(r["mask_seeds"] or "–"), r["mask_seeds"]),
            _num(E, ".4g"), _num(r["delta_same_t"], ".1f"), _num(r["delta_ref"], ".1f"),
            _num(None if r["params"] is None else r["params"] / 1e6, ".3f")])
    notes = [
        "Acc: mean ± std over every evaluation of the row (training seeds × mask seeds); the 95 % CI is Student's "
        "t over the training seeds' means (shown with 2 or more training seeds: `--train-seeds`).",
        f"E: compute energy per sample ({unit}, 45 nm), mean over the same evaluations. ΔE: energy saved "
        "(positive = less) against the same model unmasked at the same T, and against it at its largest T "
        "(the papers' reference); the two are never mixed. – : not applicable; n/a: the reference run is missing.",
    ]
    if len(refs) > 1:
        notes.append("Reference T per model: " + ", ".join(
            sorted({f"{r['model']}: T={r['ref_T']}" for r in rows if r["ref_T"] is not None})) + ".")
    return {"id": "summary", "title": "Accuracy and energy (the papers' Tables 1-2 form)", "headers": headers,
            "rows": out, "notes": notes}


def runs_table(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for r in runs:
        rows.append([(r["run_id"], r["run_id"]), (r["status"], r["status"]), (r["model"] or "–", r["model"] or ""),
                     _num(r["T"], "g"), _num(None if r["mask_ratio"] is None else 100 * r["mask_ratio"], "g"),
                     _num(r["train_seed"], "g"),
                     _num(r["wall_s"], ".0f"), ((r["error"] or "")[:200], r["error"] or "")])
    return {"id": "runs", "title": "Runs", "headers": ["run", "status", "model", "T", "M (%)", "train seed",
                                                       "wall (s)", "error"], "rows": rows, "notes": []}


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def numeric_columns(table: dict[str, Any]) -> list[bool]:
    """Whether each column holds numbers only (right-aligned)."""
    values = [[row[i][1] for row in table["rows"]] for i in range(len(table["headers"]))]
    return [any(isinstance(v, (int, float)) for v in col) and all(isinstance(v, (int, float)) or v == "" for v in col)
            for col in values]


def markdown_table(table: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in table["headers"]) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric_columns(table)) + "|"]
    lines += ["| " + " | ".join(_md_cell(text) for text, _ in row) + " |" for row in table["rows"]]
    return "\n".join(lines)


def render_markdown(info: dict[str, Any], tables: list[dict[str, Any]], sections: list[dict[str, str]],
                    missing: dict[str, str]) -> str:
    c = info["counts"]
    out = [f"# {info['title']}", "",
           f"Database `{info['db']}`: {c['done']} finished runs ({c['running']} running or interrupted, "
           f"{c['failed']} failed), {c['evaluations']} evaluations. Generated {info['generated']}.", ""]

    def table_lines(table: dict[str, Any]) -> list[str]:
        notes = [f"- {n}" for n in table["notes"]]
        return [f"## {table['title']}", "", markdown_table(table), ""] + notes + ([""] if notes else [])

    out += table_lines(tables[0]) + ["## Figures", ""]
    for s in sections:
        out += [f"### {s['title']}", "", f"![{s['title']}]({s['file']})", "", s["caption"], ""]
    if missing:
        out += ["## Figures left out", ""]
        out += [f"- {FIGURES[k.partition(':')[0]][1]}: no data in the database; {why}." for k, why in missing.items()]
        out.append("")
    for table in tables[1:]:  # the list of runs, last: it can be long
        out += table_lines(table)
    return "\n".join(out)
