"""Training: run configs, the fit loop, evaluation under masks, checkpoints."""

from .checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from .config import DataConfig, OptimConfig, RunConfig, ScheduleConfig, TrainConfig, list_presets, load_run_config
from .evaluate import evaluate
from .loop import FitResult, NonFiniteLossError, build_model_for, fit
from .rundir import RunExistsError

__all__ = [
    "CheckpointError",
    "DataConfig",
    "FitResult",
    "NonFiniteLossError",
    "OptimConfig",
    "RunConfig",
    "RunExistsError",
    "ScheduleConfig",
    "TrainConfig",
    "build_model_for",
    "evaluate",
    "fit",
    "list_presets",
    "load_checkpoint",
    "load_model",
    "load_run_config",
    "save_checkpoint",
]
