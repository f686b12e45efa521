"""Accuracy against energy, one point per run (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_accuracy_vs_energy"]



def _marker(kind: str) -> str:
    """Unmasked o, trained masked s, masked at inference only ^ (whatever the architecture)."""
    return "s" if kind.startswith("Masked ") else "^" if kind.endswith("+ RSM at inference") else "o"


def plot_accuracy_vs_energy(rows: list[dict[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """Scatter of accuracy (%) vs compute energy (mJ/sample) with ±1 std bars; colour = (model, T), marker = kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_path

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
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
