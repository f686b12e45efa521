"""What a data set holds: samples per split and class, and event statistics (``spikemask data info``)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .registry import dataset_info, get_dataset

__all__ = ["describe_dataset"]


def _event_stats(ds: Any, max_samples: int) -> dict[str, Any]:
    """Events per sample, duration, ON fraction and coordinate range over an evenly spaced subset."""
    picks = np.unique(np.linspace(0, len(ds) - 1, num=min(max_samples, len(ds))).astype(int))
    counts, durations, on, xmax, ymax = [], [], 0, 0, 0
    for i in picks:
        ev = ds.read_events(int(i))
        counts.append(ev.size)
        if ev.size:
            durations.append(int(ev["t"][-1] - ev["t"][0]))
            on += int(ev["p"].sum())
            xmax, ymax = max(xmax, int(ev["x"].max())), max(ymax, int(ev["y"].max()))
    total = sum(counts)
    return {
        "samples_read": len(picks),
        "events_mean": float(np.mean(counts)),
        "events_min": int(np.min(counts)),
        "events_max": int(np.max(counts)),
        "duration_ms_mean": float(np.mean(durations)) / 1e3 if durations else 0.0,
        "on_fraction": on / total if total else 0.0,
        "x_max": xmax,
        "y_max": ymax,
    }


def describe_dataset(name: str, root: str | os.PathLike | None = None, *, splits: tuple[str, ...] = ("train", "test"),
                     max_samples: int = 64) -> dict[str, Any]:
    """Counts per split and class, and (event sets) statistics of ``max_samples`` samples per split.

    Reads no more than that: the frame caches are not built.
    """
    info = dataset_info(name)
    out: dict[str, Any] = {"name": name, "kind": info.kind, "num_classes": info.num_classes,
                           "sensor_size": list(info.sensor_size), "summary": info.summary, "splits": {}}
    for split in splits:
        ds = get_dataset(name, split=split, T=1, root=root, prepare=False)
        labels = np.asarray(ds.labels)
        names = info.class_names or tuple(getattr(ds, "classes", ())) or tuple(str(c) for c in range(info.num_classes))
        entry: dict[str, Any] = {
            "samples": int(labels.size),
            "per_class": {names[c] if c < len(names) else str(c): int(n)
                          for c, n in enumerate(np.bincount(labels, minlength=info.num_classes))},
        }
        if hasattr(ds, "read_events") and labels.size:
            entry["events"] = _event_stats(ds, max_samples)
        out["splits"][split] = entry
    return out
