"""Random Spike Masking: the pure function, the module, its config, and its place in Spikformer."""

from __future__ import annotations

import math

import pytest
import torch

import spikemask as sm
from spikemask.masking import MaskConfig, SpikeMask, random_spike_mask


def _binary(shape, p=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).float()


@pytest.mark.parametrize("ratio", [0.2, 0.5, 0.7])
def test_keep_probability_and_no_rescaling(ratio):
    x = torch.full((4, 64, 1000), 3.0)  # non-binary values reveal any rescaling
    y = random_spike_mask(x, ratio, generator=torch.Generator().manual_seed(1))
    kept = (y != 0).float().mean().item()
    n = x.numel()
    assert abs(kept - (1 - ratio)) < 5 * math.sqrt(ratio * (1 - ratio) / n)
    assert set(y.unique().tolist()) <= {0.0, 3.0}, "RSM must not rescale the survivors (unlike dropout)"


def test_ratio_zero_is_identity_and_one_drops_everything():
    x = _binary((3, 2, 50))
    assert random_spike_mask(x, 0.0) is x
    assert torch.count_nonzero(random_spike_mask(x, 1.0)) == 0


@pytest.mark.parametrize("bad", [-0.1, 1.01, float("nan")])
def test_pure_function_refuses_ratios_outside_unit_interval(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        random_spike_mask(torch.ones(2, 2), bad)


def test_per_step_masks_differ_and_shared_masks_do_not():
    x = torch.ones(6, 2, 500)
    per_step = random_spike_mask(x, 0.5, generator=torch.Generator().manual_seed(0))
    shared = random_spike_mask(x, 0.5, share_over_time=True, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(per_step[0], per_step[1])
    for t in range(1, 6):
        assert torch.equal(shared[0], shared[t])
    assert 0.4 < (shared[0] != 0).float().mean() < 0.6


def test_seeded_generator_is_reproducible():
    x = _binary((4, 3, 100))
    a = random_spike_mask(x, 0.5, generator=torch.Generator().manual_seed(7))
    b = random_spike_mask(x, 0.5, generator=torch.Generator().manual_seed(7))
    c = random_spike_mask(x, 0.5, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("bad", [-0.2, 1.0, 1.5, "0.5", True])
def test_mask_config_refuses_ratios_outside_half_open_interval(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        MaskConfig(ratio=bad)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        MaskConfig(site_ratios={"attn.q": bad})


def test_ratio_for_site_overrides_and_describe():
    cfg = MaskConfig(ratio=0.5, sites=("attn.q", "attn.k"), site_ratios={"mlp.hidden": 0.2, "attn.k": 0.7})
    assert cfg.ratio_for("attn.q") == 0.5
    assert cfg.ratio_for("attn.k") == 0.7  # per-site value wins
    assert cfg.ratio_for("mlp.hidden") == 0.2  # named in site_ratios only
    assert cfg.ratio_for("attn.scores") == 0.0
    assert cfg.active and not MaskConfig().active
    text = cfg.describe()
    assert "τ=0.5 on attn.q" in text and "τ=0.7 on attn.k" in text and "τ=0.2 on mlp.hidden" in text


def test_module_modes_and_repr():
    m = SpikeMask("attn.q")
    m.configure(MaskConfig(ratio=0.5, sites=("attn.q",), mode="train"))
    x = torch.ones(2, 3, 400)
    m.train()
    assert torch.count_nonzero(m(x)) < x.numel()
    m.eval()
    assert torch.equal(m(x), x), "mode='train' must not mask at inference"
    m.configure(MaskConfig(ratio=0.5, sites=("attn.q",), mode="always", share_over_time=True, seed=3))
    assert torch.count_nonzero(m(x)) < x.numel(), "mode='always' masks at inference (the papers' RSM)"
    text = repr(m)
    assert "site='attn.q'" in text and "ratio=0.5" in text and "mode=always" in text and "shared over T" in text


def test_spikformer_masks_every_named_site_and_nothing_else():
    model = sm.create_model("test_spikformer", mask={"ratio": 0.5, "sites": ["attn.q", "attn.scores"]})
    ratios = {m.site: m.ratio for m in model.modules() if isinstance(m, SpikeMask)}
    assert ratios == {"attn.q": 0.5, "attn.k": 0.0, "attn.scores": 0.5, "mlp.hidden": 0.0, "mlp.hidden_pre": 0.0,
                      "sps.conv1": 0.0, "sps.conv2": 0.0, "sps.conv3": 0.0, "sps.conv4": 0.0}
    assert "ratio=0.5" in repr(model) and "τ=0.5 on attn.q, attn.scores" in repr(model)


def test_unknown_site_lists_valid_ones():
    with pytest.raises(ValueError, match="attn.scores") as err:
        sm.create_model("test_spikformer", mask={"ratio": 0.5, "sites": ["attn.score"]})
    assert "Did you mean 'attn.scores'" in str(err.value)
    model = sm.create_model("test_spikformer")
    with pytest.raises(ValueError, match="Valid sites"):
        sm.apply_rsm(model, ratio=0.2, sites=["mlp.hiden"])


def test_apply_rsm_updates_config_and_modules():
    model = sm.create_model("test_spikformer")
    sm.apply_rsm(model, ratio=0.7, sites=["mlp.hidden"], share_over_time=True)
    assert model.config.mask.ratio == 0.7 and model.config.mask.sites == ("mlp.hidden",)
    assert model.config.mask.share_over_time
    hidden = [m for m in model.modules() if isinstance(m, SpikeMask) and m.site == "mlp.hidden"]
    assert hidden and all(m.ratio == 0.7 and m.share_over_time for m in hidden)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        sm.apply_rsm(model, ratio=1.0)
    assert model.config.mask.ratio == 0.7, "a refused change leaves the model as it was"
    sm.apply_rsm(model, sites="attn.q")  # a single site as a string
    assert model.config.mask.sites == ("attn.q",)


def _forward_capturing(model, x, names):
    """Run ``model(x)`` without gradients; return ``{name: (args, output)}`` of the named submodules."""
    seen = {}
    mods = dict(model.named_modules())

    def record(name):
        def hook(module, args, out):
            seen[name] = (args, out)  # returns None: the output is left as it is

        return hook

    hooks = [mods[n].register_forward_hook(record(n)) for n in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def test_scores_mask_acts_on_the_qk_product_consumed_by_sv(active_tiny):
    model, x = active_tiny
    sm.apply_rsm(model, ratio=0.5, sites=["attn.scores"], seed=0)
    seen = _forward_capturing(model, x, ["blocks.0.attn.qk", "blocks.0.attn.sv"])
    scores = seen["blocks.0.attn.qk"][1]
    consumed = seen["blocks.0.attn.sv"][0][0]
    assert consumed.shape == scores.shape  # [T, B, H, N, N]
    kept = consumed != 0
    assert torch.equal(consumed[kept], scores[kept]), "surviving scores are unchanged (no rescaling)"
    realised = 1 - kept.sum().item() / (scores != 0).sum().item()
    assert 0.4 < realised < 0.6


def test_hidden_pre_masks_bn_output_before_the_lif(active_tiny):
    model, x = active_tiny
    sm.apply_rsm(model, ratio=0.5, sites=["mlp.hidden_pre"], seed=0)
    seen = _forward_capturing(model, x, ["blocks.0.mlp.fc1_bn", "blocks.0.mlp.fc1_lif"])
    bn_out = seen["blocks.0.mlp.fc1_bn"][1]
    lif_in = seen["blocks.0.mlp.fc1_lif"][0][0]
    zeroed = (lif_in == 0) & (bn_out != 0)
    assert 0.4 < zeroed.float().mean().item() < 0.6
    assert torch.equal(lif_in[lif_in != 0], bn_out[lif_in != 0])


def test_masks_are_active_in_training_and_inference_by_default(active_tiny):
    model, x = active_tiny
    sm.apply_rsm(model, ratio=0.5, sites=["attn.q"])
    for training in (True, False):
        model.train(training)
        (inp,), out = _forward_capturing(model, x, ["blocks.0.attn.mask_q"])["blocks.0.attn.mask_q"]
        assert out.sum() < inp.sum(), f"mask inactive with training={training}"


def test_seeded_masks_give_reproducible_inference(active_tiny):
    model, x = active_tiny
    sm.apply_rsm(model, ratio=0.5, seed=11)
    with torch.no_grad():
        a = model(x)
        model.reseed_masks(11)
        b = model(x)
        model.reseed_masks(12)
        c = model(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# ---------------------------------------------------------------- drawing only where spikes arrive
@pytest.mark.parametrize("ratio", [0.3, 0.7])
def test_arriving_draws_keep_each_spike_with_probability_one_minus_tau(ratio):
    x = _binary((4, 8, 2000), p=0.2) * 2.0  # values other than 1 reveal any rescaling
    y = random_spike_mask(x, ratio, draw="arriving", generator=torch.Generator().manual_seed(3))
    n = int((x != 0).sum())
    kept = int((y != 0).sum())
    assert abs(kept / n - (1 - ratio)) < 5 * math.sqrt(ratio * (1 - ratio) / n)  # 5 binomial std
    assert not bool(((y != 0) & (x == 0)).any()), "masking never creates a spike"
    assert torch.equal(y[y != 0], x[y != 0])


def test_arriving_draws_are_seeded_and_draw_one_number_per_spike():
    x = _binary((3, 2, 300), p=0.3)
    a = random_spike_mask(x, 0.5, draw="arriving", generator=torch.Generator().manual_seed(5))
    b = random_spike_mask(x, 0.5, draw="arriving", generator=torch.Generator().manual_seed(5))
    c = random_spike_mask(x, 0.5, draw="arriving", generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    g = torch.Generator().manual_seed(5)
    random_spike_mask(x, 0.5, draw="arriving", generator=g)
    after = torch.Generator().manual_seed(5)
    torch.rand(int((x != 0).sum()), generator=after)
    assert torch.equal(g.get_state(), after.get_state()), "exactly nnz(x) random numbers drawn"
    # on an all-ones tensor every element arrives: the same numbers, in the same order, as drawing all
    ones = torch.ones(3, 2, 300)
    assert torch.equal(random_spike_mask(ones, 0.5, draw="arriving", generator=torch.Generator().manual_seed(5)),
                       random_spike_mask(ones, 0.5, generator=torch.Generator().manual_seed(5)))


def test_arriving_draws_shared_over_time_keep_a_position_at_every_step():
    x = _binary((6, 4, 500), p=0.3)
    y = random_spike_mask(x, 0.5, draw="arriving", share_over_time=True, generator=torch.Generator().manual_seed(0))
    kept_somewhere = ((y != 0).any(dim=0))  # [B, ...]
    fired = x != 0
    assert torch.equal(y != 0, fired & kept_somewhere), "a kept position keeps every spike of every step"
    g = torch.Generator().manual_seed(0)
    random_spike_mask(x, 0.5, draw="arriving", share_over_time=True, generator=g)
    after = torch.Generator().manual_seed(0)
    torch.rand(int(fired.any(dim=0).sum()), generator=after)
    assert torch.equal(g.get_state(), after.get_state()), "one number per position that fires at some step"
    assert 0.4 < kept_somewhere.sum() / fired.any(dim=0).sum() < 0.6


@pytest.mark.parametrize("share", [False, True], ids=["per_step", "shared"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_arriving_draws_on_cpu_equal_the_boolean_indexing_form(share, dtype):
    """The CPU path (NumPy positions, dropped spikes zeroed in a copy) gives the masks of the plain form:
    one number per arriving element in row-major order, the mask a multiply; counts, strided input, empty."""
    def plain(x, gen):
        arriving = (x != 0).any(dim=0) if share else x != 0
        keep = torch.zeros(arriving.shape, dtype=torch.bool)
        keep[arriving] = torch.rand(int(arriving.sum()), generator=gen) >= 0.6
        return x * keep.to(x.dtype)

    counts = (_binary((3, 4, 50), p=0.3) * torch.randint(1, 4, (3, 4, 50))).to(dtype)
    for x in (counts, counts.transpose(1, 2), counts[:, :0], torch.zeros(3, 4, 50, dtype=dtype)):
        y = random_spike_mask(x, 0.6, draw="arriving", share_over_time=share,
                              generator=torch.Generator().manual_seed(2))
        assert y.dtype == dtype and y.shape == x.shape
        assert torch.equal(y, plain(x, torch.Generator().manual_seed(2)))
    assert random_spike_mask(counts, 0.6, draw="arriving", share_over_time=share).data_ptr() != counts.data_ptr()


@pytest.mark.parametrize("draw", ["all", "arriving"])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 40), (1, 3, 5), (4, 1, 7), (0, 2, 5), (2, 0, 5), (3, 2, 0)])
def test_edge_inputs(draw, shared, shape):
    g = torch.Generator().manual_seed(1)
    zeros = torch.zeros(shape)
    out = random_spike_mask(zeros, 0.5, draw=draw, share_over_time=shared, generator=g)
    assert out.shape == zeros.shape and torch.count_nonzero(out) == 0
    ones = torch.ones(shape)
    out = random_spike_mask(ones, 0.5, draw=draw, share_over_time=shared, generator=g)
    assert out.shape == ones.shape and set(out.unique().tolist()) <= {0.0, 1.0}
    if shared and shape[0] > 1:
        assert all(torch.equal(out[0], out[t]) for t in range(shape[0]))
    assert torch.count_nonzero(random_spike_mask(ones, 1.0, draw=draw, share_over_time=shared)) == 0
    assert random_spike_mask(ones, 0.0, draw=draw, share_over_time=shared) is ones


def test_draw_mode_in_config_module_and_model():
    with pytest.raises(ValueError, match="draw"):
        MaskConfig(draw="some")
    with pytest.raises(ValueError, match="draw"):
        random_spike_mask(torch.ones(2, 2), 0.5, draw="some")
    assert MaskConfig().draw == "all", "the default keeps existing results unchanged"
    cfg = MaskConfig(ratio=0.5, sites=("attn.q",), draw="arriving")
    assert "drawn where spikes arrive" in cfg.describe()
    model = sm.create_model("test_spikformer", mask={"ratio": 0.5, "draw": "arriving"})
    masks = [m for m in model.modules() if isinstance(m, SpikeMask)]
    assert all(m.draw == "arriving" for m in masks) and "drawn where spikes arrive" in repr(masks[0])
    sm.apply_rsm(model, draw="all")
    assert model.config.mask.draw == "all" and all(m.draw == "all" for m in masks)
