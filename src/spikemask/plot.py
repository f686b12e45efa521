"""The figures of studies and conversions (matplotlib, headless), and the one way they are saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_accuracy_vs_energy", "plot_accuracy_vs_T", "plot_accuracy_vs_ratio", "save_figure"]


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, write ``fig`` to ``path`` as PNG atomically, and free it (pyplot keeps figures otherwise)."""
    import matplotlib.pyplot as plt

    from .io import atomic_path

    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _marker(kind: str) -> str:
    """Unmasked o, trained masked s, masked at inference only ^ (whatever the architecture)."""
    return "s" if kind.startswith("Masked ") else "^" if kind.endswith("+ RSM at inference") else "o"


def plot_accuracy_vs_energy(rows: list[dict[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """Scatter of accuracy (%) vs compute energy (mJ/sample) with ±1 std bars; colour = (model, T), marker = kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # µJ when the energies are small (the bundled data), mJ otherwise (the papers' unit)
    scale, unit = (1e3, "µJ") if max(r["energy_mj"] for r in rows) < 0.1 else (1.0, "mJ")
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    groups = sorted({(r.get("variant", ""), r["T"]) for r in rows})
    colours = {g: plt.cm.viridis(i / max(len(groups) - 1, 1) * 0.85) for i, g in enumerate(groups)}
    seen = set()
    for r in rows:
        label = f"{r['model']}, T={r['T']}"
        ax.errorbar(r["energy_mj"] * scale, r["acc"], xerr=r["energy_mj_std"] * scale, yerr=r["acc_std"],
                    marker=_marker(r["model"]), color=colours[r.get("variant", ""), r["T"]], linestyle="none",
                    capsize=2,
                    markersize=7, label=None if label in seen else label)
        seen.add(label)
        ax.annotate(f"τ={r['mask_ratio']:g}", (r["energy_mj"] * scale, r["acc"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=7)
    ax.set_xlabel(f"compute energy per sample ({unit}, 45 nm estimate)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "Random Spike Masking: accuracy vs energy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, path)


def plot_accuracy_vs_T(curves: dict[str, dict[str, Any]], path: str | Path, *,
                       ann_lines: dict[str, float | None] | None = None, title: str | None = None) -> Path:
    """Accuracy (%) against time steps, one line (± std band over mask seeds) per curve; each ANN's
    accuracy (``ann_lines``: label -> %) a dashed line in the colour of the curve at the same position."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    colours = []
    for label, curve in curves.items():
        acc = curve["acc"]
        t = list(range(1, len(acc) + 1))
        line, = ax.plot(t, acc, label=label)
        colours.append(line.get_color())
        if any(curve.get("acc_std", [])):
            lo = [a - s for a, s in zip(acc, curve["acc_std"])]
            hi = [a + s for a, s in zip(acc, curve["acc_std"])]
            ax.fill_between(t, lo, hi, color=line.get_color(), alpha=0.2)
    for i, (label, acc) in enumerate((ann_lines or {}).items()):
        if acc is not None:
            colour = colours[i] if i < len(colours) else "black"
            ax.axhline(acc, color=colour, linestyle="--", linewidth=1, label=f"{label} ({acc:.2f} %)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time steps T")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "Converted SNN: accuracy against T")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def plot_accuracy_vs_ratio(models: dict[str, dict[str, Any]], path: str | Path, *, T: int) -> Path:
    """MST's Fig. 5 form: SNN accuracy against the masking ratio, one line (± std over mask seeds) per
    model and group of masked sites; ``models[name]["masking"]`` rows hold group, ratio, acc, acc_std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, res in models.items():
        for group in dict.fromkeys(r["group"] for r in res["masking"]):
            rows = [r for r in res["masking"] if r["group"] == group]
            ax.errorbar([100 * r["ratio"] for r in rows], [r["acc"] for r in rows], yerr=[r["acc_std"] for r in rows],
                        marker="o", capsize=3, label=f"{name}: {group}")
    ax.set_xlabel("masking ratio τ (%)")
    ax.set_ylabel(f"SNN test accuracy at T={T} (%)")
    ax.set_title("Random Spike Masking in converted SNNs (MST Fig. 5 form)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    return save_figure(fig, path)
