"""The report's figures (matplotlib's object API, no pyplot: no global backend or state is touched).

Each function draws one PNG from plain data (rows of the results database, probe arrays) and returns its path.
Every figure is checked before it is saved: a title, and labels on both axes of every panel that shows data.
"""

from __future__ import annotations

import math
import re
import statistics
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from ..io import atomic_path

__all__ = ["accuracy_vs_energy", "energy_by_group", "energy_groups", "inference_masking", "blocks_masking",
           "spike_maps", "synaptic_inputs", "firing_rates", "coarse_group", "pareto_front", "slug", "GROUPS"]

GROUPS = ("first layer", "tokenizer", "attention", "MLP", "head", "pooling", "other")
_POOL_OPS = ("maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d", "meanpool")
_TOKENIZER = ("sps", "tokenizer", "patch_embed", "stem", "adapter")
_DPI = 110


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "model"


def coarse_group(grp: str | None, op: str | None) -> str:
    """The energy counter's layer group (``report.group_of``: ``blocks.attn.q``, ``sps.stages.conv``, ``head``,
    ``first layer``, ...) reduced to the bars of the figure."""
    grp = grp or ""
    parts = grp.split(".")
    if grp == "first layer":
        return "first layer"
    if (op or "") in _POOL_OPS:
        return "pooling"
    if "attn" in parts or "attention" in parts:
        return "attention"
    if "mlp" in parts:
        return "MLP"
    if parts[0] in _TOKENIZER:
        return "tokenizer"
    if parts[0] in ("head", "classifier", "fc", "norm"):
        return "head"
    return "other"


def energy_groups(per_eval: list[list[dict[str, Any]]]) -> dict[str, float]:
    """Mean over evaluations of the energy (mJ per sample) in each coarse group."""
    sums: dict[str, float] = defaultdict(float)
    for layers in per_eval:
        for row in layers:
            sums[coarse_group(row["grp"], row["op"])] += (row["energy_pj"] or 0.0) / 1e9
    n = max(len(per_eval), 1)
    return {g: sums[g] / n for g in GROUPS if g in sums}


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (energy, accuracy) no other point beats on both (less or equal energy, more or
    equal accuracy, one strictly), sorted by energy."""
    front = []
    for i, (e, a) in enumerate(points):
        if not any((e2 <= e and a2 >= a) and (e2 < e or a2 > a) for j, (e2, a2) in enumerate(points) if j != i):
            front.append(i)
    return sorted(front, key=lambda i: points[i])


def _text(fig: Figure, attr: str) -> str:
    """The figure-level title or axis label (``Figure.get_suptitle`` and friends exist from matplotlib 3.8 on)."""
    artist = getattr(fig, attr, None)
    return artist.get_text() if artist is not None else ""


def _save(fig: Figure, path: Path) -> Path:
    """Check the figure is complete (title; labelled axes on every panel with data), then write it atomically."""
    title = _text(fig, "_suptitle")
    panels = [ax for ax in fig.axes if ax.has_data() and ax.get_label() != "<colorbar>"]
    if not panels:
        raise ValueError(f"{path.name}: the figure has no data")
    for ax in panels:
        if not (title or ax.get_title()):
            raise ValueError(f"{path.name}: a panel has no title")
        sup_x, sup_y = _text(fig, "_supxlabel"), _text(fig, "_supylabel")
        if not ((ax.get_xlabel() or sup_x) and (ax.get_ylabel() or sup_y)):
            raise ValueError(f"{path.name}: panel {ax.get_title()!r} has an unlabelled axis")
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    return path


def _colours(keys: list[Any]) -> dict[Any, Any]:
    cmap = colormaps["tab10"]
    return {k: cmap(i % 10) for i, k in enumerate(keys)}


def _panel_name(model: str, data: str) -> str:
    return f"{model} on {data}" if data else model


def accuracy_vs_energy(rows: list[dict[str, Any]], inference: list[dict[str, Any]], scale: float, unit: str,
                       path: Path) -> Path:
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    models = list(dict.fromkeys((r["model"], r["data"]) for r in rows + inference))
    colours = _colours(models)
    Ts = sorted({r["T"] for r in rows + inference if r["T"] is not None})
    markers = dict(zip(Ts, "osDvP*XhP<>" * 3))
    seen = set()
    for r in rows:
        key = (r["model"], r["data"])
        label = f"{_panel_name(*key)}, T={r['T']}"
        ax.errorbar(r["energy_mj"] * scale, r["acc"], xerr=r["energy_mj_std"] * scale, yerr=r["acc_std"],
                    marker=markers.get(r["T"], "o"), color=colours[key], linestyle="none", capsize=2, markersize=7,
                    label=None if label in seen else label)
        seen.add(label)
        ax.annotate(f"M={100 * r['mask_ratio']:g}%", (r["energy_mj"] * scale, r["acc"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=7)
    for i, r in enumerate(inference):
        ax.errorbar(r["energy_mj"] * scale, r["acc"], yerr=r["acc_std"], marker="^", markerfacecolor="none",
                    color=colours[r["model"], r["data"]], linestyle="none", capsize=2, markersize=6,
                    label="RSM at inference only" if i == 0 else None)
    pts = [(r["energy_mj"] * scale, r["acc"]) for r in rows + inference]
    front = pareto_front(pts)
    if front:
        xs, ys = zip(*(pts[i] for i in front))
        ax.step(xs, ys, where="post", color="black", linestyle="--", linewidth=1, label="Pareto front")
        ax.scatter(xs, ys, s=160, facecolors="none", edgecolors="black", linewidths=1)
    ax.set_xlabel(f"compute energy per sample ({unit}, 45 nm estimate)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy against energy (M: trained masking ratio)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _save(fig, path)


def energy_by_group(grouped: list[tuple[dict[str, Any], dict[str, float]]], scale: float, unit: str,
                    path: Path) -> Path:
    fig = Figure(figsize=(max(6.0, 0.6 * len(grouped) + 3), 5))
    ax = fig.subplots()
    names = [g for g in GROUPS if any(g in groups for _, groups in grouped)]
    colours = dict(zip(GROUPS, colormaps["Set2"].colors))
    x = np.arange(len(grouped))
    bottom = np.zeros(len(grouped))
    for g in names:
        vals = np.array([groups.get(g, 0.0) * scale for _, groups in grouped])
        ax.bar(x, vals, bottom=bottom, color=colours[g], label=g, edgecolor="white", linewidth=0.5)
        bottom += vals
    ax.set_xticks(x, [_bar_label(r) for r, _ in grouped], rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("trained model (T: time steps, M: masking ratio)")
    ax.set_ylabel(f"compute energy per sample ({unit})")
    ax.set_title("Where the energy goes: energy by layer group")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return _save(fig, path)


def _bar_label(r: dict[str, Any]) -> str:
    data = f" ({r['data']})" if r["data"] else ""
    return f"{r['model']}{data}\nT={r['T']} M={100 * r['mask_ratio']:g}%"


def _curve_panels(curves: dict[tuple, dict], path: Path, *, xlabel: str, title: str, line_label, x_scale: float,
                  integer_x: bool = False) -> Path:
    panels = list(curves)
    cols = min(len(panels), 2)
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(6.5 * cols, 4.2 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, panel in zip(axes, panels):
        lines = curves[panel]
        for line, c in sorted(lines.items(), key=lambda kv: str(kv[0])):
            ax.errorbar([x * x_scale for x in c["x"]], c["acc"], yerr=c["std"], marker="o", capsize=3,
                        label=line_label(line))
        ax.set_title(_panel_name(*panel), fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        if integer_x:
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    # one panel is 6.5 inches wide: wrap the title so that it never runs off the figure
    fig.suptitle(textwrap.fill(title, width=int(70 * cols)), fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def inference_masking(curves: dict[tuple, dict], path: Path) -> Path:
    return _curve_panels(curves, path, xlabel="masking ratio τ at inference (%)", x_scale=100.0,
                         title="Accuracy with Random Spike Masking at inference only, per masked module "
                               "(MST Fig. 5 form; ± std over seeds)",
                         line_label=lambda line: f"{line[1]} masked, T={line[0]}")


def blocks_masking(curves: dict[tuple, dict], path: Path) -> Path:
    return _curve_panels(curves, path, xlabel="masked blocks k (the first k; 0 = unmasked)", x_scale=1.0,
                         integer_x=True, title="Accuracy when masking the first k blocks (MST Fig. 6 form; ± std "
                                               "over seeds)",
                         line_label=lambda line: f"T={line[0]}, τ={100 * line[1]:g} %")


def _run_label(run: dict[str, Any]) -> str:
    return (f"run {run['run_id']}: {run['model']}, T={run['T']}, trained M={100 * (run['mask_ratio'] or 0):g}%, "
            f"seed {run['train_seed']}")


def _mosaic(maps: np.ndarray, steps: list[int]) -> np.ndarray:
    """``[R, T, H, W]`` -> one ``[R (H + 1) - 1, S (W + 1) - 1]`` image: ratios down, steps across, NaN gaps."""
    R, _, H, W = maps.shape
    out = np.full((R * (H + 1) - 1, len(steps) * (W + 1) - 1), np.nan)
    for r in range(R):
        for c, t in enumerate(steps):
            out[r * (H + 1):r * (H + 1) + H, c * (W + 1):c * (W + 1) + W] = maps[r, t]
    return out


def spike_maps(run: dict[str, Any], arrays: dict[str, np.ndarray], path: Path, max_steps: int = 8) -> Path:
    """One panel per layer: a tile per ratio (rows) and time step (columns, at most ``max_steps``, evenly spread)."""
    ratios = [float(r) for r in arrays["ratios"]]
    layers = [str(n) for n in arrays["map_layers"]]
    sources = [str(n) for n in arrays["map_sources"]]
    T = int(arrays["map_0"].shape[1]) if layers else 0
    steps = sorted({int(round(v)) for v in np.linspace(0, T - 1, min(T, max_steps))}) if T else []
    cmap = colormaps["inferno"].with_extremes(bad="white")
    # size the figure to the tiles (equal aspect): panel height per ratio row, width from the widest mosaic
    panel_h = 0.8 * len(ratios) + 0.3
    aspect = max((len(steps) * (arrays[f"map_{i}"].shape[3] + 1)) / (len(ratios) * (arrays[f"map_{i}"].shape[2] + 1))
                 for i in range(len(layers)))
    height = (panel_h + 0.75) * len(layers) + 0.9
    fig = Figure(figsize=(min(max(panel_h * aspect + 2.6, 5.5), 16), height))
    fig.subplots_adjust(left=0.16, right=0.9, top=1 - 0.8 / height, bottom=0.45 / height, hspace=0.75 / panel_h)
    axes = np.atleast_1d(fig.subplots(len(layers), 1, squeeze=False)).ravel()
    for li, (ax, layer) in enumerate(zip(axes, layers)):
        maps = arrays[f"map_{li}"]  # [R, T, H, W]
        H, W = maps.shape[2:]
        im = ax.imshow(_mosaic(maps, steps), cmap=cmap, vmin=0, vmax=max(int(maps.max()), 1),
                       interpolation="nearest")
        ax.set_xticks([c * (W + 1) + (W - 1) / 2 for c in range(len(steps))], [str(t + 1) for t in steps],
                      fontsize=7)
        ax.set_yticks([r * (H + 1) + (H - 1) / 2 for r in range(len(ratios))], [f"{100 * r:g}" for r in ratios],
                      fontsize=7)
        ax.set_xlabel(f"time step t (step; each tile: the {H} x {W} token / pixel grid)", fontsize=8)
        ax.set_ylabel("masking ratio τ (%)", fontsize=8)
        drawn = "" if sources[li] == layer else f", after {sources[li].rsplit('.', 1)[-1]}"
        ax.set_title(f"{layer}{drawn}", fontsize=8)
        cbar = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
        cbar.set_label(f"spiking channels (of {int(arrays['map_channels'][li])})", fontsize=7)
        cbar.ax.tick_params(labelsize=6)
    fig.suptitle(f"Spike activation maps per time step (MST Fig. 7 form), default sites masked at τ\n"
                 f"{_run_label(run)}", fontsize=9)
    return _save(fig, path)


def _short(name: str, width: int = 22) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]


def _probe_panels(probes: dict[tuple, tuple[dict[str, Any], dict]], heights: list[int]) -> tuple[Figure, list]:
    n = len(probes)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    height = max(3.5, 0.17 * max(heights) + 1.8)
    fig = Figure(figsize=(7.0 * cols, height * rows))
    axes = list(np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def synaptic_inputs(probes: dict[tuple, tuple[dict[str, Any], dict]], path: Path) -> Path:
    fig, axes = _probe_panels(probes, [len(a["hist_layers"]) for _, a in probes.values()])
    for ax, ((model, data), (run, a)) in zip(axes, probes.items()):
        counts = a["hist_counts"].astype(float)  # [S, K + 2]
        bins = [str(b).replace(">=", "≥") for b in a["hist_bins"]]
        bins[-1] = "n.i."
        # integer bins up to the largest value seen (at least 0-3), then ≥K and non-integer
        used = np.flatnonzero(counts[:, :-2].sum(0))
        keep = list(range(max(int(used.max()) + 1 if used.size else 0, min(4, len(bins) - 2)))) + [len(bins) - 2,
                                                                                                   len(bins) - 1]
        counts, bins = counts[:, keep], [bins[i] for i in keep]
        shown = np.full(counts.shape, np.nan)  # a count of zero is blank, not the colour of one
        np.log10(counts, out=shown, where=counts > 0)
        im = ax.imshow(shown, aspect="auto", cmap=colormaps["viridis"].with_extremes(bad="white"),
                       interpolation="nearest", vmin=0, vmax=max(float(np.nanmax(shown)) if counts.any() else 1, 1))
        total = counts.sum(1)
        nonzero = 1 - counts[:, 0] / np.where(total > 0, total, 1)
        layers = [f"{_short(str(n), 26)} ({100 * z:.0f}% ≠0)" for n, z in zip(a["hist_layers"], nonzero)]
        ax.set_yticks(range(len(layers)), layers, fontsize=6)
        ax.set_xticks(range(len(bins)), bins, fontsize=6, rotation=90)
        ax.set_xlabel("input value (spike count; ≥K: larger integers; n.i.: non-integer or negative)")
        ax.set_ylabel("synaptic layer (conv / linear, call order)")
        ax.set_title(f"{_panel_name(model, data)}: {run['run_id']}, T={run['T']}", fontsize=9)
        cbar = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
        cbar.set_label("log10(number of input values)", fontsize=7)
    fig.suptitle("Values entering each synaptic layer: spikes (0/1) or integers and reals (004 appendix E form)",
                 fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def firing_rates(probes: dict[tuple, tuple[dict[str, Any], dict]], path: Path) -> Path:
    fig, axes = _probe_panels(probes, [len(a["rate_layers"]) for _, a in probes.values()])
    vmax = max(float(a["firing_rate"].max()) for _, a in probes.values()) or 1.0
    for ax, ((model, data), (run, a)) in zip(axes, probes.items()):
        rates = a["firing_rate"]  # [L, T]
        im = ax.imshow(rates, aspect="auto", cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        T = rates.shape[1]
        ax.set_xticks(range(T), [str(t + 1) for t in range(T)], fontsize=7)
        ax.set_yticks(range(len(a["rate_layers"])), [_short(str(n), 30) for n in a["rate_layers"]], fontsize=6)
        ax.set_xlabel("time step t (step)")
        ax.set_ylabel("neuron layer (call order)")
        mean = statistics.fmean(float(v) for v in rates.ravel()) if rates.size else 0.0
        ax.set_title(f"{_panel_name(model, data)}: {run['run_id']}, T={run['T']} (mean {mean:.3f})", fontsize=9)
        cbar = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
        cbar.set_label("firing rate (spikes per neuron per step)", fontsize=7)
    fig.suptitle("Firing rate per neuron layer and time step (one test batch, the run's own masks)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
