"""Plain-text tables for the terminal (no box drawing: they paste cleanly into logs and issues)."""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["format_table", "fmt_pm", "fmt_num"]


def fmt_num(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    if x != x:  # NaN
        return "n/a"
    ax = abs(x)
    if ax >= 1e9:
        return f"{x / 1e9:.{digits}g}G"
    if ax >= 1e6:
        return f"{x / 1e6:.{digits}g}M"
    if ax >= 1e4:
        return f"{x / 1e3:.{digits}g}k"
    return f"{x:.{digits}g}"


def fmt_pm(mean: float, std: float, decimals: int = 2, *, always: bool = False) -> str:
    """``mean ± std``; without ``always``, a zero std (a single, deterministic pass) prints the mean alone."""
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}" if std or always else f"{mean:.{decimals}f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None,
                 align: str | None = None) -> str:
    """``align``: one of ``l``/``r`` per column (default: first column left, the rest right)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)).rstrip()

    out = [title] if title else []
    out += [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)
