"""``fit``: train one run from its config, resumable, reproducible, and safe against NaNs.

Every random source is seeded from ``cfg.seed``: weights and masks from torch's global generator
(its state is checkpointed), data order and augmentation from per-epoch generators derived from
(seed, epoch), so a run resumed from epoch k replays exactly what the uninterrupted run did.
Evaluation uses seeded masks of its own and never touches the training stream.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from ..config import ConfigError, to_dict
from ..data import get_dataset, input_info
from ..data.augment import get_augment
from ..io import append_jsonl, atomic_write_json, atomic_write_text, lock_dir
from ..models import create_model
from ..progress import ProgressFactory, null_progress
from .augment import batch_transform, random_translate
from .checkpoint import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from .config import RunConfig
from .distill import distillation_loss, init_from_checkpoint, load_teacher
from .distributed import DistInfo, init_distributed, resolve_device, shard_indices
from .evaluate import autocast, evaluate, time_first
from .mixup import mix_batch, soft_cross_entropy
from .rundir import RunExistsError, check_resume, claim_run_dir
from .schedule import lr_at, set_lr

__all__ = [
    "fit", "FitResult", "NonFiniteLossError", "RunExistsError", "build_model_for", "resolved_config", "run_state",
    "seed_everything",
]

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss (or the weights) became NaN or infinite; the last good checkpoint was kept."""


def _non_finite(what: str, last_good: Path | None, lr: float) -> NonFiniteLossError:
    kept = f"the last good checkpoint is kept at {last_good}" if last_good else "no checkpoint was written yet"
    return NonFiniteLossError(f"{what}; training stopped and {kept}. "
                              f"Try a lower optim.lr (now {lr:.2e}) or set train.grad_clip.")


@dataclass
class FitResult:
    run_dir: Path
    checkpoint: Path
    best_acc: float
    final: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    is_main: bool = True  # False on the other ranks of a torchrun job (they write nothing)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model_for(cfg: RunConfig) -> nn.Module:
    """The run's model; ``num_classes`` defaults to the data set's, and the input must fit the data."""
    info = input_info(cfg.data.name, cfg.data.options)  # the channels the configured representation yields
    section = dict(cfg.model)
    name = section.pop("name")
    section.setdefault("num_classes", info.num_classes)
    model = create_model(name, **section)
    mc = model.config
    if mc.num_classes != info.num_classes:
        raise ConfigError(f"model.num_classes={mc.num_classes} but {info.name} has {info.num_classes} classes")
    h, w = cfg.data.frame_size(info.sensor_size)
    resized = getattr(get_augment(cfg.data.eval_transform), "output_size", None)  # e.g. MST's CIFAR at 224
    if resized is not None:
        h, w = resized
    if mc.in_channels != info.in_channels or (mc.img_size, mc.img_size) != (h, w):
        raise ConfigError(
            f"{name} takes {mc.in_channels}x{mc.img_size}x{mc.img_size} inputs but {info.name} gives "
            f"{info.in_channels}x{h}x{w}; set data.size (event sets are resized by scaling coordinates), "
            f"model.img_size / model.in_channels, or pick a model made for this data (`spikemask models`)"
        )
    return model


def resolved_config(cfg: RunConfig, model: nn.Module | None = None) -> dict[str, Any]:
    """``cfg`` as a plain dict with the model section expanded to the model's full config."""
    if model is None:
        with torch.device("meta"):  # no weights needed, only the config
            model = build_model_for(cfg)
    resolved = to_dict(cfg)
    resolved["model"] = {"name": cfg.model["name"], **to_dict(model.config)}
    return resolved


def run_state(cfg: RunConfig) -> str:
    """``"done"`` (finished with this exact config), ``"partial"`` (resumable) or ``"new"``."""
    run_dir = cfg.run_dir
    try:
        stored = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return "new"
    if stored != resolved_config(cfg) or not (run_dir / "last.pt").is_file():
        return "new"
    return "done" if (run_dir / "final.json").is_file() else "partial"


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and norm parameters (timm's ``filter_bias_and_bn``)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def eval_subset(n: int, max_batches: int | None, batch_size: int, seed: int) -> list[int] | None:
    """Indices of the test samples an evaluation capped at ``max_batches`` sees: a seeded random draw over
    the whole split (test splits are stored class by class, so the first batches would hold few classes),
    the same at every evaluation of a run; None when the cap covers the whole split."""
    if max_batches is None or max_batches * batch_size >= n:
        return None
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return sorted(perm[: max_batches * batch_size].tolist())


def _loaders(cfg: RunConfig, T: int, info: DistInfo) -> tuple[DataLoader, DataLoader, torch.Generator]:
    opts = cfg.data.dataset_options()
    train_ds = get_dataset(cfg.data.name, split="train", T=T, **opts)
    test_ds = get_dataset(cfg.data.name, split="test", T=T, **opts)
    eval_bs = cfg.data.eval_batch_size or cfg.data.batch_size
    subset = eval_subset(len(test_ds), cfg.train.max_eval_batches, eval_bs * info.world_size, cfg.seed)
    if subset is not None:
        log.info("evaluating on %d of %d test samples drawn at random (train.max_eval_batches=%d): "
                 "accuracies are estimates", len(subset), len(test_ds), cfg.train.max_eval_batches)
        test_ds = Subset(test_ds, subset)
    gen = torch.Generator()
    common = dict(num_workers=cfg.data.num_workers, pin_memory=torch.cuda.is_available(),
                  persistent_workers=False)
    if info.enabled:
        sampler = DistributedSampler(train_ds, info.world_size, info.rank, shuffle=True, seed=cfg.seed, drop_last=True)
        train = DataLoader(train_ds, cfg.data.batch_size, sampler=sampler, drop_last=True, generator=gen, **common)
        test_ds = Subset(test_ds, shard_indices(len(test_ds), info))
    else:
        train = DataLoader(train_ds, cfg.data.batch_size, shuffle=True, drop_last=True, generator=gen, **common)
    # a generator of its own: starting an epoch over a loader without one draws its base seed from
    # torch's global generator, which the masks of the training run draw from too
    test = DataLoader(test_ds, eval_bs, shuffle=False,
                      generator=torch.Generator().manual_seed(cfg.seed), **common)
    if len(train) == 0:
        raise ConfigError(f"data.batch_size={cfg.data.batch_size} is larger than the training split ({len(train_ds)})")
    return train, test, gen


def fit(cfg: RunConfig, *, resume: str | Path | bool = False, overwrite: bool = False,
        allow_config_change: bool = False, progress: ProgressFactory = null_progress) -> FitResult:
    """Train ``cfg``; ``resume=True`` continues from ``<run_dir>/last.pt``, a path from that file.

    A run directory that already holds a run is never overwritten unless ``overwrite=True``; it is
    locked while training (a second process is refused, naming the first). Resuming under a config
    that differs from the checkpoint's (other than where it runs: device, data root, workers) is
    refused unless ``allow_config_change=True``, which records the change in ``config_changes.jsonl``.
    """
    if resume and overwrite:
        raise ConfigError("--resume continues a run and --overwrite deletes it: give one of them")
    resolved_config(cfg)  # a bad model config or data size is refused before anything touches the disk
    info = init_distributed(cfg.device)
    device = resolve_device(cfg.device, info)
    with contextlib.ExitStack() as stack:
        if info.is_main:
            stack.enter_context(lock_dir(cfg.run_dir, "run directory"))
            claim_run_dir(cfg.run_dir, bool(resume), overwrite)
        return _fit(cfg, info, device, resume, allow_config_change, progress)


def _fit(cfg: RunConfig, info: DistInfo, device: torch.device, resume: str | Path | bool, allow_config_change: bool,
         progress: ProgressFactory) -> FitResult:
    seed_everything(cfg.seed)
    model = build_model_for(cfg)
    if getattr(model.config, "converted", False):
        raise ConfigError(f"model.converted: {model.variant} is a converted SNN, which runs but does not train; "
                          "train (or fine-tune) its ANN and convert it again")
    if cfg.train.init_from and not resume:
        init_from_checkpoint(model, cfg.train.init_from)
    resolved = resolved_config(cfg, model)
    train_loader, test_loader, loader_gen = _loaders(cfg, model.config.T, info)
    model.to(device)
    torch.manual_seed(cfg.seed + 7919 * info.rank)  # identical weights on every rank, different masks
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                                  betas=cfg.optim.betas, eps=cfg.optim.eps)
    run_dir = cfg.run_dir
    last, best_path = run_dir / "last.pt", run_dir / "best.pt"
    start_epoch, best_acc, history, changes_log = 0, -1.0, [], []
    if resume:
        path = last if resume is True else Path(resume)
        if resume is True and not path.is_file():
            raise CheckpointError(f"nothing to resume: {path} does not exist (start the run without --resume)")
        state = load_checkpoint(path, map_location=device)
        changes = check_resume(state, resolved, path, allow_config_change)
        load_weights(model, state["model"], path)
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"cannot resume from {str(path)!r}: its optimiser state does not fit this model "
                                  f"({exc})") from None
        start_epoch, best_acc, history = state["epoch"] + 1, state["best_acc"], list(state["history"])
        changes_log = list(state.get("config_changes", []))
        if changes:
            changes_log.append({"at_epoch": start_epoch, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                "checkpoint": str(path), "changes": changes})
            log.warning("resuming %s under a changed config: %s", path,
                        "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items()))
        if info.is_main:
            torch.set_rng_state(state["rng"])  # the checkpoint holds rank 0's stream
        else:
            torch.manual_seed(cfg.seed + 7919 * info.rank + start_epoch)
        log.info("resumed %s at epoch %d", path, start_epoch)
    net = model
    if info.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _start_outputs(run_dir, history, fresh=not resume)
        if changes_log:
            atomic_write_text(run_dir / "config_changes.jsonl", "".join(json.dumps(c) + "\n" for c in changes_log))
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    total = cfg.schedule.total_epochs
    teacher = load_teacher(cfg.train.distill, net.config.num_classes, device) if cfg.train.distill.teacher else None
    num_classes = net.config.num_classes
    # the training steps may run compiled; evaluation and checkpoints use the module itself
    stepper = model if cfg.train.compile == "off" else torch.compile(model, backend=cfg.train.compile)
    for epoch in range(start_epoch, total):
        lr = lr_at(epoch, cfg.schedule, cfg.optim.lr)
        set_lr(optimizer, lr)
        t0 = time.perf_counter()
        last_good = last if last.exists() else None
        stats = _train_epoch(stepper, teacher, train_loader, loader_gen, optimizer, cfg, epoch, num_classes, device,
                             progress, last_good)
        # the last step of an epoch can break the weights with a finite loss: never save those as "good"
        if not all(torch.isfinite(t).all() for t in net.state_dict().values() if t.is_floating_point()):
            raise _non_finite(f"the weights became non-finite in epoch {epoch + 1}", last_good, lr)
        record = {"epoch": epoch, "lr": lr, **stats, "time_s": time.perf_counter() - t0}
        if (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == total:
            ev = evaluate(model, test_loader, device, mask_seeds=[0], info=info, amp=cfg.train.amp,
                          transform=batch_transform(cfg.data.eval_transform),
                          max_batches=cfg.train.max_eval_batches, progress=progress, desc="test")
            if not math.isfinite(ev["loss"]):
                raise _non_finite(f"the test loss became {ev['loss']} after epoch {epoch + 1}", last_good, lr)
            record.update(test_acc=ev["acc"], test_loss=ev["loss"])
        history.append(record)
        is_best = record.get("test_acc", -1.0) > best_acc
        best_acc = max(best_acc, record.get("test_acc", -1.0))
        if info.is_main:
            log.info("epoch %d/%d lr %.2e loss %.4f train %.1f%% test %s", epoch + 1, total, lr, stats["train_loss"],
                     stats["train_acc"], f"{record['test_acc']:.2f}%" if "test_acc" in record else "-")
            append_jsonl(run_dir / "metrics.jsonl", record)
            extra = dict(epoch=epoch, optimizer=optimizer.state_dict(), best_acc=best_acc, history=history,
                         rng=torch.get_rng_state(), run_config=resolved, config_changes=changes_log)
            save_checkpoint(last, net, **extra)
            if is_best:
                save_checkpoint(best_path, net, **extra)
    final = evaluate(model, test_loader, device, mask_seeds=list(range(cfg.train.eval_mask_seeds)), info=info,
                     transform=batch_transform(cfg.data.eval_transform),
                     amp=cfg.train.amp, max_batches=cfg.train.max_eval_batches, progress=progress, desc="final test")
    if info.is_main:
        atomic_write_json(run_dir / "final.json", {"final": final, "best_acc": best_acc, "epochs": total,
                                                   "config_changes": changes_log})
    return FitResult(run_dir=run_dir, checkpoint=last, best_acc=best_acc, final=final, history=history,
                     is_main=info.is_main)


def _start_outputs(run_dir: Path, history: list[dict[str, Any]], fresh: bool) -> None:
    """A resumed run keeps exactly the metrics of the epochs its checkpoint holds, and is no longer final.

    A fresh run starts in a directory :func:`~.rundir.claim_run_dir` found empty of outputs (or emptied on request).
    """
    if not fresh:
        (run_dir / "final.json").unlink(missing_ok=True)
        atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))


def _train_epoch(model, teacher, loader, loader_gen, optimizer, cfg: RunConfig, epoch: int, num_classes: int,
                 device: torch.device, progress: ProgressFactory, last_good: Path | None) -> dict[str, float]:
    model.train()
    epoch_seed = cfg.seed * 1_000_003 + epoch
    loader_gen.manual_seed(epoch_seed)  # data order (and worker seeds) of this epoch
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):  # load-time randomness (ImageNet crops) replays per epoch
        loader.dataset.set_epoch(epoch)
    aug_gen = torch.Generator().manual_seed(epoch_seed + 1)
    augment = batch_transform(cfg.data.augment)
    loss_sum = correct = seen = 0.0
    n = len(loader) if cfg.train.max_train_batches is None else min(len(loader), cfg.train.max_train_batches)
    bar = progress(total=n, desc=f"epoch {epoch + 1}/{cfg.schedule.total_epochs}", unit="batch", leave=False)
    try:
        for step, (x, y) in enumerate(loader):
            if step >= n:
                break
            # augmentation runs batched on the device; every random draw comes from the epoch's generator
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            x = augment(random_translate(x, cfg.data.translate, aug_gen), aug_gen)
            x, target = mix_batch(x, y, num_classes=num_classes, cfg=cfg.train, epoch=epoch, generator=aug_gen)
            x = time_first(x)
            with autocast(device, cfg.train.amp):
                logits = model(x)
            if teacher is None:
                loss = soft_cross_entropy(logits.float(), target)
            else:
                with torch.no_grad(), autocast(device, cfg.train.amp):
                    taught = teacher(x)
                loss = distillation_loss(logits.float(), taught.float(), target, cfg.train.distill)
            if not torch.isfinite(loss):
                raise _non_finite(f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}", last_good,
                                  optimizer.param_groups[0]["lr"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.train.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            optimizer.step()
            loss_sum += loss.item() * y.shape[0]
            correct += float((logits.argmax(-1) == y).sum())
            seen += y.shape[0]
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}")
    finally:
        bar.close()
    return {"train_loss": loss_sum / max(seen, 1), "train_acc": 100.0 * correct / max(seen, 1)}
