"""The run config: everything a training run depends on, written next to the run and into every checkpoint.

A run is reproduced from its ``config.yaml`` alone: ``spikemask train --config runs/x/config.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ..config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from ..energy import EnergyConfig

__all__ = [
    "DataConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "RunConfig",
    "load_run_config",
    "preset_path",
    "list_presets",
]


@dataclass(kw_only=True)
class DataConfig:
    """Which data set and how it is framed and batched.

    name: registered data set (``spikemask data list``; ``ndigits`` is bundled).
    root: the data set's folder; None uses ``$SPIKEMASK_DATA/<name>`` (``$SPIKEMASK_DATA`` defaults to
        ``~/.cache/spikemask``).
    split_by: slice the event stream into T frames of equal event ``number`` or equal ``time``.
    binarize: clip per-pixel counts to 0/1 (default: counts, as the papers).
    size: resize event frames to ``[H, W]`` by scaling event coordinates (counts are kept); None: sensor size.
    augment: training batch augmentation (``spikemask.data.augment``: ``none``, ``flip``,
        ``spikformer_event``, ``nda``, ``cifar``, ``imagenet``), the same transform for all T frames.
    eval_transform: applied to evaluation batches (image sets: ``cifar_eval`` / ``imagenet_eval``
        normalisation, matching the training policy's).
    options: data-set-specific options (e.g. ``{protocol: tebn}`` for CIFAR10-DVS's other split).
    batch_size / eval_batch_size: per process (None: same as batch_size).
    num_workers: DataLoader worker processes.
    translate: random shift of whole clips by up to this many pixels (0: off); same for all T frames.
    """

    name: str = "ndigits"
    root: str | None = None
    split_by: Literal["number", "time"] = "number"
    binarize: bool = False
    size: tuple[int, int] | None = None
    augment: str = "none"
    eval_transform: str = "none"
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 16
    eval_batch_size: int | None = None
    num_workers: int = 0
    translate: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {self.batch_size}")
        if self.size is not None and min(self.size) < 1:
            raise ValueError(f"data.size must be two positive integers [H, W], got {list(self.size)}")

    def dataset_options(self) -> dict[str, Any]:
        """Keyword arguments for ``get_dataset`` besides name, split and T."""
        opts: dict[str, Any] = dict(root=self.root, split_by=self.split_by, binarize=self.binarize, **self.options)
        if self.size is not None:
            opts["size"] = tuple(self.size)
        return opts

    def frame_size(self, sensor_size: tuple[int, int]) -> tuple[int, int]:
        return tuple(self.size) if self.size is not None else tuple(sensor_size)


@dataclass(kw_only=True)
class OptimConfig:
    """AdamW (the Spikformer recipe). lr: peak learning rate after warm-up."""

    lr: float = 1e-3
    weight_decay: float = 0.06
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")


@dataclass(kw_only=True)
class ScheduleConfig:
    """Cosine schedule with linear warm-up (timm's, stepped every epoch).

    epochs: cosine epochs; cooldown_epochs: extra epochs at min_lr afterwards.
    warmup_epochs: linear ramp from warmup_lr to the peak lr.
    """

    epochs: int = 96
    warmup_epochs: int = 10
    warmup_lr: float = 1e-5
    min_lr: float = 1e-5
    cooldown_epochs: int = 10

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.warmup_epochs < 0 or self.cooldown_epochs < 0:
            raise ValueError("schedule.epochs must be >= 1; warmup_epochs and cooldown_epochs >= 0")

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.cooldown_epochs


@dataclass(kw_only=True)
class TrainConfig:
    """Loss, regularisation and bookkeeping.

    label_smoothing: for hard targets (mixup targets are smoothed the same way).
    mixup_alpha / cutmix_alpha: Beta(α, α) mixing (0: off); one of them per mixed batch.
    mixup_prob: probability that a batch is mixed; mixup_off_epoch: no mixing from this epoch on.
    grad_clip: max gradient norm (None: no clipping).
    amp: bfloat16 autocast on CUDA (ignored on CPU).
    eval_every: evaluate every n epochs (and always after the last).
    eval_mask_seeds: mask seeds for the final evaluation (mean ± std of accuracy).
    max_train_batches / max_eval_batches: cut epochs short (smoke tests; None: full).
    """

    label_smoothing: float = 0.1
    mixup_alpha: float = 0.5
    cutmix_alpha: float = 0.0
    mixup_prob: float = 0.5
    mixup_off_epoch: int | None = 75
    grad_clip: float | None = None
    amp: bool = False
    eval_every: int = 1
    eval_mask_seeds: int = 3
    max_train_batches: int | None = None
    max_eval_batches: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"train.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.mixup_prob <= 1.0:
            raise ValueError(f"train.mixup_prob must be in [0, 1], got {self.mixup_prob}")
        if self.eval_mask_seeds < 1 or self.eval_every < 1:
            raise ValueError("train.eval_mask_seeds and train.eval_every must be >= 1")


@dataclass(kw_only=True)
class RunConfig:
    """One training run.

    name: run directory name under ``out_dir``.
    seed: seeds every random source (weights, data order, augmentation, mixup, masks).
    device: ``auto`` (CUDA if available), ``cpu``, ``cuda``, ``cuda:1``...
    model: ``name`` of a registered model plus any of its config fields (``T``, ``mask``, ...);
        unset fields take the variant's defaults, ``num_classes`` defaults to the data set's.
    """

    name: str = "run"
    seed: int = 0
    device: str = "auto"
    out_dir: str = "runs"
    model: dict[str, Any] = field(default_factory=lambda: {"name": "spikformer_2_64_ndigits"})
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)

    def __post_init__(self) -> None:
        if "name" not in self.model:
            raise ConfigError("model.name is required (run `spikemask models` for the registered names)")

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


def list_presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("spikemask.presets").iterdir() if p.name.endswith(".yaml"))


def preset_path(name_or_path: str | Path) -> Path:
    """A YAML path as given, or the packaged preset of that name (``demo_ndigits``)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = resources.files("spikemask.presets") / f"{name_or_path}.yaml"
    if not candidate.is_file():
        raise ConfigError(f"no config file or preset named {str(name_or_path)!r}; presets: {', '.join(list_presets())}")
    return Path(str(candidate))


def load_run_config(source: str | Path | dict[str, Any] | None = None, overrides: list[str] = ()) -> RunConfig:
    """RunConfig from a YAML file / preset name / dict, with ``key=value`` overrides applied."""
    data = load_yaml(preset_path(source)) if isinstance(source, (str, Path)) else dict(source or {})
    if "base" in data and "ratios" in data:
        raise ConfigError(f"{str(source)!r} describes a study (a τ x T sweep), not one run: "
                          f"run it with `spikemask demo --config {source}`")
    return from_dict(RunConfig, apply_overrides(data, list(overrides)))


def run_config_dict(cfg: RunConfig) -> dict[str, Any]:
    return to_dict(cfg)
