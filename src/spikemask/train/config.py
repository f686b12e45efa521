"""The run config: everything a training run depends on, written next to the run and into every checkpoint.

A run is reproduced from its ``config.yaml`` alone: ``spikemask train --config runs/x/config.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ..config import ConfigError, apply_overrides, bounded, check_bounds, from_dict, load_yaml, to_dict
from ..data.event_dataset import MAX_SIDE
from ..energy import EnergyConfig

__all__ = [
    "DataConfig",
    "OptimConfig",
    "ScheduleConfig",
    "DistillConfig",
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
    size: tuple[int, int] | None = bounded(None, ge=1, le=MAX_SIDE)
    augment: str = "none"
    eval_transform: str = "none"
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = bounded(16, ge=1)
    eval_batch_size: int | None = bounded(None, ge=1)
    num_workers: int = bounded(0, ge=0)
    translate: int = bounded(0, ge=0)

    def __post_init__(self) -> None:
        check_bounds(self, "data")

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

    lr: float = bounded(1e-3, gt=0)
    weight_decay: float = bounded(0.06, ge=0)
    betas: tuple[float, float] = bounded((0.9, 0.999), ge=0, lt=1)
    eps: float = bounded(1e-8, gt=0)

    def __post_init__(self) -> None:
        check_bounds(self, "optim")


@dataclass(kw_only=True)
class ScheduleConfig:
    """Cosine schedule with linear warm-up (timm's, stepped every epoch).

    epochs: cosine epochs; cooldown_epochs: extra epochs at min_lr afterwards.
    warmup_epochs: linear ramp from warmup_lr to the peak lr.
    """

    epochs: int = bounded(96, ge=1)
    warmup_epochs: int = bounded(10, ge=0)
    warmup_lr: float = bounded(1e-5, ge=0)
    min_lr: float = bounded(1e-5, ge=0)
    cooldown_epochs: int = bounded(10, ge=0)

    def __post_init__(self) -> None:
        check_bounds(self, "schedule")

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.cooldown_epochs


@dataclass(kw_only=True)
class DistillConfig:
    """Knowledge distillation from a teacher (MST: the unmasked model teaches its masked student).

    teacher: checkpoint of the teacher (None: no distillation). Any family; same classes as the student.
    temperature: softens both distributions (Hinton et al.); the KL term is scaled by its square.
    alpha: weight of the KL term; the usual cross-entropy against the (smoothed, mixed) labels gets 1 - alpha.
    teacher_masks: ``off`` (the teacher runs unmasked, as MST's teacher) or ``as_saved`` (its own masks).
    """

    teacher: str | None = None
    temperature: float = bounded(4.0, gt=0)
    alpha: float = bounded(0.5, ge=0, le=1)
    teacher_masks: Literal["off", "as_saved"] = "off"


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
    init_from: start from the weights of this checkpoint (fine-tuning; its architecture must match, its
        masks need not: MST fine-tunes a masked student from the unmasked model).
    distill: knowledge distillation from a teacher checkpoint (off unless ``distill.teacher`` is set).
    compile: ``torch.compile`` the model for the training steps with this backend (``off``: eager, the default;
        ``inductor``: generated kernels; ``aot_eager`` / ``eager``: tracing only, for debugging). Same numbers
        (to float rounding with ``inductor``). The first step compiles: minutes on a CPU; inductor caches the
        kernels (``$TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_$USER``) for the next runs. Measured
        on the 2-core CPU: 5 min cold compile and no faster than eager (docs/engine.md): meant for GPUs.
    """

    label_smoothing: float = bounded(0.1, ge=0, lt=1)
    mixup_alpha: float = bounded(0.5, ge=0)
    cutmix_alpha: float = bounded(0.0, ge=0)
    mixup_prob: float = bounded(0.5, ge=0, le=1)
    mixup_off_epoch: int | None = bounded(75, ge=0)
    grad_clip: float | None = bounded(None, gt=0)
    amp: bool = False
    eval_every: int = bounded(1, ge=1)
    eval_mask_seeds: int = bounded(3, ge=1)
    max_train_batches: int | None = bounded(None, ge=1)
    max_eval_batches: int | None = bounded(None, ge=1)
    init_from: str | None = None
    distill: DistillConfig = field(default_factory=DistillConfig)
    compile: Literal["off", "inductor", "aot_eager", "eager"] = "off"

    def __post_init__(self) -> None:
        check_bounds(self, "train")
        if self.compile not in ("off", "inductor", "aot_eager", "eager"):
            raise ConfigError(f"train.compile must be one of off, inductor, aot_eager, eager; got {self.compile!r}")
        check_bounds(self.distill, "train.distill")


@dataclass(kw_only=True)
class RunConfig:
    """One training run.

    name: run directory name under ``out_dir``.
    seed: seeds every random source (weights, data order, augmentation, mixup, masks); 0 <= seed < 2**32.
    device: ``auto`` (CUDA if available), ``cpu``, ``cuda``, ``cuda:1``...
    model: ``name`` of a registered model plus any of its config fields (``T``, ``mask``, ...);
        unset fields take the variant's defaults, ``num_classes`` defaults to the data set's.
    """

    name: str = "run"
    seed: int = bounded(0, ge=0, lt=2**32)
    device: str = "auto"
    out_dir: str = "runs"
    model: dict[str, Any] = field(default_factory=lambda: {"name": "spikformer_2_64_ndigits"})
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)

    def __post_init__(self) -> None:
        check_bounds(self, "")
        if "name" not in self.model:
            raise ConfigError("model.name is required (run `spikemask models` for the registered names)")
        check_device(self.device)
        if not self.name or Path(self.name).name != self.name or self.name in (".", ".."):
            raise ConfigError(f"name must be a plain directory name (it becomes {self.out_dir}/<name>), "
                              f"got {self.name!r}")

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


def check_device(name: str) -> None:
    """Refuse a device string torch cannot parse (``"gpu"``, ``"cuda:x"``), naming the valid forms."""
    if name == "auto":
        return
    try:
        import torch

        torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device: {name!r} is not a device; use auto, cpu, cuda or cuda:<index>") from None


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
    if "base" in data and ("ratios" in data or data.get("kind") in ("sweep", "conversion")):
        raise ConfigError(f"{str(source)!r} describes a study (a sweep of runs), not one run: "
                          f"run it with `spikemask demo --config {source}`")
    return from_dict(RunConfig, apply_overrides(data, list(overrides)))


def run_config_dict(cfg: RunConfig) -> dict[str, Any]:
    return to_dict(cfg)
