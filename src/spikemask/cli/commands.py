"""The subcommands: thin wrappers over the library (parse -> config -> library call -> render)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import torch

from .main import emit_json
from .progress import tqdm_progress
from .render import render_conversion, render_conversion_study, render_energy, render_study
from .search_cmd import cmd_search  # noqa: F401 - dispatched by name from main
from .sweep_cmd import cmd_sweep  # noqa: F401
from .tables import format_table

log = logging.getLogger("spikemask")


def cmd_models(args: argparse.Namespace) -> int:
    from ..models import list_models, model_info

    infos = [model_info(name) for name in list_models(args.pattern)]
    if args.json:
        emit_json(infos)
        return 0
    rows = [[i["name"], f"{i['params'] / 1e6:.2f}", f"{i['params']:,}", i["summary"]] for i in infos]
    print(format_table(["model", "params (M)", "params", "description"], rows, align="lrrl"))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..config import apply_overrides, from_dict
    from ..train import RunConfig, fit, list_presets, load_checkpoint, load_run_config

    if args.list_presets:
        print("\n".join(list_presets()))
        return 0
    if args.config:
        cfg = load_run_config(args.config, args.overrides)
        resume = args.resume
    elif isinstance(args.resume, str):
        state = load_checkpoint(args.resume)
        if "run_config" not in state:
            raise ValueError(f"{args.resume} holds no run config; resume it with --config FILE --resume {args.resume}")
        cfg = from_dict(RunConfig, apply_overrides(state["run_config"], args.overrides))
        resume = args.resume
    else:
        raise ValueError("give --config FILE (or a preset name), or --resume CHECKPOINT; "
                         "presets: " + ", ".join(list_presets()))
    result = fit(cfg, resume=resume, overwrite=args.overwrite, allow_config_change=args.allow_config_change,
                 progress=tqdm_progress)
    if not result.is_main:  # torchrun: rank 0 reports
        return 0
    f = result.final
    print(f"run {result.run_dir}: test accuracy {_acc_pm(f)} % over {len(f['mask_seeds']) or 1} "
          f"mask seed(s); best during training {result.best_acc:.2f} %")
    print(f"checkpoint (config inside): {result.checkpoint}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..train import evaluate, load_model
    from ..train.augment import batch_transform
    from ..train.data import checkpoint_data_config, test_loader

    model, state = load_model(args.checkpoint)
    data_cfg = checkpoint_data_config(state, args.data, args.root)
    data = data_cfg.name
    if args.mask_ratio is not None:
        before = model.config.mask.describe()
        _override_ratio(model, args.mask_ratio)
        log.info("mask overridden: %s -> %s", before, model.config.mask.describe())
    _engine(model, args.engine)
    loader = test_loader(data_cfg, model.config.T, args.batch_size)
    res = evaluate(model, loader, torch.device("cpu"), mask_seeds=list(range(args.seeds)), progress=tqdm_progress,
                   transform=batch_transform(data_cfg.eval_transform))
    res.update(checkpoint=args.checkpoint, model=model.variant, mask=model.config.mask.describe(), data=data)
    if args.json:
        emit_json(res)
    else:
        seeds = f" over {len(res['mask_seeds'])} mask seeds" if res["mask_seeds"] else " (no active mask)"
        print(f"{model.variant} on {data} test: accuracy {_acc_pm(res)} %{seeds}; "
              f"loss {res['loss']:.4f}; mask: {res['mask']}")
    return 0


def _override_ratio(model, ratio: float, sites: list[str] | None = None) -> None:
    """``--mask-ratio``: τ on ``sites`` (default: every site the model names), replacing per-site ratios.

    Without clearing ``site_ratios``, ``--mask-ratio 0`` would leave a checkpoint's per-site masks on.
    """
    from ..masking import apply_rsm

    apply_rsm(model, ratio=ratio, sites=sites if sites is not None else sorted(model.config.mask.named_sites()),
              site_ratios={})


def _engine(model, engine: str | None) -> None:
    """``--engine``: how the spike-reading linears compute (dense GEMM, event-driven gather-adds, or by density);
    the same numbers either way (docs/engine.md)."""
    if engine is None:
        return
    from ..engine import apply_engine

    try:
        apply_engine(model, engine)
    except ValueError as exc:
        raise ValueError(f"--engine: {exc}") from None
    log.info("engine: %s", engine)


def _acc_pm(res: dict[str, Any]) -> str:
    """``mean ± std`` whenever several mask seeds were evaluated (also when they agree: ``± 0.00``)."""
    if len(res["mask_seeds"]) > 1:
        return f"{res['acc']:.2f} ± {res['acc_std']:.2f}"
    return f"{res['acc']:.2f}"


def cmd_energy(args: argparse.Namespace) -> int:
    from ..config import apply_overrides, from_dict
    from ..data import dataset_info
    from ..energy import EnergyConfig, dense_energy, measure_energy
    from ..masking import apply_rsm
    from ..models import create_model
    from ..train import load_model
    from ..train.augment import batch_transform
    from ..train.data import checkpoint_data_config, test_loader
    from ..train.evaluate import TimeFirstBatches

    energy_cfg = from_dict(EnergyConfig, apply_overrides({}, [o.removeprefix("energy.") for o in args.overrides]),
                           where="energy")
    untrained, state = False, None
    if args.checkpoint:
        model, state = load_model(args.checkpoint)
        if args.T:
            model.config.T = args.T
    elif not args.model:
        raise ValueError("give --model NAME or --checkpoint FILE (`spikemask models` lists the names)")
    data_cfg = checkpoint_data_config(state, args.data, args.root)  # its own data unless --data is given
    data = data_cfg.name
    if not args.checkpoint:
        num_classes = None if args.dense else dataset_info(data).num_classes
        model = create_model(args.model, T=args.T, num_classes=num_classes)
        untrained = not args.dense
    _engine(model, args.engine)
    sites = args.sites.split(",") if args.sites else None
    if args.mask_ratio is not None:
        _override_ratio(model, args.mask_ratio, sites)
    elif sites:
        apply_rsm(model, sites=sites)
    if args.mask_draw:
        apply_rsm(model, draw=args.mask_draw)
    T = model.config.T
    if args.dense:
        report = dense_energy(model, T=T, config=energy_cfg)
        if model.config.mask.active:
            report["delta"] = _saving_against_unmasked(model, report,
                                                       lambda: dense_energy(model, T=T, config=energy_cfg))
    else:
        info = dataset_info(data)
        mc = model.config
        h, w = data_cfg.frame_size(info.sensor_size)
        if (mc.in_channels, mc.img_size, mc.img_size) != (info.in_channels, h, w):
            raise ValueError(
                f"{model.variant} takes {mc.in_channels}x{mc.img_size}x{mc.img_size} inputs but {data} gives "
                f"{info.in_channels}x{h}x{w}: measure it on matching data "
                f"(--data NAME --root DIR) or use --dense for the data-free count")
        loader = test_loader(data_cfg, T, 32, args.samples)
        batches = TimeFirstBatches(loader, batch_transform(data_cfg.eval_transform))
        seeds = range(args.seeds)
        report = measure_energy(model, batches, config=energy_cfg, mask_seeds=seeds)
        if model.config.mask.active:
            report["delta"] = _saving_against_unmasked(model, report,
                                                       lambda: measure_energy(model, batches, config=energy_cfg))
        report["data"] = data
    report["untrained_weights"] = untrained
    if args.json:
        emit_json(report)
        return 0
    print(render_energy(report))
    if untrained:
        print("note: untrained weights (no --checkpoint): the firing rates, hence SOPs, "
              "are not those of a trained model")
    return 0


def _saving_against_unmasked(model, report: dict[str, Any], measure) -> dict[str, float]:
    """ΔE of ``report`` against the same model with its masks off (``measure()`` counts it that way)."""
    from ..energy import saving_pct
    from ..masking import apply_rsm

    masks = model.config.mask
    apply_rsm(model, ratio=0.0, site_ratios={})
    try:
        ref = measure()["totals"]["energy_mj"]
    finally:
        model.set_mask(masks)
    return {"reference_energy_mj": ref, "saving_pct": saving_pct(report["totals"]["energy_mj"], ref)}


def cmd_data(args: argparse.Namespace) -> int:
    from ..data import dataset_info, get_dataset, list_datasets
    from ..data.inspect import describe_dataset

    if args.data_command == "list":
        infos = [dataset_info(n) for n in list_datasets()]
        if args.json:
            emit_json([{"name": i.name, "kind": i.kind, "classes": i.num_classes, "size": list(i.sensor_size),
                        "summary": i.summary} for i in infos])
            return 0
        rows = [[i.name, i.kind, i.num_classes, f"{i.sensor_size[0]}x{i.sensor_size[1]}", i.summary] for i in infos]
        print(format_table(["data set", "kind", "classes", "H x W", "format"], rows, align="llrrl"))
        return 0
    if args.data_command == "info":
        d = describe_dataset(args.name, args.root, max_samples=args.samples)
        if args.json:
            emit_json(d)
            return 0
        print(f"{d['name']}: {d['summary']}; {d['num_classes']} classes, {d['sensor_size'][0]}x{d['sensor_size'][1]}")
        splits = list(d["splits"])
        names = list(d["splits"][splits[0]]["per_class"])
        rows = [[c] + [d["splits"][s]["per_class"].get(c, 0) for s in splits] for c in names]
        rows.append(["total"] + [d["splits"][s]["samples"] for s in splits])
        print(format_table(["class"] + splits, rows))
        for s in splits:
            e = d["splits"][s].get("events")
            if e:
                print(f"{s}: {e['events_mean']:.0f} events per sample (min {e['events_min']}, max {e['events_max']}), "
                      f"{e['duration_ms_mean']:.1f} ms, {100 * e['on_fraction']:.1f} % ON, x <= {e['x_max']}, "
                      f"y <= {e['y_max']} (over {e['samples_read']} samples)")
        return 0
    opts = dict(root=args.root, split_by=args.split_by, binarize=args.binarize)
    if args.size:
        opts["size"] = tuple(args.size)
    for split in args.splits:
        if args.name == "ndigits":  # builds itself on construction; report progress as it goes
            bar = tqdm_progress(desc=f"{args.name} {split}", unit="sample")
            ds = get_dataset(args.name, split=split, T=args.T, progress=bar.update, **opts)
            bar.close()
        else:
            ds = get_dataset(args.name, split=split, T=args.T, prepare=False, **opts)
            if hasattr(ds, "prepare"):
                bar = tqdm_progress(total=len(ds), desc=f"{args.name} {split} T={args.T}", unit="sample")
                ds.prepare(progress=bar.update)
                bar.close()
        where = getattr(getattr(ds, "cache", None), "path", None) or getattr(ds, "cache_file", None)
        print(f"{args.name} {split}: {len(ds)} samples ready" + (f" (frames cached in {where})" if where else ""))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from ..conversion.pipeline import run_conversion

    res = run_conversion(args.checkpoint, T=args.T, mask_ratio=args.mask_ratio, seeds=args.seeds, data=args.data,
                         root=args.root, batch_size=args.batch_size, samples=args.samples,
                         energy_samples=args.energy_samples, out_dir=args.out, progress=tqdm_progress)
    if args.json:
        emit_json(res)
        return 0
    print(render_conversion(res))
    return 0


def cmd_import_weights(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..models.convert import load_authors_weights
    from ..models.mst_weights import data_config, is_mst_checkpoint, load_mst_weights
    from ..train import save_checkpoint

    if Path(args.out).exists() and not args.overwrite:
        raise ValueError(f"{args.out} exists; choose another --out or add --overwrite")
    if is_mst_checkpoint(args.source):
        if args.ema or args.num_heads:
            raise ValueError(f"{args.source} is an MST checkpoint: --ema and --num-heads do not apply (the heads "
                             f"come from its relative position bias tables)")
        model, report = load_mst_weights(args.source, variant=args.variant, num_classes=args.num_classes,
                                         mask_ratio=args.mask_ratio, levels=args.levels)
    else:
        if args.mask_ratio is not None:
            raise ValueError("--mask-ratio applies to MST checkpoints only; for Spikformer weights set the ratio "
                             "when evaluating (spikemask eval CKPT --mask-ratio R)")
        model, report = load_authors_weights(args.source, variant=args.variant, num_classes=args.num_classes,
                                             num_heads=args.num_heads, ema=args.ema)
    data = data_config(report) if report["layout"].startswith("mst/") else None
    out = save_checkpoint(args.out, model, imported_from=str(args.source), import_report=report,
                          **({"run_config": {"data": data}} if data else {}))
    if args.json:
        emit_json(dict(report, checkpoint=str(out)))
        return 0
    print(f"{report['layout']} ({report['authors_code']}) -> {model.variant}: {len(report['mapped'])} tensors, "
          f"{len(report['converted'])} reshaped, {len(report['dropped'])} unused dropped")
    for field, (old, new) in report["config_changes"].items():
        print(f"  {field}: {old} -> {new}")
    for field, why in report["assumed"].items():
        print(f"  {field}: {why}")
    for warning in report.get("warnings", []):
        print(f"  warning: {warning}")
    if report.get("levels"):
        print(f"  QCFS levels {report['levels']['value']}; masking ratio {report['mask']['ratio']:g} "
              f"({report['mask']['source']}); convert with: spikemask convert {out} --T 64")
    print(f"checkpoint (config inside): {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..study import load_study_config, run_study

    overrides = list(args.overrides) + ([f"out_dir={args.out}"] if args.out else [])
    overrides += [f"engine={args.engine}"] if getattr(args, "engine", None) else []
    study = load_study_config(args.config, overrides)
    if study.kind == "sweep":
        if args.overwrite:
            log.warning("--overwrite does nothing for a sweep: its runs are named by their config, so a changed "
                        "setting is a new run and no run is ever overwritten")
        return _demo_sweep(study)
    if study.kind == "conversion":
        from ..conversion.study import run_conversion_study

        log.info("MST on the bundled data: %s -> %s", ", ".join(study.models), study.study_dir)
        print(render_conversion_study(run_conversion_study(study, progress=tqdm_progress)))
        out = study.study_dir
        print(f"\nresults: {out / 'results.json'}; plots: {out / 'accuracy_vs_T.png'}, {out / 'accuracy_vs_ratio.png'}")
        return 0
    log.info("study on %s: %s, T in %s, τ in %s -> %s", study.base.data.name, ", ".join(study.model_names),
             list(study.time_steps), list(study.ratios), study.study_dir)
    result = run_study(study, overwrite=args.overwrite, progress=tqdm_progress)
    print(render_study(result))
    out = study.study_dir
    print(f"\nresults: {out / 'results.csv'}, {out / 'results.json'}, energy per layer: {out / 'energy_reports.json'}")
    print(f"plot: {out / 'accuracy_vs_energy.png'}; resolved configs: {out}/*/config.yaml")
    return 0


def _demo_sweep(cfg) -> int:
    """A sweep preset: run it (finished runs are reused), build its report, print the papers' table."""
    from ..results.report import build_report, energy_unit, summary_table
    from ..results.sweep import run_sweep

    log.info("sweep %s on %s: %s -> %s", cfg.name, cfg.base.get("data", {}).get("name"),
             ", ".join(f"{k} in {v}" for k, v in cfg.grid.items()), cfg.sweep_dir)
    summary = run_sweep(cfg, progress=tqdm_progress)
    report = build_report(cfg.db_path, cfg.sweep_dir / "report")
    scale, unit = energy_unit(max((r["energy_mj"] or 0.0) for r in report["rows"]))
    table = summary_table(report["rows"], scale, unit)
    print(format_table(table["headers"], [[text for text, _ in row] for row in table["rows"]]))
    for failed, why in summary["failed"].items():
        print(f"failed run {failed}: {why}")
    print(f"\nreport: {report['html']} (one page: every table and figure), {report['markdown']}")
    print(f"results database: {cfg.db_path} (spikemask results show|query|export {cfg.sweep_dir})")
    return 2 if summary["failed"] else 0
