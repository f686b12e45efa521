"""Text rendering of energy reports and study results (the CLI's tables)."""

from __future__ import annotations

from typing import Any

from .tables import fmt_num, fmt_pm, format_table

__all__ = ["render_energy", "render_study", "render_conversion", "render_conversion_study"]


def _realised(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"  # None: the mask saw no spike


def _mask_cell(masks: list[dict[str, Any]]) -> str:
    if not masks:
        return ""
    return " ".join(f"{m['name'].rsplit('.', 1)[-1].removeprefix('mask_')}:{m['nominal']:g}→{_realised(m['realised'])}"
                    for m in masks)


def _mask_table(report: dict[str, Any]) -> str:
    """Masks that draw random numbers: where, how many per sample, and their (assumed) cost."""
    rows = [[m["name"], m["site"], f"{m['nominal']:g}", _realised(m["realised"]),
             m.get("draw", "all") + (", shared over T" if m.get("shared_over_time") else ""),
             fmt_num(m["draws"]), f"{m['draw_energy_pj'] / 1e3:.2f}"]
            for m in report["masks"] if m.get("draws")]
    if not rows:
        return ""
    return format_table(["mask", "site", "τ", "realised", "draws at", "draws", "E draws (nJ)"], rows,
                        align="lllllrr")


def render_energy(report: dict[str, Any]) -> str:
    t = report["totals"]
    cfg = report["energy_config"]
    seeds = report.get("mask_seeds") or []
    head = (f"{report['model']}  T={report['T']}  {report['mode']} on {report['samples']} sample(s)"
            f"{'' if report['mode'] == 'dense' else ''}  mask: {report['mask']}"
            + (f"  mask seeds: {len(seeds)}" if seeds and seeds[0] is not None else ""))
    rows = []
    for r in report["layers"]:
        rows.append([r["name"], r["op"], r["encoding"], fmt_num(r["dense_macs_per_step"]), f"{r['input_rate']:.3f}",
                     _mask_cell(r["masks"]), fmt_num(r["sops"]), fmt_num(r["macs"]), fmt_num(r["fr_T_macs"]),
                     f"{r['energy_pj'] / 1e3:.2f}", f"{100 * r['share']:.1f}"])
    layer_table = format_table(
        ["layer", "op", "input", "MACs/step", "rate", "mask τ nominal→realised", "SOPs", "MACs", "fr·T·MACs",
         "E (nJ)", "share %"], rows, align="lllrrlrrrrr")
    lines = [head, "", layer_table, ""]
    masks = _mask_table(report)
    if masks:
        lines += [masks, ""]
    std = f" ± {t['energy_mj_std']:.4g}" if t.get("energy_mj_std") else ""
    lines += [
        f"compute energy: {t['energy_mj']:.4g}{std} mJ/sample  = {cfg['e_ac_pj']} pJ x {fmt_num(t['sops'])} SOPs"
        f" + {cfg['e_mac_pj']} pJ x {fmt_num(t['macs'])} MACs",
        f"same network as an ANN (dense MACs, one pass): {t['ann_energy_mj']:.4g} mJ "
        f"({fmt_num(t['ann_macs'])} MACs); SNN / ANN = {t['energy_mj'] / t['ann_energy_mj']:.3f}",
    ]
    reading = [r for r in report["layers"] if r["masks"]]
    if reading:  # the most any mask could save at these upstream rates (τ → 1 removes exactly these)
        e = sum(r["energy_pj"] for r in reading) / 1e9
        lines.append(f"layers reading mask sites ({len(reading)}): {e:.4g} mJ = "
                     f"{100 * sum(r['share'] for r in reading):.2f} % of the compute energy")
    lines += [
        f"not in the total: neuron updates {fmt_num(t['neuron_updates'])} → {t['neuron_energy_mj']:.4g} mJ; "
        f"SRAM traffic (crude) {t['memory_energy_mj']:.4g} mJ"
        + (f"; mask random numbers {fmt_num(t['mask_draws'])} → {t['mask_draw_energy_mj']:.4g} mJ"
           f" (assumed {cfg['e_rng_pj']} pJ each)" if t.get("mask_draws") else "")
        + (f"; elementwise additions (residuals, merges) {fmt_num(t['additions'])} → "
           f"{t['addition_energy_mj']:.4g} mJ at E_AC" if t.get("additions") else ""),
        f"the papers' formula E_MAC·FL1 + E_AC·Σ fr·T·FLOPs on these rates: {t['papers_formula_energy_mj']:.4g} mJ"
        + (f"; with masked layers x (1 − τ) once more: {t['papers_formula_extra_mask_factor_energy_mj']:.4g} mJ"
           if t["papers_formula_extra_mask_factor_energy_mj"] != t["papers_formula_energy_mj"] else ""),
        f"conventions: first layer {cfg['first_layer']}, integer inputs {cfg['integer_inputs']}, real inputs "
        f"{cfg['real_inputs']}, pooling {cfg['pooling']}, gates {cfg['gates']}; BN folded (not counted); "
        "45 nm compute-only estimate",
    ]
    if "delta" in report:
        d = report["delta"]
        lines.append(f"against the same weights without masks: {d['reference_energy_mj']:.4g} mJ → "
                     f"ΔE {d['saving_pct']:.1f} % saved")
    return "\n".join(lines)


def render_study(result: dict[str, Any]) -> str:
    rows = result["rows"]
    ref = result["reference"]
    table = [[r["model"], r["T"], f"{100 * r['mask_ratio']:.0f}" if r["mask_ratio"] else "-",
              # masked rows are means over mask seeds: their std is shown even when the seeds agree
              fmt_pm(r["acc"], r["acc_std"], always=r["mask_ratio"] > 0),
              fmt_pm(r["energy_mj"] * 1e3, r["energy_mj_std"] * 1e3, 1, always=r["mask_ratio"] > 0),
              f"{r['delta_e_pct']:.1f}" if r["mask_ratio"] else "-", f"{r['delta_e_ref_pct']:.1f}",
              f"{r['params_m']:.3f}"] for r in rows]
    data = result.get("study", {}).get("base", {}).get("data", {}).get("name", "N-Digits")
    out = [format_table(
        ["Model", "T", "M (%)", "Acc (%)", "E (µJ)", "ΔE (%)", f"ΔE vs T={ref['T']} (%)", "Param (M)"], table,
        title=f"Accuracy and energy (Table 1 of 000, on {data}); mean ± std over mask seeds", align="lrrrrrrr")]
    out.append("ΔE = energy saved against the same model unmasked at the same T; the paper's column compares with "
               f"its largest-T unmasked model (here T={ref['T']}). E is compute-only (45 nm), per sample.")
    variants = list(dict.fromkeys(r.get("variant") for r in rows))
    for variant in variants:
        for T in sorted({r["T"] for r in rows}):
            trained = [r for r in rows if r["T"] == T and r.get("variant") == variant
                       and not r["model"].endswith("+ RSM at inference")]
            groups = list(dict.fromkeys(g for r in trained for g in r["breakdown_mj"]))
            brow = [[g] + [f"{1e3 * r['breakdown_mj'].get(g, 0.0):.2f}" for r in trained] for g in groups]
            brow.append(["total"] + [f"{1e3 * r['energy_mj']:.2f}" for r in trained])
            which = f"{variant}, " if len(variants) > 1 else ""
            out += ["", format_table(["layer group (µJ)"] + [f"τ={r['mask_ratio']:g}" for r in trained], brow,
                                     title=f"Where the energy goes, {which}T={T} (trained models)")]
    why = [[r["model"], r["T"], f"{r['mask_ratio']:g}",
            f"{1e3 * (r['saved_in_masked_layers_mj'] + r['saved_elsewhere_mj']):.2f}",
            f"{1e3 * r['saved_in_masked_layers_mj']:.2f}", f"{1e3 * r['saved_elsewhere_mj']:.2f}"]
           for r in rows if r["mask_ratio"]]
    out += ["", format_table(["Model", "T", "τ", "saved (µJ)", "in layers reading masked spikes",
                              "elsewhere (changed spike rates)"], why, title="What explains ΔE", align="lrrrrr")]
    return "\n".join(out)


def render_conversion(res: dict[str, Any]) -> str:
    """The accuracy-vs-T table (steps 1, 2, 4, ... and T), the ANN's accuracy, the SNN's energy, the files."""
    acc, T = res["accuracy"], res["T"]
    steps = sorted({2 ** k for k in range(T.bit_length()) if 2 ** k <= T} | {T})
    seeded = len(acc["mask_seeds"]) > 1
    rows = [[t, fmt_pm(acc["acc"][t - 1], acc["acc_std"][t - 1], always=seeded)] for t in steps]
    lines = [format_table(["T", "SNN acc (%)"], rows, align="rr",
                          title=f"{res['model']} converted on {res['data']} ({acc['samples']} test inputs; "
                                f"mask: {res['mask']})")]
    ann = fmt_pm(acc["ann_acc"], acc["ann_acc_std"], always=seeded)
    t = res["energy"]["totals"]
    lines += [
        f"QCFS ANN: {ann} %; SNN at T={T}: {fmt_pm(acc['acc'][-1], acc['acc_std'][-1], always=seeded)} % "
        f"({res['conversion']['num_neurons']} neurons, {len(res['conversion']['analog'])} analog modules)",
        f"SNN energy at T={T}: {t['energy_mj']:.4g} mJ/sample compute ({fmt_num(t['sops'])} SOPs, "
        f"{fmt_num(t['macs'])} MACs); MST's P = spikes / 1 ms x α = {fmt_num(t['mst_power_alpha'])} α "
        f"({fmt_num(t['spikes'])} spikes per sample)",
        f"files: {res['outputs']['csv']}, {res['outputs']['plot']}, {res['outputs']['json']}; "
        f"converted checkpoint {res['outputs']['snn']}",
    ]
    return "\n".join(lines)


def render_conversion_study(result: dict[str, Any]) -> str:
    """MST on the bundled data: conversion, masking at inference, masked fine-tuning (with distillation)."""
    study = result["study"]
    out = []
    rows = []
    for name, res in result["models"].items():
        curve = res["curve"]
        steps = [t for t in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if t <= len(curve["acc"])]
        rows.append([name, f"{res['ann_acc']:.2f}"] + [f"{curve['acc'][t - 1]:.2f}" for t in steps])
    out.append(format_table(["model", "QCFS ANN (%)"] + [f"SNN T={t}" for t in steps], rows,
                            title="Converted SNNs: accuracy at every step (the ANN's for reference)"))
    rows = []
    for name, res in result["models"].items():
        for r in res["masking"]:
            e = r["energy"]
            rows.append([name, r["group"], f"{100 * r['ratio']:.0f}",
                         fmt_pm(r["acc"], r["acc_std"], always=r["ratio"] > 0), f"{e['energy_mj'] * 1e3:.2f}",
                         fmt_num(e["spikes"]), fmt_num(e["mst_power_alpha"])])
    out += ["", format_table(["model", "masked", "τ (%)", f"SNN acc T={study['T_eval']} (%)", "E (µJ)", "spikes",
                              "P (α)"], rows, align="llrrrrr",
                             title="Random Spike Masking at inference (mean ± std over mask seeds; energy on "
                                   f"{study['energy_samples']} inputs, one seed)")]
    if result["finetune"]:
        rows = [[label, f"{100 * r['ratio']:.0f}", fmt_pm(r["ann_acc"], r["ann_acc_std"], always=True),
                 fmt_pm(r["snn_acc"], r["snn_acc_std"], always=True)] for label, r in result["finetune"].items()]
        first = study["models"][0]
        out += ["", format_table(["masked model", "τ (%)", "ANN acc (%)", f"SNN acc T={study['T_eval']} (%)"], rows,
                                 align="lrrr", title=f"{first}: masked fine-tuning, with and without distillation")]
    return "\n".join(out)
