"""Turn raw counts into the energy report: per layer, per mask, per neuron layer, and totals.

The report is a plain, JSON-ready dict (numbers per sample). Each layer says which rule charged
it (AC or MAC and why), so any total can be recomputed by hand from the table.
"""

from __future__ import annotations

import math
import re
import statistics
from typing import Any

from ..config import to_dict
from . import counting as C
from .config import EnergyConfig
from .counter import EnergyCounter, LayerStats, MaskStats

__all__ = ["build_report", "combine_reports", "group_of", "energy_by_group", "PJ_PER_MJ"]

PJ_PER_MJ = 1e9
_WEIGHT_OPS = ("conv1d", "conv2d", "linear")
_POOL_OPS = ("maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d", "meanpool")


def _charge(st: LayerStats, cfg: EnergyConfig, first: bool) -> tuple[float, float, str]:
    """(SOPs, MACs, rule) for one layer's totals under the conventions of ``cfg``."""
    if st.op in _POOL_OPS:
        if cfg.pooling == "exclude":
            return 0.0, 0.0, "pooling excluded"
        return 0.0, st.dense_macs, "pooling: 1 MAC per window element"
    if st.op in ("softmax", "layernorm"):
        return 0.0, st.dense_macs, "analog: MAC-equivalents per element"
    if st.op == "tokenpool":
        return st.exact, 0.0, "token aggregation: 1 AC per non-zero input"
    if st.op == "gate" and st.encoding == C.BINARY:
        if cfg.gates == "ac":
            return st.exact, 0.0, "spike gate: 1 AC per pair of non-zero operands"
        return 0.0, 0.0, "spike gate (AND): free"
    if first and cfg.first_layer == "mac_dense":
        return 0.0, st.dense_macs, "first layer: dense MAC every step"
    if st.encoding == C.BINARY:
        what = "coincidence" if st.op in ("matmul", "hadamardsum") else "spike weight use"
        return st.exact, 0.0, f"1 AC per {what}"
    if st.encoding == C.INTEGER:
        rule = cfg.integer_inputs
        if rule == "ac_weighted":
            return st.valued, 0.0, "integer input: n ACs per input n"
        if rule == "mac_nonzero":
            return 0.0, st.exact, "integer input: MAC per non-zero weight use"
        return 0.0, st.dense_macs, "integer input: dense MAC"
    if cfg.real_inputs == "mac_nonzero":
        return 0.0, st.exact, "real input: MAC per non-zero weight use"
    return 0.0, st.dense_macs, "real input: dense MAC"


def _realised(m: MaskStats, dense: bool) -> float | None:
    """1 - nnz_after / nnz_before; None when the mask saw no spike (nothing was there to mask)."""
    if dense:
        return m.nominal if m.active else 0.0
    return 1.0 - m.nnz_out / m.nnz_in if m.nnz_in else None


def _mean_realised(values: list[float | None]) -> float | None:
    """Mean over the seeds whose mask saw spikes; None if none did."""
    seen = [v for v in values if v is not None]
    return statistics.fmean(seen) if seen else None


def group_of(name: str) -> str:
    """Layer name without block/stage indices: ``blocks.1.attn.qk`` -> ``blocks.attn.qk``."""
    return re.sub(r"\.\d+(?=\.|$)", "", name)


def build_report(counter: EnergyCounter, cfg: EnergyConfig, **meta: Any) -> dict[str, Any]:
    """Per-sample report from one counter (one pass over the data, one mask seed)."""
    n = counter.samples
    if n == 0:
        raise ValueError("the energy counter saw no samples: run the model inside the counter first")
    T = counter.T or 1
    layers = sorted(counter.layers.values(), key=lambda s: s.order)
    weight_layers = [s for s in layers if s.op in _WEIGHT_OPS]
    first_name = weight_layers[0].name if weight_layers else None
    masks = {
        m.name: {
            "name": m.name,
            "site": m.site,
            "consumer": m.consumer,
            "nominal": m.nominal if m.active else 0.0,
            "active": m.active,
            "realised": _realised(m, counter.dense),
            "nnz_before": m.nnz_in / n,
            "nnz_after": m.nnz_out / n,
            "draw": m.draw,
            "shared_over_time": m.shared,
            "structure": m.structure,
            "draws": m.draws / n,
            "draw_energy_pj": m.draws / n * cfg.e_rng_pj,
        }
        for m in counter.masks.values()
    }
    rows, sops, macs, dense_step = [], 0.0, 0.0, 0.0
    # the papers' formula on measured rates: E_MAC · FL_1 + E_AC · Σ fr · T · FLOPs (pooling left out),
    # and the same with each masked layer multiplied by (1 - τ) once more, as 000's equation reads
    paper_mac, paper_sop, paper_sop_extra = 0.0, 0.0, 0.0
    for st in layers:
        is_first = st.name == first_name
        s, m, rule = _charge(st, cfg, is_first)
        sops += s
        macs += m
        dense_step += st.dense_macs / (n * st.steps)
        if is_first:
            paper_mac += st.dense_macs
        elif st.op not in _POOL_OPS:
            keep = math.prod(1.0 - masks[k]["nominal"] for k in st.masks)
            paper_sop += st.fr_formula
            paper_sop_extra += st.fr_formula * keep
        rows.append({
            "name": st.name,
            "group": "first layer" if is_first else group_of(st.name),
            "op": st.op,
            "encoding": st.encoding,
            "steps": st.steps,
            "dense_macs_per_step": st.dense_macs / (n * st.steps),
            "input_rate": st.input_nnz / st.input_numel if st.input_numel else 1.0,
            "input_mean": st.input_sum / st.input_numel if st.input_numel else float("nan"),
            "masks": [{"name": k, "nominal": masks[k]["nominal"], "realised": masks[k]["realised"]} for k in st.masks],
            "events": st.exact / n,
            "value_weighted": st.valued / n,
            "fr_T_macs": st.fr_formula / n,
            "sops": s / n,
            "macs": m / n,
            "rule": rule,
            "energy_pj": (s * cfg.e_ac_pj + m * cfg.e_mac_pj) / n,
        })
    sops, macs = sops / n, macs / n
    energy_pj = sops * cfg.e_ac_pj + macs * cfg.e_mac_pj
    for row in rows:
        row["share"] = row["energy_pj"] / energy_pj if energy_pj else 0.0
    neurons = [
        {"name": s.name, "kind": s.kind, "updates": s.updates / n, "spikes": s.spikes / n,
         "firing_rate": s.spikes / s.updates if s.updates else 0.0}
        for s in counter.neurons.values()
    ]
    updates = sum(r["updates"] for r in neurons)
    neuron_pj = sum(r["updates"] * (cfg.e_lif_update_pj if r["kind"] == "lif" else cfg.e_if_update_pj) for r in neurons)
    spikes = sum(s.spikes for s in counter.neurons.values()) / n
    ann_macs = dense_step
    draws = sum(m["draws"] for m in masks.values())
    additions = [{"name": a.name, "adds": a.adds / n, "dense": a.dense / n, "encoding": a.encoding}
                 for a in counter.additions.values()]
    adds = sum(a["adds"] for a in additions)
    totals = {
        "sops": sops,
        "macs": macs,
        "energy_mj": energy_pj / PJ_PER_MJ,
        "ann_macs": ann_macs,
        "ann_energy_mj": ann_macs * cfg.e_mac_pj / PJ_PER_MJ,
        "dense_macs_per_step": dense_step,
        "neuron_updates": updates,
        "spikes": spikes,
        "neuron_energy_mj": neuron_pj / PJ_PER_MJ,
        "memory_energy_mj": (sops + macs + 2 * updates) * cfg.e_sram_pj / PJ_PER_MJ,
        "mask_draws": draws,
        "mask_draw_energy_mj": draws * cfg.e_rng_pj / PJ_PER_MJ,
        "additions": adds,
        "addition_energy_mj": adds * cfg.e_ac_pj / PJ_PER_MJ,
        # MST's figure: P = total spikes / 1 ms x α, in α per second (all T steps in one millisecond)
        "mst_power_alpha": spikes / 1e-3,
        "papers_formula_energy_mj": (paper_mac * cfg.e_mac_pj + paper_sop * cfg.e_ac_pj) / n / PJ_PER_MJ,
        "papers_formula_extra_mask_factor_energy_mj":
            (paper_mac * cfg.e_mac_pj + paper_sop_extra * cfg.e_ac_pj) / n / PJ_PER_MJ,
    }
    return {
        **meta,
        "mode": "dense" if counter.dense else "measured",
        "T": T,
        "samples": n,
        "energy_config": to_dict(cfg),
        "first_layer": first_name,
        "totals": totals,
        "layers": rows,
        "masks": list(masks.values()),
        "neurons": neurons,
        "additions": additions,
    }


def combine_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of several reports (one per mask seed); totals also get ``<key>_std`` across them."""
    if len(reports) == 1:
        out = dict(reports[0])
        out["totals"] = {**out["totals"], **{f"{k}_std": 0.0 for k in reports[0]["totals"]}}
        return out

    def mean_rows(key: str) -> list[dict[str, Any]]:
        merged = []
        for rows in zip(*(r[key] for r in reports)):
            row = dict(rows[0])
            for field, value in rows[0].items():
                if field != "realised" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    row[field] = statistics.fmean(r[field] for r in rows)
            if key == "masks":
                row["realised"] = _mean_realised([r["realised"] for r in rows])
            if key == "layers":
                row["masks"] = [
                    {**m, "realised": _mean_realised([r["masks"][i]["realised"] for r in rows])}
                    for i, m in enumerate(rows[0]["masks"])
                ]
            merged.append(row)
        return merged

    out = dict(reports[0])
    totals = {}
    for k in reports[0]["totals"]:
        values = [r["totals"][k] for r in reports]
        totals[k] = statistics.fmean(values)
        totals[f"{k}_std"] = statistics.stdev(values)
    out.update(totals=totals, layers=mean_rows("layers"), masks=mean_rows("masks"), neurons=mean_rows("neurons"),
               additions=mean_rows("additions"))
    out["samples"] = reports[0]["samples"]
    return out


def energy_by_group(report: dict[str, Any]) -> dict[str, float]:
    """Compute energy (mJ per sample) summed by layer group, in first-seen order."""
    groups: dict[str, float] = {}
    for row in report["layers"]:
        groups[row["group"]] = groups.get(row["group"], 0.0) + row["energy_pj"] / PJ_PER_MJ
    return groups

