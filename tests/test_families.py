"""Spikingformer, SAFormer and the spike-driven attention: shapes, gradients, every mask site, the energy of
each new operation against an independent count, the binary-input property, and the counter's invariants
for every family (the same assertions as for Spikformer in test_energy.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_active
from test_energy import naive_conv_uses, rows_by_name
from torch import nn

import spikemask as sm
from spikemask.energy import dense_energy, measure_energy
from spikemask.layers import HadamardSum, SpikeGate, SpikeMatmul, TokenPool
from spikemask.masking import SpikeMask
from spikemask.train import load_model, save_checkpoint

# (variant, overrides): every family, every attention on both residual styles, the SASA ablations, the heads
VARIANTS = [
    ("test_spikformer", {}),
    ("test_spikingformer", {}),
    ("test_saformer", {}),
    ("test_spikformer", {"attention": "sdsa"}),
    ("test_spikingformer", {"attention": "sdsa"}),
    ("test_spikingformer", {"attention": "sasa"}),
    ("test_saformer", {"sasa": {"aggregate": False}}),
    ("test_saformer", {"sasa": {"dwc_kernel": 0, "tokens": 4}}),
    ("test_saformer", {"sasa": {"aggregate_input": "membrane", "tokens": 3}}),
    ("test_spikingformer", {"head": "sn_avgpool_fc"}),
    ("test_spikingformer", {"head": "fc_avgpool"}),
    ("test_spikingformer", {"head": "sn_fc_avgpool"}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for n, kw in VARIANTS]


def events(T=2, B=4, rate=0.4):
    torch.manual_seed(0)
    return torch.poisson(torch.full((T, B, 2, 32, 32), rate))  # event counts


def active(name, gain=2.0, **overrides):
    """A model calibrated to fire on random event counts (BatchNorm statistics of the input, gain 2)."""
    torch.manual_seed(0)
    model = sm.create_model(name, **overrides)
    x = events()
    return make_active(model, x, gain), x


# ---------------------------------------------------------------- shapes, gradients, registry


@pytest.mark.parametrize("name,overrides", VARIANTS, ids=IDS)
def test_shapes_and_gradients(name, overrides):
    model, x = active(name, **overrides)
    model.train()
    logits = model(x)
    assert logits.shape == (4, 10)
    static = model(torch.rand(3, 2, 32, 32))  # [B, C, H, W] repeated over T
    assert static.shape == (3, 10)
    (logits.sum() + static.sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    assert sum(float(p.grad.abs().sum()) for p in model.parameters()) > 0
    with pytest.raises(ValueError, match="expects input"):
        model(torch.zeros(2, 4, 3, 32, 32))


def test_every_variant_the_issue_names_is_registered():
    names = set(sm.list_models())
    for family in ("spikingformer", "spikformer"):
        for size in ("2_256_dvs", "4_384", "4_256", "2_384", "8_384", "8_512", "8_768", "2_64_ndigits"):
            assert f"{family}_{size}" in names
    assert {"saformer_2_256_dvs", "saformer_4_384", "saformer_2_64_ndigits", "test_saformer",
            "test_spikingformer"} <= names
    assert {"saformer", "spikformer", "spikingformer"} <= set(sm.list_families())


def test_published_parameter_counts():
    # ../shared/spec/architectures.md: Spikingformer has Spikformer's used parameters on event data
    assert sm.model_info("spikingformer_2_256_dvs")["params"] == 2_566_666
    # the authors' CIFAR code has no Q, K, V bias (Spikformer's has): 4 blocks x 3 x 384 fewer
    assert sm.model_info("spikingformer_4_384")["params"] == 9_324_730 - 4 * 3 * 384
    # Spikingformer's ImageNet models: the same counts as Spikformer's (papers: 16.81 / 29.68 / 66.34 M)
    for size in ("8_384", "8_512", "8_768"):
        assert sm.model_info(f"spikingformer_{size}")["params"] == sm.model_info(f"spikformer_{size}")["params"]


def test_family_and_config_travel_with_the_checkpoint(tmp_path):
    model = sm.create_model("test_saformer", mask={"ratio": 0.3}, sasa={"tokens": 2})
    loaded, state = load_model(save_checkpoint(tmp_path / "m.pt", model))
    assert state["family"] == "saformer" and loaded.family == "saformer" and loaded.variant == "test_saformer"
    assert loaded.config == model.config and loaded.config.sasa.tokens == 2
    assert loaded.config.mask.sites == ("attn.q", "attn.k", "attn.vector", "mlp.hidden")


# ---------------------------------------------------------------- masks


@pytest.mark.parametrize("name,overrides,defaults", [
    ("test_spikformer", {}, ("attn.q", "attn.k", "attn.scores", "mlp.hidden")),
    ("test_spikingformer", {}, ("attn.q", "attn.k", "attn.scores", "mlp.hidden")),
    ("test_spikingformer", {"attention": "sdsa"}, ("attn.q", "attn.k", "attn.kv", "mlp.hidden")),
    ("test_saformer", {}, ("attn.q", "attn.k", "attn.vector", "mlp.hidden")),
])
def test_default_sites_follow_the_attention(name, overrides, defaults):
    model = sm.create_model(name, mask={"ratio": 0.5}, **overrides)
    assert model.config.mask.sites == defaults
    enabled = {m.site for m in model.modules() if isinstance(m, SpikeMask) and m.enabled}
    assert enabled == set(defaults)
    with pytest.raises(ValueError, match="unknown mask site 'attn.nope'.*Valid sites: attn.q, attn.k"):
        sm.apply_rsm(model, site_ratios={"attn.nope": 0.5})


def _site_tensors(model, x, site):
    seen = []

    def hook(module, args, out):
        seen.append((args[0].detach(), out.detach()))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, SpikeMask) and m.site == site]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


@pytest.mark.parametrize("name,overrides", VARIANTS[:9], ids=IDS[:9])
def test_every_site_masks_exactly_its_tensor(name, overrides):
    model, x = active(name, **overrides)
    x = torch.cat([x] * 4, dim=1)
    for site in model.mask_sites:
        sm.apply_rsm(model, ratio=0.0, site_ratios={site: 0.6}, seed=1)
        pairs = _site_tensors(model, x, site)
        assert pairs, site
        before = sum(float((a != 0).sum()) for a, _ in pairs)
        after = sum(float((b != 0).sum()) for _, b in pairs)
        assert before > 200, f"{site}: too few non-zeros to judge"
        for a, b in pairs:
            kept = b != 0
            assert torch.equal(b[kept], a[kept]), f"{site}: kept values are not rescaled"
            assert not (kept & (a == 0)).any(), f"{site}: masking never creates values"
        sd = math.sqrt(0.6 * 0.4 / before)
        assert 1 - after / before == pytest.approx(0.6, abs=5 * sd), site
        others = {m.site for m in model.modules() if isinstance(m, SpikeMask) and m.enabled}
        assert others == {site}
    sm.apply_rsm(model, ratio=0.0, site_ratios={})


# ---------------------------------------------------------------- energy of the new operations


def _capture(model, x):
    seen = {}

    def rec(name):
        def hook(module, args, out):
            seen.setdefault(name, []).append((module, tuple(a.detach() for a in args)))

        return hook

    kinds = (nn.Conv2d, nn.Linear, SpikeMatmul, SpikeGate, HadamardSum, TokenPool)
    hooks = [m.register_forward_hook(rec(n)) for n, m in model.named_modules() if isinstance(m, kinds)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def naive_events(module, args) -> float:
    """An independent count of what each counted operation does with these inputs (numpy, explicit windows)."""
    if isinstance(module, nn.Conv2d):
        return naive_conv_uses(args[0] != 0, module)
    if isinstance(module, nn.Linear):
        return float((args[0] != 0).sum()) * module.out_features
    if isinstance(module, SpikeMatmul):
        a, b = args
        return float(((a != 0).double() @ (b != 0).double()).sum())
    if isinstance(module, (SpikeGate, HadamardSum)):
        a, b = (np.asarray(t != 0) for t in args)
        shape = np.broadcast_shapes(a.shape, b.shape)
        return float(np.logical_and(np.broadcast_to(a, shape), np.broadcast_to(b, shape)).sum())
    (x,) = args
    n, k = x.shape[2], module.out_tokens  # adaptive windows: [floor(i n / k), ceil((i + 1) n / k))
    nz = np.asarray(x != 0)
    return float(sum(nz[:, :, math.floor(i * n / k):math.ceil((i + 1) * n / k)].sum() for i in range(k)))


@pytest.mark.parametrize("name,overrides", VARIANTS, ids=IDS)
def test_every_layer_matches_an_independent_count(name, overrides):
    model, x = active(name, **overrides)
    rows = rows_by_name(measure_energy(model, [x]))
    captured = _capture(model, x)
    new_ops = {type(m) for calls in captured.values() for m, _ in calls} & {SpikeGate, HadamardSum, TokenPool}
    if overrides.get("attention") == "sdsa" or name == "test_saformer" or overrides.get("attention") == "sasa":
        assert new_ops, "the spike-driven attentions use gates, sums and pools"
    for layer, calls in captured.items():
        expected = sum(naive_events(m, args) for m, args in calls)
        assert rows[layer]["events"] * x.shape[1] == pytest.approx(expected), layer


def test_charging_rules_of_the_new_operations():
    model, x = active("test_saformer")
    rows = rows_by_name(measure_energy(model, [x]))
    agg = rows["blocks.0.attn.agg_q"]
    assert agg["op"] == "tokenpool" and agg["rule"].startswith("token aggregation")
    assert agg["sops"] == agg["events"] and agg["macs"] == 0
    hs = rows["blocks.0.attn.qk"]
    assert hs["op"] == "hadamardsum" and hs["encoding"] == "real"  # averages of spikes
    assert hs["macs"] == hs["dense_macs_per_step"] * 2 and hs["sops"] == 0
    gate = rows["blocks.0.attn.ak"]
    assert gate["op"] == "gate" and gate["sops"] == gate["macs"] == 0 and gate["rule"].endswith("free")
    charged = rows_by_name(measure_energy(model, [x], config=sm.energy.EnergyConfig(gates="ac")))
    assert charged["blocks.0.attn.ak"]["sops"] == charged["blocks.0.attn.ak"]["events"]
    dwc = rows["blocks.0.attn.dwc.conv"]
    assert dwc["encoding"] == "binary" and dwc["sops"] == dwc["events"]  # a depthwise conv of K's spikes


def test_additions_are_reported_outside_the_total():
    model, x = active("test_spikingformer")
    report = measure_energy(model, [x])
    adds = {a["name"]: a for a in report["additions"]}
    assert set(adds) == {"blocks.0.add_attn", "blocks.0.add_mlp"}
    assert all(a["encoding"] == "real" for a in adds.values())  # the membrane shortcut carries BN outputs
    per_step = 16 * 32  # N x D per sample and step
    assert all(0 < a["adds"] <= a["dense"] == 2 * per_step for a in adds.values())
    t = report["totals"]
    assert t["additions"] == pytest.approx(sum(a["adds"] for a in adds.values()))
    assert t["energy_mj"] == pytest.approx((t["sops"] * 0.9 + t["macs"] * 4.6) * 1e-9)  # not in the total


# ---------------------------------------------------------------- Spikingformer: synapses read only spikes


def _non_binary_synapses(report) -> set[str]:
    first = report["first_layer"]
    return {r["name"] for r in report["layers"]
            if r["op"] in ("conv2d", "linear", "matmul", "hadamardsum") and r["encoding"] != "binary"
            and r["name"] != first and r["steps"] > 1}  # steps 1: the head, after the mean over time


def test_spikingformer_synapses_read_only_spikes_random_model():
    model, x = active("test_spikingformer")
    assert _non_binary_synapses(measure_energy(model, [x])) == set()
    # the check can fail: in Spikformer the projections read the integer residual stream
    spikformer, _ = active("test_spikformer")
    assert {"blocks.0.attn.q", "blocks.0.mlp.fc1"} <= _non_binary_synapses(measure_energy(spikformer, [x]))
    # and in SAFormer only the Hadamard sum of the aggregated (averaged) Q and K is not binary
    saformer, _ = active("test_saformer")
    assert _non_binary_synapses(measure_energy(saformer, [x])) == {"blocks.0.attn.qk"}


def test_spikingformer_synapses_read_only_spikes_trained_model(ndigits_root, tmp_path):
    from torch.utils.data import DataLoader

    from spikemask.data import get_dataset
    from spikemask.train import fit, load_run_config
    from spikemask.train.evaluate import TimeFirstBatches

    cfg = load_run_config({
        "name": "sf", "out_dir": str(tmp_path), "device": "cpu", "model": {"name": "test_spikingformer"},
        "data": {"name": "ndigits", "batch_size": 16}, "optim": {"lr": 3e-3},
        "schedule": {"epochs": 1, "warmup_epochs": 0, "cooldown_epochs": 0},
        "train": {"max_train_batches": 8, "max_eval_batches": 1, "mixup_prob": 0.0},
    })
    model, _ = load_model(fit(cfg).checkpoint)
    batches = TimeFirstBatches(DataLoader(get_dataset("ndigits", split="test", T=2), batch_size=32))
    report = measure_energy(model, [next(iter(batches))])
    assert _non_binary_synapses(report) == set()
    assert report["layers"][0]["encoding"] == "integer"  # the first layer reads event counts


# ---------------------------------------------------------------- the counter's invariants, every family


@pytest.mark.parametrize("name,overrides", VARIANTS, ids=IDS)
def test_invariants_hold_for_every_family(name, overrides):
    model, x = active(name, **overrides)
    plain = measure_energy(model, [x])
    sites = list(model.mask_sites)
    # τ = 0 on every site reproduces the unmasked count exactly
    sm.apply_rsm(model, ratio=0.0, sites=sites)
    zero = measure_energy(model, [x], mask_seeds=range(2))
    assert [r["events"] for r in zero["layers"]] == [r["events"] for r in plain["layers"]]
    assert zero["totals"]["energy_mj"] == plain["totals"]["energy_mj"]
    # τ = 1 (set on the modules: the config refuses it) zeroes exactly what reads the masked tensors
    masks = [m for m in model.modules() if isinstance(m, SpikeMask) and m.site in model.default_mask_sites]
    for m in masks:
        m.ratio = 1.0
    readers = {f"{n.rpartition('.')[0]}.{f}" for n, m in model.named_modules() if isinstance(m, SpikeMask)
               and m.ratio == 1.0 for f in m.feeds}
    full = rows_by_name(measure_energy(model, [x]))  # (restores the config's masks afterwards)
    before = rows_by_name(plain)
    assert readers, "the default sites feed synapses"
    for layer in readers:
        assert full[layer]["events"] == 0, layer
    for layer in [n for n in before if n.startswith("sps.")] + ["blocks.0.attn.q", "blocks.0.attn.k"]:
        assert full[layer]["events"] == before[layer]["events"], layer  # upstream of every mask


@pytest.mark.parametrize("name,overrides", VARIANTS, ids=IDS)
def test_dense_counts_are_affine_in_T(name, overrides):
    model = sm.create_model(name, mask={"ratio": 0.5}, **overrides)
    totals = {T: dense_energy(model, T=T)["totals"] for T in (1, 2, 3)}
    for key in ("sops", "macs"):
        per_step = totals[2][key] - totals[1][key]
        assert totals[3][key] == pytest.approx(totals[1][key] + 2 * per_step, rel=1e-12), key
    if not overrides.get("head", "avgpool_fc").endswith("avgpool_fc"):  # the FC runs at every step
        return
    head = model.config.embed_dim * model.config.num_classes  # once per sample: the only constant part
    assert totals[1]["macs"] - (totals[2]["macs"] - totals[1]["macs"]) == pytest.approx(head)


# ---------------------------------------------------------------- cost against the number of tokens


def _attention_ops(name: str, side: int, **overrides) -> float:
    """Dense (data-free) counted operations of the attention mixing (projections and MLP excluded)."""
    model = sm.create_model(name, img_size=side, sps_pool=(False,) * 4, embed_dim=32, num_heads=2, **overrides)
    rows = dense_energy(model)["layers"]
    mixing = ("attn.qk", "attn.sv", "attn.kv", "attn.kv_sum", "attn.qkv", "attn.agg_q", "attn.agg_k", "attn.ak",
              "attn.dwc.conv")
    return sum(r["dense_macs_per_step"] for r in rows if r["name"].endswith(mixing))


def test_sasa_and_sdsa_cost_is_linear_and_ssa_quadratic_in_tokens():
    sides = (4, 8, 16)  # N = 16, 64, 256
    ssa = [_attention_ops("test_spikingformer", s) for s in sides]
    sdsa = [_attention_ops("test_spikingformer", s, attention="sdsa") for s in sides]
    sasa = [_attention_ops("test_saformer", s) for s in sides]
    for a, b in zip(ssa, ssa[1:]):
        assert b / a == pytest.approx(16.0)  # N x 4: N² x 16
    for cost in (sdsa, sasa):
        for a, b in zip(cost, cost[1:]):
            assert 3.9 < b / a <= 4.0  # N x 4: linear (SASA's N' x D Hadamard sum is constant)


# ---------------------------------------------------------------- the command line, every family


@pytest.mark.parametrize("name", ["test_spikingformer", "test_saformer"])
def test_train_eval_energy_from_the_command_line(name, ndigits_root, tmp_path, capsys):
    import json

    import yaml

    from spikemask.cli.main import main

    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": "r", "out_dir": str(tmp_path), "device": "cpu", "model": {"name": name, "mask": {"ratio": 0.5}},
        "data": {"name": "ndigits", "batch_size": 8}, "schedule": {"epochs": 1, "warmup_epochs": 0,
                                                                     "cooldown_epochs": 0},
        "train": {"max_train_batches": 2, "max_eval_batches": 1, "eval_mask_seeds": 2, "mixup_prob": 0.0}}))
    assert main(["-q", "train", "--config", str(cfg)]) == 0
    ckpt = tmp_path / "r" / "last.pt"
    capsys.readouterr()
    assert main(["-q", "eval", str(ckpt), "--seeds", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["model"] == name and len(res["per_seed"]) == 2 and "attn.q" in res["mask"]
    assert main(["-q", "energy", "--checkpoint", str(ckpt), "--samples", "16", "--seeds", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["totals"]["energy_mj"] > 0 and "delta" in report
    assert main(["-q", "energy", "--model", name.replace("test_", "") + "_2_256_dvs", "--dense", "--json",
                 "--mask-ratio", "0.7"]) == 0
    dense = json.loads(capsys.readouterr().out)
    assert dense["delta"]["saving_pct"] > 0
