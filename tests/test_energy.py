"""Energy counter: exact event counts against naive independent computations, and the spec's sanity rules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import spikemask as sm
from spikemask.energy import EnergyConfig, dense_energy, measure_energy
from spikemask.layers import SpikeMatmul
from spikemask.masking import SpikeMask

E_AC, E_MAC = 0.9, 4.6


# ---------------------------------------------------------------- independent references
def naive_cover_1d(n_in: int, k: int, s: int, p: int, d: int) -> list[int]:
    """How many (output position, kernel tap) pairs read input index i, by brute force."""
    n_out = (n_in + 2 * p - d * (k - 1) - 1) // s + 1
    cover = [0] * n_in
    for o in range(n_out):
        for tap in range(k):
            i = o * s - p + tap * d
            if 0 <= i < n_in:
                cover[i] += 1
    return cover


def naive_conv_uses(weights: torch.Tensor, conv: nn.Conv2d) -> float:
    """Σ weights[n, c, i, j] x (output positions using (i, j)) x (out channels fed by channel c)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    H, W = weights.shape[-2:]
    rows = torch.tensor(naive_cover_1d(H, kh, sh, ph, dh), dtype=torch.float64)
    cols = torch.tensor(naive_cover_1d(W, kw, sw, pw, dw), dtype=torch.float64)
    per_pixel = weights.double().sum(dim=(0, 1))
    return float((per_pixel * rows[:, None] * cols[None, :]).sum()) * conv.out_channels // conv.groups


def capture_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, tuple]:
    """Inputs of every conv / linear / SpikeMatmul, recorded by plain forward hooks."""
    seen: dict[str, list] = {}

    def rec(name):
        def hook(module, args, out):
            seen.setdefault(name, []).append((module, tuple(a.detach() for a in args), out.detach()))

        return hook

    hooks = [m.register_forward_hook(rec(n)) for n, m in model.named_modules()
             if isinstance(m, (nn.Conv2d, nn.Linear, SpikeMatmul))]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def rows_by_name(report):
    return {r["name"]: r for r in report["layers"]}


# ---------------------------------------------------------------- exact counts
@pytest.mark.parametrize(
    "k,s,p,d,groups", [(3, 1, 1, 1, 1), (3, 2, 1, 1, 1), (5, 2, 2, 1, 2), (3, 1, 2, 2, 1), (1, 1, 0, 1, 1)]
)
def test_conv_count_is_border_aware_and_exact(k, s, p, d, groups):
    from spikemask.energy.counting import conv_weight_uses

    torch.manual_seed(k + s + p)
    conv = nn.Conv2d(4, 6, k, s, p, dilation=d, groups=groups, bias=False)
    x = (torch.rand(3, 4, 11, 9) < 0.3).float()
    out = conv(x)
    ours = conv_weight_uses(x, conv, out, x != 0)
    assert ours == naive_conv_uses(x != 0, conv)
    # a second, different reference: a conv of the spike indicator with an all-ones kernel
    ones = nn.Conv2d(4, 6, k, s, p, dilation=d, groups=groups, bias=False)
    nn.init.ones_(ones.weight)
    with torch.no_grad():
        assert ours == pytest.approx(float(ones(x).double().sum()))
    assert ours < out.numel() * (4 // groups) * k * k, "padding taps are not counted as operations"


def test_every_layer_of_a_model_matches_naive_counts(active_tiny):
    model, x = active_tiny
    report = measure_energy(model, [x])
    rows = rows_by_name(report)
    n = x.shape[1]
    for name, calls in capture_inputs(model, x).items():
        expected = 0.0
        for module, args, _ in calls:
            if isinstance(module, nn.Conv2d):
                expected += naive_conv_uses(args[0] != 0, module)
            elif isinstance(module, nn.Linear):
                expected += float((args[0] != 0).sum()) * module.out_features
            else:
                a, b = args
                expected += float(((a != 0).double() @ (b != 0).double()).sum())
        assert rows[name]["events"] * n == pytest.approx(expected), name


def test_encodings_and_charging_rules(active_tiny):
    model, x = active_tiny
    report = measure_energy(model, [x])
    rows = rows_by_name(report)
    assert rows["sps.stages.0.conv"]["encoding"] == "integer"  # event counts
    assert rows["sps.stages.0.conv"]["rule"].startswith("first layer")
    assert rows["sps.stages.0.conv"]["macs"] == rows["sps.stages.0.conv"]["dense_macs_per_step"] * 2  # T = 2
    assert rows["blocks.0.attn.q"]["encoding"] == "integer"  # the spike + spike residual stream
    assert rows["blocks.0.attn.q"]["sops"] == rows["blocks.0.attn.q"]["value_weighted"]
    assert rows["blocks.0.attn.q"]["value_weighted"] > rows["blocks.0.attn.q"]["events"]
    for name in ("sps.stages.1.conv", "blocks.0.attn.proj", "blocks.0.mlp.fc2", "blocks.0.attn.qk"):
        assert rows[name]["encoding"] == "binary", name
        assert rows[name]["sops"] == rows[name]["events"] and rows[name]["macs"] == 0
    assert rows["blocks.0.attn.sv"]["encoding"] == "binary", "integer scores gated by binary V are ACs"
    assert rows["head"]["encoding"] == "real" and rows["head"]["macs"] == rows["head"]["dense_macs_per_step"]


@pytest.mark.parametrize("policy", ["mac_nonzero", "mac_dense"])
def test_integer_input_conventions(active_tiny, policy):
    model, x = active_tiny
    rows = rows_by_name(measure_energy(model, [x], config=EnergyConfig(integer_inputs=policy)))
    q = rows["blocks.0.attn.q"]
    assert q["sops"] == 0
    expected = q["events"] if policy == "mac_nonzero" else q["dense_macs_per_step"] * q["steps"]
    assert q["macs"] == pytest.approx(expected)


def test_first_layer_as_input_and_pooling_excluded(active_tiny):
    model, x = active_tiny
    rows = rows_by_name(measure_energy(model, [x], config=EnergyConfig(first_layer="as_input", pooling="exclude")))
    first = rows["sps.stages.0.conv"]
    assert first["sops"] == first["value_weighted"] and first["macs"] == 0  # integer counts, n ACs each
    for name, row in rows.items():
        if row["op"] in ("maxpool2d", "meanpool"):
            assert row["sops"] == 0 and row["macs"] == 0, name


def test_totals_follow_from_the_layer_table(active_tiny):
    model, x = active_tiny
    report = measure_energy(model, [x])
    t = report["totals"]
    sops = sum(r["sops"] for r in report["layers"])
    macs = sum(r["macs"] for r in report["layers"])
    assert t["sops"] == pytest.approx(sops) and t["macs"] == pytest.approx(macs)
    assert t["energy_mj"] == pytest.approx((E_AC * sops + E_MAC * macs) * 1e-9)
    assert sum(r["share"] for r in report["layers"]) == pytest.approx(1.0)
    assert t["ann_energy_mj"] == pytest.approx(E_MAC * t["ann_macs"] * 1e-9)
    lif_updates = sum(r["updates"] for r in report["neurons"])
    assert t["neuron_updates"] == lif_updates
    assert t["neuron_energy_mj"] == pytest.approx(5.5 * lif_updates * 1e-9)


def test_ann_baseline_equals_an_independent_mac_count():
    model = sm.create_model("test_spikformer")
    report = dense_energy(model)
    # test_spikformer: 2x32x32 in, channels 2-4-8-16-32, pools after stages 2-4, N = 16 tokens, D = 32, 2 heads
    conv = 32 * 32 * 4 * 2 * 9 + 32 * 32 * 8 * 4 * 9 + 16 * 16 * 16 * 8 * 9 + 8 * 8 * 32 * 16 * 9 + 4 * 4 * 32 * 32 * 9
    pools = 16 * 16 * 8 * 9 + 8 * 8 * 16 * 9 + 4 * 4 * 32 * 9
    N, D, heads, d = 16, 32, 2, 16
    attn = 4 * N * D * D + 2 * heads * N * N * d
    mlp = 2 * N * D * 4 * D
    head = N * D + D * 10  # token/time mean (one add per element per step) and the linear head
    assert report["totals"]["ann_macs"] == conv + pools + attn + mlp + head
    assert report["totals"]["dense_macs_per_step"] == report["totals"]["ann_macs"]


def test_dense_count_is_deterministic_and_matches_the_formula():
    model = sm.create_model("test_spikformer", mask={"ratio": 0.5})
    a, b = dense_energy(model), dense_energy(model)
    assert a["totals"] == b["totals"]
    rows = rows_by_name(a)
    T = 2
    conv = model.sps.stages[1].conv
    full = naive_conv_uses(torch.ones(1, 4, 32, 32), conv)
    assert rows["sps.stages.1.conv"]["sops"] == T * full  # every input firing, border-aware
    assert rows["blocks.0.attn.q"]["sops"] == T * 16 * 32 * 32  # unmasked consumer
    assert rows["blocks.0.attn.qk"]["sops"] == pytest.approx(T * 2 * 16 * 16 * 16 * 0.25)  # Q and K: (1 - τ)²
    assert rows["blocks.0.attn.sv"]["sops"] == pytest.approx(T * 2 * 16 * 16 * 16 * 0.5)
    assert rows["blocks.0.mlp.fc2"]["sops"] == pytest.approx(T * 16 * 128 * 32 * 0.5)
    assert {m["site"]: m["realised"] for m in a["masks"]}["attn.q"] == 0.5


# ---------------------------------------------------------------- the spec's sanity properties
def test_tau_zero_reproduces_the_unmasked_count_exactly(active_tiny):
    model, x = active_tiny
    plain = measure_energy(model, [x])
    sm.apply_rsm(model, ratio=0.0, sites=["attn.q", "attn.k", "attn.scores", "mlp.hidden", "mlp.hidden_pre"])
    zero = measure_energy(model, [x], mask_seeds=range(3))
    assert zero["totals"]["energy_mj"] == plain["totals"]["energy_mj"]
    assert [r["events"] for r in zero["layers"]] == [r["events"] for r in plain["layers"]]


def test_tau_one_zeroes_exactly_the_masked_ops_and_nothing_upstream(active_tiny):
    model, x = active_tiny
    plain = rows_by_name(measure_energy(model, [x]))
    for m in model.modules():  # τ = 1 is refused by the config; set it on the modules for this check
        if isinstance(m, SpikeMask) and m.site in ("attn.q", "attn.k", "attn.scores", "mlp.hidden"):
            m.ratio = 1.0
    full = rows_by_name(measure_energy(model, [x]))
    for name in ("blocks.0.attn.qk", "blocks.0.attn.sv", "blocks.0.mlp.fc2"):
        assert plain[name]["sops"] > 0 and full[name]["sops"] == 0, name
    upstream = [n for n in plain if n.startswith("sps.")] + ["blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.attn.v"]
    for name in upstream:
        assert full[name]["events"] == plain[name]["events"], name


def test_counts_are_linear_in_T():
    dense = {T: rows_by_name(dense_energy(sm.create_model("test_spikformer"), T=T)) for T in (4, 8)}
    for name, row in dense[4].items():
        factor = 2 if row["steps"] > 1 else 1  # the head runs once per sample, on the pooled vector
        assert dense[8][name]["sops"] + dense[8][name]["macs"] == factor * (row["sops"] + row["macs"]), name
    # measured: the same frames repeated (T 8 -> 16) through a synaptic layer double exactly
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(2, 8, 3, 1, 1, bias=False))
    from spikemask.energy import EnergyCounter

    x8 = (torch.rand(8 * 3, 2, 16, 16) < 0.2).float()
    counts = []
    for x in (x8, torch.cat([x8, x8])):
        with EnergyCounter(conv) as c, torch.no_grad():
            c._batch = (x.shape[0] // 3, 3)  # T x B folded, as Spikformer folds it
            conv[0](x)
        counts.append(c.layers["0"].exact)
    assert counts[1] == 2 * counts[0]


def test_binary_layers_never_exceed_T_dense_and_rates_are_rates(active_tiny):
    model, x = active_tiny
    for row in measure_energy(model, [x])["layers"]:
        assert 0.0 <= row["input_rate"] <= 1.0
        if row["encoding"] == "binary":
            assert row["events"] <= row["steps"] * row["dense_macs_per_step"], row["name"]


def test_masking_q_and_k_cuts_coincidences_by_one_minus_tau_squared(active_tiny):
    model, x = active_tiny
    x = torch.cat([x] * 4, dim=1)  # more samples: a tighter estimate
    plain = rows_by_name(measure_energy(model, [x]))["blocks.0.attn.qk"]["events"]
    sm.apply_rsm(model, ratio=0.5, sites=["attn.q", "attn.k"])
    masked = rows_by_name(measure_energy(model, [x], mask_seeds=range(6)))["blocks.0.attn.qk"]["events"]
    assert plain * x.shape[1] > 5000, "enough coincidences for a 12 % tolerance"
    assert masked / plain == pytest.approx(0.25, rel=0.12)


def test_saving_never_exceeds_the_ops_reading_masked_tensors(active_tiny):
    model, x = active_tiny
    plain = measure_energy(model, [x])
    sm.apply_rsm(model, ratio=0.5, sites=["mlp.hidden"])  # last synaptic consumer: upstream rates fixed
    masked = measure_energy(model, [x], mask_seeds=range(3))
    saved_mj = plain["totals"]["energy_mj"] - masked["totals"]["energy_mj"]
    fc2_plain = rows_by_name(plain)["blocks.0.mlp.fc2"]["sops"]
    fc2_masked = rows_by_name(masked)["blocks.0.mlp.fc2"]["sops"]
    assert 0 < saved_mj <= E_AC * fc2_plain * 1e-9
    assert saved_mj == pytest.approx(E_AC * (fc2_plain - fc2_masked) * 1e-9)


def test_realised_ratios_and_seed_statistics(active_tiny):
    model, x = active_tiny
    sm.apply_rsm(model, ratio=0.5)
    report = measure_energy(model, [x], mask_seeds=range(4))
    for m in report["masks"]:
        if m["site"] in ("attn.q", "attn.k", "mlp.hidden", "attn.scores"):
            assert m["nominal"] == 0.5 and abs(m["realised"] - 0.5) < 0.1, m
    assert report["totals"]["energy_mj_std"] > 0, "different mask seeds give different counts"
    again = measure_energy(model, [x], mask_seeds=range(4))
    assert again["totals"]["energy_mj"] == report["totals"]["energy_mj"], "seeded masks replay"
    assert model.config.mask.seed is None, "measuring restores the model's own mask settings"
    fc2 = rows_by_name(report)["blocks.0.mlp.fc2"]["masks"]
    assert [m["name"] for m in fc2] == ["blocks.0.mlp.mask_hidden"]


def test_papers_formula_columns(active_tiny):
    model, x = active_tiny
    sm.apply_rsm(model, ratio=0.5, sites=["mlp.hidden"])
    report = measure_energy(model, [x])
    rows = rows_by_name(report)
    first = rows["sps.stages.0.conv"]
    rest = [r for r in report["layers"] if r["name"] != first["name"] and r["op"] not in ("maxpool2d", "meanpool")]
    plain = (E_MAC * first["dense_macs_per_step"] * 2 + E_AC * sum(r["fr_T_macs"] for r in rest)) * 1e-9
    extra = plain - E_AC * 0.5 * rows["blocks.0.mlp.fc2"]["fr_T_macs"] * 1e-9
    assert report["totals"]["papers_formula_energy_mj"] == pytest.approx(plain)
    assert report["totals"]["papers_formula_extra_mask_factor_energy_mj"] == pytest.approx(extra)
    for r in rest:  # binary linear layers: the rate formula is exact
        if r["op"] == "linear" and r["encoding"] == "binary":
            assert r["fr_T_macs"] == pytest.approx(r["events"])


def test_cross_check_with_spikingjelly_synop_counter(active_tiny):
    op_counter = pytest.importorskip("spikingjelly.activation_based.op_counter")
    model, x = active_tiny
    rows = rows_by_name(measure_energy(model, [x]))
    n = x.shape[1]
    compared = 0
    for name, calls in capture_inputs(model, x).items():
        all_binary = all(bool(((a == 0) | (a == 1)).all()) for _, args, _ in calls for a in args)
        counter = op_counter.SynOpCounter()
        with op_counter.DispatchCounterMode([counter]), torch.no_grad():
            for module, args, _ in calls:
                module(*args)
        if all_binary:  # where both rules apply they must agree exactly
            assert counter.get_total() == pytest.approx(rows[name]["events"] * n), name
            compared += 1
        elif name.endswith("attn.sv"):
            # integer scores x binary V: SpikingJelly charges nnz(V) x N adds, zero scores included;
            # we skip the zero scores (that is where masking the scores saves anything)
            (_, (scores, v), _), = calls
            assert counter.get_total() == float((v != 0).sum()) * scores.shape[-2]
            assert rows[name]["events"] * n < counter.get_total()
    assert compared >= 7  # SPS convs 1-3, RPE conv, Q·Kᵀ, proj, fc2


def test_measure_needs_samples_and_seeds():
    model = sm.create_model("test_spikformer", mask={"ratio": 0.5})
    with pytest.raises(ValueError, match="no samples"):
        measure_energy(model, [])
    with pytest.raises(ValueError, match="mask_seeds"):
        measure_energy(model, [torch.zeros(2, 1, 2, 32, 32)], mask_seeds=[])
    assert math.isfinite(measure_energy(model, [torch.zeros(2, 1, 2, 32, 32)])["totals"]["energy_mj"])


def test_papers_unmasked_energy_exceeds_its_own_formula_maximum():
    """docs/paper_discrepancies.md, point 1: checked by hand-computing the formula with fr = 1."""
    T, N, D, heads = 16, 64, 256, 16
    fl1 = 128 * 128 * 32 * 2 * 9 * T  # first conv: MACs at every step
    sps = 64 * 64 * 64 * 32 * 9 + 32 * 32 * 128 * 64 * 9 + 16 * 16 * 256 * 128 * 9 + 8 * 8 * 256 * 256 * 9
    block = 4 * N * D * D + 2 * heads * N * N * (D // heads) + 2 * N * D * 4 * D
    head = D * 10  # the linear head, once per sample (the token mean is pooling: not in the formula)
    bound_mj = (E_MAC * fl1 + E_AC * (T * (sps + 2 * block) + head)) * 1e-9
    ours = dense_energy(sm.create_model("spikformer_2_256_dvs"))["totals"]["papers_formula_energy_mj"]
    assert ours == pytest.approx(bound_mj, rel=1e-9)
    assert bound_mj < 8.20 * 0.75, "Table 1 of 000 reports 8.20 mJ for this model at T = 16"


# ---------------------------------------------------------------- T = 1, mask draws, masks that saw nothing
@pytest.mark.parametrize("variant", ["test_spikformer", "spikformer_2_256_dvs"])
def test_dense_count_is_affine_in_T_from_T_equals_1(variant):
    """E(T) = T·a + b exactly, b the head (run once per sample, after the time mean, as real MACs)."""
    reports = {T: dense_energy(sm.create_model(variant, mask={"ratio": 0.5}), T=T) for T in (1, 2, 3, 4)}
    cfg = sm.create_model(variant).config
    head = cfg.embed_dim * cfg.num_classes  # the linear head's MACs, the constant b / E_MAC
    one = rows_by_name(reports[1])
    assert one["head"]["steps"] == 1 and one["head"]["encoding"] == "real" and one["head"]["macs"] == head
    assert one["blocks.0.mlp.fc2"]["encoding"] == "binary", "a spiking layer at T = 1 is still accumulate-only"
    # masks count at T = 1 too: fc2 reads hidden spikes kept with probability 0.5
    hidden = cfg.grid ** 2 * int(cfg.embed_dim * cfg.mlp_ratio)
    assert one["blocks.0.mlp.fc2"]["sops"] == hidden * cfg.embed_dim * 0.5
    a_sops, a_macs = reports[1]["totals"]["sops"], reports[1]["totals"]["macs"] - head
    for T, report in reports.items():
        t = report["totals"]
        assert t["sops"] == T * a_sops and t["macs"] == T * a_macs + head, T
        assert t["energy_mj"] == pytest.approx((T * (E_AC * a_sops + E_MAC * a_macs) + E_MAC * head) * 1e-9,
                                               rel=1e-12)
        assert t["neuron_updates"] == T * reports[1]["totals"]["neuron_updates"]
        assert t["ann_macs"] == reports[1]["totals"]["ann_macs"], "the ANN baseline does not depend on T"
        rows = rows_by_name(report)
        assert {r["steps"] for n, r in rows.items() if n != "head"} == {T} and rows["head"]["steps"] == 1
        for name, row in rows.items():
            if name != "head":
                assert (row["sops"], row["macs"], row["rule"]) == (T * one[name]["sops"], T * one[name]["macs"],
                                                                   one[name]["rule"]), (name, T)


def test_measured_counts_at_T_equals_1_batch_1(active_tiny):
    model, x = active_tiny
    x = x[:1, :1]  # [T=1, B=1, 2, 32, 32]
    report = measure_energy(model, [x])
    rows = rows_by_name(report)
    assert report["T"] == 1 and report["samples"] == 1
    for name, calls in capture_inputs(model, x).items():  # exact counts against the naive references
        (module, args, _), = calls
        if isinstance(module, nn.Conv2d):
            expected = naive_conv_uses(args[0] != 0, module)
        elif isinstance(module, nn.Linear):
            expected = float((args[0] != 0).sum()) * module.out_features
        else:
            expected = float(((args[0] != 0).double() @ (args[1] != 0).double()).sum())
        assert rows[name]["events"] == expected, name
        assert rows[name]["steps"] == 1, name
    assert rows["sps.stages.1.conv"]["encoding"] == "binary"
    assert rows["head"]["encoding"] == "real" and rows["head"]["macs"] == 32 * 10
    dense = rows_by_name(dense_energy(model, T=1))
    for name, row in rows.items():
        if row["rule"].startswith("1 AC"):  # binary synaptic layers: never above the dense count
            assert 0 < row["sops"] <= dense[name]["sops"], name


def test_a_silent_network_still_pays_its_head_once_per_sample():
    """The head's input is a time average: real by construction, even when it happens to be all zero."""
    model = sm.create_model("test_spikformer").eval()  # untrained, BN at identity: zeros stay silent
    for T in (1, 2):
        report = measure_energy(model, [torch.zeros(T, 1, 2, 32, 32)])
        head = rows_by_name(report)["head"]
        assert report["totals"]["spikes"] == 0
        assert (head["encoding"], head["steps"], head["macs"]) == ("real", 1, 32 * 10), T


SITE_DRAWS = {"attn.q": 16 * 32, "attn.k": 16 * 32, "attn.scores": 2 * 16 * 16, "mlp.hidden": 16 * 128}  # per step


@pytest.mark.parametrize("draw", ["all", "arriving"])
@pytest.mark.parametrize("shared", [False, True])
def test_mask_draws_equal_the_random_numbers_actually_drawn(active_tiny, monkeypatch, draw, shared):
    model, x = active_tiny
    sm.apply_rsm(model, ratio=0.5, share_over_time=shared, draw=draw)
    drawn = []
    rand = torch.rand

    def counting_rand(*args, **kwargs):
        out = rand(*args, **kwargs)
        drawn.append(out.numel())
        return out

    monkeypatch.setattr(torch, "rand", counting_rand)
    report = measure_energy(model, [x], mask_seeds=range(2))
    monkeypatch.undo()
    n, T = x.shape[1], x.shape[0]
    t = report["totals"]
    assert t["mask_draws"] * n * 2 == pytest.approx(sum(drawn))  # two seeds, each pass over the data
    assert t["mask_draw_energy_mj"] == pytest.approx(0.4 * t["mask_draws"] * 1e-9)
    by_site = {m["site"]: m for m in report["masks"]}
    all_draws = sum(SITE_DRAWS.values()) * (1 if shared else T)
    if draw == "all":
        assert t["mask_draws"] == all_draws
        assert by_site["attn.scores"]["draws"] == SITE_DRAWS["attn.scores"] * (1 if shared else T)
    else:
        assert 0 < t["mask_draws"] < all_draws
        if not shared:  # one draw per arriving spike
            for m in report["masks"]:
                assert m["draws"] == pytest.approx(m["nnz_before"] if m["active"] else 0.0), m["name"]
    assert by_site["mlp.hidden_pre"]["draws"] == 0, "a mask at τ = 0 draws nothing"
    assert all(m["draw"] == draw and m["shared_over_time"] == shared for m in report["masks"])


def test_mask_draws_dense_and_left_out_of_the_compute_total():
    model = sm.create_model("spikformer_2_256_dvs", mask={"ratio": 0.7})
    report = dense_energy(model, config=EnergyConfig(e_rng_pj=1.0))
    t = report["totals"]
    per_block = 2 * 64 * 256 + 16 * 64 * 64 + 64 * 1024  # Q, K; scores [H, N, N]; hidden [N, 4D]
    assert t["mask_draws"] == 16 * 2 * per_block == 5_242_880
    assert t["mask_draw_energy_mj"] == pytest.approx(5_242_880e-9)
    assert t["energy_mj"] == pytest.approx(sum(r["energy_pj"] for r in report["layers"]) * 1e-9)
    sm.apply_rsm(model, draw="arriving")  # dense: every element counts as an arriving spike
    assert dense_energy(model)["totals"]["mask_draws"] == 5_242_880
    with pytest.raises(ValueError, match="e_rng_pj"):
        EnergyConfig(e_rng_pj=-1.0)


def test_realised_ratio_is_none_when_a_mask_saw_no_spike(active_tiny):
    from spikemask.cli.render import render_energy
    from spikemask.energy import EnergyCounter, build_report, combine_reports

    silent = sm.create_model("test_spikformer", mask={"ratio": 0.5}).eval()
    report = measure_energy(silent, [torch.zeros(1, 1, 2, 32, 32)], mask_seeds=range(2))
    q = next(m for m in report["masks"] if m["site"] == "attn.q")
    assert q["nnz_before"] == 0 and q["realised"] is None, "no spike to mask: not 'mask off'"
    assert rows_by_name(report)["blocks.0.attn.qk"]["masks"][0]["realised"] is None
    assert "q:0.5→n/a" in render_energy(report)

    model, x = active_tiny
    sm.apply_rsm(model, ratio=0.5)

    def one_pass(seed, inputs):
        model.reseed_masks(seed)
        with EnergyCounter(model) as counter, torch.no_grad():
            model(inputs)
        return build_report(counter, EnergyConfig())

    # a pass that reaches the Q mask, and one in which no spike does (the Q projection silenced)
    seen = one_pass(0, x)
    with torch.no_grad():
        model.blocks[0].attn.q_bn.bias.fill_(-100.0)
    blind = one_pass(1, x)
    def q_realised(report):
        return next(m for m in report["masks"] if m["name"] == "blocks.0.attn.mask_q")["realised"]

    assert q_realised(blind) is None and 0.3 < q_realised(seen) < 0.7
    merged = combine_reports([seen, blind])
    assert q_realised(merged) == q_realised(seen), "the mean over the seeds whose mask saw spikes"
    assert rows_by_name(merged)["blocks.0.attn.qk"]["masks"][0]["realised"] == q_realised(seen)
    assert q_realised(combine_reports([blind, blind])) is None


def test_paper_discrepancies_figures():
    """Every figure docs/paper_discrepancies.md cites, as `spikemask energy --dense` prints it."""
    def dense(T, ratio=0.0):
        report = dense_energy(sm.create_model("spikformer_2_256_dvs", mask={"ratio": ratio}), T=T)
        return report["totals"], rows_by_name(report)

    for T, bound, first in [(8, "3.005", "347288.37"), (10, "3.756", "434110.46"), (16, "6.01", "694576.74")]:
        t, rows = dense(T)
        assert f"{t['papers_formula_energy_mj']:.4g}" == bound, T
        assert f"{rows['sps.stages.0.conv']['energy_pj'] / 1e3:.2f}" == first, T
        reading = sum(r["share"] for r in rows.values() if r["masks"])
        assert f"{100 * reading:.2f}" == "9.17", T
    bound = t["papers_formula_energy_mj"]
    assert (round(8.20 / bound, 2), round(9.92 / bound, 2)) == (1.36, 1.65)  # Tables 1 and 2 of 000 at T = 16
    masked, _ = dense(16, 0.7)
    assert (f"{t['energy_mj']:.4g}", f"{masked['energy_mj']:.4g}") == ("5.931", "5.544")
    assert f"{100 * (1 - masked['energy_mj'] / t['energy_mj']):.2f}" == "6.52"
    assert round((t["sops"] + t["macs"] - masked["sops"] - masked["macs"]) / 1e6) == 430
    assert masked["mask_draws"] == 5_242_880
