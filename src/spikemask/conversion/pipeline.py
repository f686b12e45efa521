"""``spikemask convert``: a QCFS ANN checkpoint -> its SNN, the accuracy-vs-T curve, the energy, the files.

The library call behind the command (usable on its own): convert, evaluate the SNN at every step 1..T and
the ANN on the same test data (mean ± std over mask seeds), measure the SNN's energy at T on a sample of
test inputs, and write ``accuracy_vs_T.csv``, ``accuracy_vs_T.png``, ``conversion.json`` and the converted
checkpoint ``snn.pt`` (which ``spikemask eval`` / ``energy`` read like any other).
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

from ..config import from_dict
from ..io import atomic_write_json, atomic_write_text
from ..masking import apply_rsm
from ..progress import ProgressFactory, null_progress
from .convert import ConversionError, ConvertibleMixin, convert
from .evaluate import accuracy_per_step

__all__ = ["run_conversion", "curve_csv"]

log = logging.getLogger(__name__)


def _override_masks(model, ratio: float) -> None:
    apply_rsm(model, ratio=ratio, sites=sorted(model.config.mask.named_sites()) or None, site_ratios={})


def run_conversion(
    checkpoint: str | Path,
    *,
    T: int,
    mask_ratio: float | None = None,
    seeds: int = 3,
    data: str | None = None,
    root: str | None = None,
    batch_size: int = 64,
    samples: int | None = None,
    energy_samples: int = 32,
    out_dir: str | Path | None = None,
    progress: ProgressFactory = null_progress,
) -> dict[str, Any]:
    """Convert the QCFS ANN in ``checkpoint`` to an SNN of ``T`` steps, evaluate both, measure, and save.

    ``mask_ratio`` overrides the masks stored in the checkpoint (on their sites, or the model's default
    sites) for both networks; ``samples`` evaluates a seeded random sample of the test split instead of all
    of it; ``out_dir`` defaults to ``<checkpoint's folder>/conversion_T<T>``.
    """
    from ..energy import EnergyConfig, measure_energy
    from ..plot import plot_accuracy_vs_T
    from ..train import load_model, save_checkpoint
    from ..train.augment import batch_transform
    from ..train.data import checkpoint_data_config, test_loader

    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive integer (time steps), got {T!r}")
    checkpoint = Path(checkpoint)
    ann, state = load_model(checkpoint)
    if not isinstance(ann, ConvertibleMixin):
        raise ConversionError(f"{str(checkpoint)!r} holds a {ann.family} model, which is trained directly as an SNN: "
                              "convert trains QCFS ANNs (families swin_bn, resnet, vgg)")
    if ann.config.converted:
        raise ConversionError(f"{str(checkpoint)!r} is already a converted SNN: give its ANN checkpoint")
    if mask_ratio is not None:
        _override_masks(ann, mask_ratio)
    snn = convert(ann, T)
    data_cfg = checkpoint_data_config(state, data, root)
    transform = batch_transform(data_cfg.eval_transform)
    loader = test_loader(data_cfg, 1, batch_size, samples)
    mask_seeds = list(range(seeds))
    curve = accuracy_per_step(snn, loader, T=T, ann=ann, mask_seeds=mask_seeds, transform=transform,
                              progress=progress)
    energy_loader = test_loader(data_cfg, 1, min(batch_size, energy_samples), energy_samples, seed=1)
    batches = [(transform(x, None), y) for x, y in energy_loader]
    cfg = (state.get("run_config") or {}).get("energy")
    energy_cfg = from_dict(EnergyConfig, cfg, where="energy") if cfg else EnergyConfig()
    energy = measure_energy(snn, batches, config=energy_cfg, mask_seeds=mask_seeds[:max(1, min(seeds, 3))])
    out = Path(out_dir) if out_dir is not None else checkpoint.parent / f"conversion_T{T}"
    out.mkdir(parents=True, exist_ok=True)
    snn_path = save_checkpoint(out / "snn.pt", snn, converted_from=str(checkpoint),
                               conversion=snn.conversion_report.as_dict(), run_config=state.get("run_config"))
    result = {
        "checkpoint": str(checkpoint), "model": ann.variant, "T": T, "data": data_cfg.name,
        "mask": snn.config.mask.describe(), "accuracy": curve, "energy": energy,
        "conversion": snn.conversion_report.as_dict(),
        "outputs": {"csv": str(out / "accuracy_vs_T.csv"), "plot": str(out / "accuracy_vs_T.png"),
                    "json": str(out / "conversion.json"), "snn": str(snn_path)},
    }
    atomic_write_text(out / "accuracy_vs_T.csv", curve_csv(curve))
    plot_accuracy_vs_T({f"SNN ({result['mask']})": curve}, out / "accuracy_vs_T.png",
                       ann_lines={"QCFS ANN": curve["ann_acc"]}, title=f"{ann.variant} converted: accuracy against T")
    atomic_write_json(out / "conversion.json", result)
    log.info("converted %s to T=%d: SNN %.2f %% at T, ANN %.2f %%", ann.variant, T, curve["acc"][-1],
             curve["ann_acc"])
    return result


def curve_csv(curve: dict[str, Any]) -> str:
    """``t, acc, acc_std, ann_acc``: one row per step."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["t", "acc", "acc_std", "ann_acc"])
    for t, (a, s) in enumerate(zip(curve["acc"], curve["acc_std"]), start=1):
        writer.writerow([t, f"{a:.4f}", f"{s:.4f}", "" if curve["ann_acc"] is None else f"{curve['ann_acc']:.4f}"])
    return buf.getvalue()
