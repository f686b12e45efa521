"""Structured Random Spike Masking: whole tokens, heads or channels dropped per step or shared over T."""

from __future__ import annotations

import math

import pytest
import torch

import spikemask as sm
from spikemask.energy import EnergyCounter, measure_energy
from spikemask.masking import MaskConfig, SpikeMask, mask_draws, random_spike_mask
from spikemask.skipping import TokenSkipLinear, skip_dropped_tokens

T, B, N, D, H = 3, 4, 40, 24, 4
# structure, layout, heads, shape of x, function: kept-unit indicator [T, B, units] from a masked output
CASES = {
    "token": ("tokens", None, (T, B, N, D), lambda y: (y != 0).any(dim=3)),  # [T, B, N]
    "channel": ("tokens", None, (T, B, N, D), lambda y: (y != 0).any(dim=2)),  # [T, B, D]
    "head": ("tokens", H, (T, B, N, D), lambda y: (y.view(T, B, N, H, D // H) != 0).any(dim=(2, 4))),  # [T, B, H]
    "scores-token": ("scores", None, (T, B, H, N, N), lambda y: (y != 0).any(dim=(2, 4))),  # [T, B, N] query rows
    "scores-head": ("scores", None, (T, B, H, N, N), lambda y: (y != 0).any(dim=(3, 4))),  # [T, B, H]
}


def _mask(case, ratio, *, shared=False, seed=0, draw="all", x=None):
    layout, heads, shape, kept = CASES[case]
    structure = case.rpartition("-")[2]
    x = torch.full(shape, 2.0) if x is None else x  # non-zero everywhere: a dropped unit is all zero
    y = random_spike_mask(x, ratio, share_over_time=shared, generator=torch.Generator().manual_seed(seed),
                          draw=draw, structure=structure, layout=layout, heads=heads)
    return x, y, kept(y)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("ratio", [0.3, 0.7])
def test_dropped_fraction_of_units_is_tau_and_units_drop_whole(case, ratio):
    x, y, kept = _mask(case, ratio)
    n = kept.numel()
    dropped = 1 - kept.float().mean().item()
    assert abs(dropped - ratio) < 5 * math.sqrt(ratio * (1 - ratio) / n), (dropped, n)
    assert torch.equal(y[y != 0], x[y != 0]), "kept elements are unchanged (no rescaling)"
    # every element of a kept unit survives: the unit is kept or dropped as a whole
    assert (y != 0).sum() == kept.sum() * (x.numel() // kept.numel())


@pytest.mark.parametrize("case", list(CASES))
def test_shared_over_time_keeps_the_same_units_at_every_step(case):
    _, y, kept = _mask(case, 0.5, shared=True)
    for t in range(1, T):
        assert torch.equal(kept[t], kept[0]) and torch.equal(y[t], y[0])
    _, _, per_step = _mask(case, 0.5, shared=False)
    assert not all(torch.equal(per_step[t], per_step[0]) for t in range(1, T))


@pytest.mark.parametrize("case", list(CASES))
def test_seeded_reproducible_and_zero_ratio_is_identity(case):
    _, a, _ = _mask(case, 0.5, seed=3)
    _, b, _ = _mask(case, 0.5, seed=3)
    _, c, _ = _mask(case, 0.5, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    x = torch.ones(CASES[case][2])
    assert _mask(case, 0.0, x=x)[1] is x


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("shared", [False, True])
def test_draws_one_number_per_unit(case, shared):
    layout, heads, shape, kept = CASES[case]
    structure = case.rpartition("-")[2]
    units = kept(torch.ones(shape)).numel() // (T if shared else 1)
    x = torch.zeros(shape)
    assert mask_draws(x, share_over_time=shared, draw="all", structure=structure, layout=layout,
                      heads=heads) == units
    # "arriving": one number per unit holding a spike; a silent unit draws nothing and stays zero
    x = (torch.rand(shape, generator=torch.Generator().manual_seed(0)) < 0.002).float()
    live = kept(x)
    if shared:
        live = live.any(dim=0)
    n = mask_draws(x, share_over_time=shared, draw="arriving", structure=structure, layout=layout, heads=heads)
    assert n == int(live.sum()) <= units
    _, y, _ = _mask(case, 0.5, shared=shared, draw="arriving", x=x)
    assert torch.equal(y[y != 0], x[y != 0]) and (y != 0).sum() <= (x != 0).sum()


def test_bad_structure_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="element, token, head, channel") as err:
        MaskConfig(ratio=0.5, structure="tokens")
    assert "Did you mean 'token'" in str(err.value)
    with pytest.raises(ValueError, match="structure"):
        sm.create_model("test_spikformer", mask={"ratio": 0.5, "structure": "chanel"})


@pytest.mark.parametrize("sites,structure,match", [
    (["mlp.hidden"], "head", "not split into attention heads"),
    (["attn.scores"], "channel", r"\[T, B, H, N, N\]"),
    (["sps.conv2"], "token", "not known"),
])
def test_structures_refused_where_they_do_not_apply(sites, structure, match):
    with pytest.raises(ValueError, match=match):
        sm.create_model("test_spikformer", mask={"ratio": 0.5, "sites": sites, "structure": structure})
    model = sm.create_model("test_spikformer")
    with pytest.raises(ValueError, match=match):
        sm.apply_rsm(model, ratio=0.5, sites=sites, structure=structure)
    assert model.config.mask.structure == "element", "a refused change leaves the model as it was"
    # a site at τ = 0 is never masked, so it is no reason to refuse
    sm.apply_rsm(model, ratio=0.5, sites=["attn.q"], site_ratios={s: 0.0 for s in sites}, structure=structure)
    # SDSA has no heads
    with pytest.raises(ValueError, match="not split into attention heads"):
        sm.create_model("test_spikformer", attention="sdsa", mask={"ratio": 0.5, "sites": ["attn.q"],
                                                                   "structure": "head"})


def test_structure_needs_a_spikemask_model():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    with pytest.raises(ValueError, match="spikemask model"):
        sm.apply_rsm(net, ratio=0.5, sites=["1"], structure="token")


def test_explicit_element_equals_the_default(active_tiny):
    model, x = active_tiny
    sites = ["attn.q", "attn.k", "attn.scores", "mlp.hidden"]
    outs = []
    for extra in ({}, {"structure": "element"}):
        sm.apply_rsm(model, ratio=0.5, sites=sites, seed=11, structure=extra.get("structure"))
        with torch.no_grad():
            outs.append(model(x))
    assert torch.equal(outs[0], outs[1])
    assert "whole" not in repr(model)


def _capture(model, x, names):
    seen, handles = {}, []
    for name in names:
        handles.append(model.get_submodule(name).register_forward_hook(
            lambda m, a, o, name=name: seen.__setitem__(name, (a[0], o))))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


@pytest.mark.parametrize("site,structure,units", [
    ("mlp.hidden", "token", lambda t: (t != 0).any(dim=3)),
    ("mlp.hidden", "channel", lambda t: (t != 0).any(dim=2)),
    ("attn.q", "head", lambda t: (t.view(*t.shape[:3], 2, -1) != 0).any(dim=(2, 4))),
    ("attn.scores", "head", lambda t: (t != 0).any(dim=(3, 4))),
])
def test_model_drops_whole_units_at_the_site(active_tiny, site, structure, units):
    model, x = active_tiny
    sm.apply_rsm(model, ratio=0.5, sites=[site], structure=structure, seed=0, share_over_time=True)
    name = {"mlp.hidden": "blocks.0.mlp.mask_hidden", "attn.q": "blocks.0.attn.mask_q",
            "attn.scores": "blocks.0.attn.mask_scores"}[site]
    before, after = _capture(model, x, [name])[name]
    assert torch.equal(after[after != 0], before[after != 0])
    kept, alive = units(after), units(before)
    assert not (kept & ~alive).any()
    assert (alive & ~kept).any(), "some live units are dropped"
    dropped = alive & ~kept
    assert not (kept & dropped.any(dim=0)).any(), "shared over T: a unit dropped at one step is dropped at all"


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("draw", ["all", "arriving"])
def test_energy_report_counts_one_draw_per_unit(active_tiny, shared, draw):
    model, x = active_tiny  # T 2, batch 4, 16 tokens, D 32, 2 heads, hidden 128
    Tm, Bm = x.shape[:2]
    sm.apply_rsm(model, ratio=0.5, sites=["attn.q", "attn.scores", "mlp.hidden"], structure="head",
                 site_ratios={"mlp.hidden": 0.0}, seed=0, share_over_time=shared, draw=draw)
    by_site = {m["site"]: m for m in measure_energy(model, [x])["masks"]}
    steps = 1 if shared else Tm
    if draw == "all":
        assert by_site["attn.q"]["draws"] == 2 * steps  # per sample: 2 heads x steps
        assert by_site["attn.scores"]["draws"] == 2 * steps
    else:
        assert 0 < by_site["attn.q"]["draws"] <= 2 * steps
    assert by_site["mlp.hidden"]["draws"] == 0 and by_site["mlp.hidden"]["structure"] == "element"
    assert by_site["attn.q"]["structure"] == "head" and by_site["attn.q"]["nominal"] == 0.5
    sm.apply_rsm(model, ratio=0.5, sites=["mlp.hidden"], site_ratios={}, structure="token", draw="all")
    report = measure_energy(model, [x])
    m = next(m for m in report["masks"] if m["site"] == "mlp.hidden")
    assert m["draws"] == 16 * steps, "16 tokens per sample"
    assert 0.0 < m["realised"] < 1.0
    with EnergyCounter(model, dense=True) as counter, torch.no_grad():  # every element firing
        model.eval()(x)
    draws = sum(m.draws for m in counter.masks.values() if m.site == "mlp.hidden")
    assert draws == 16 * steps * Bm


def test_create_model_checkpoint_and_repr_keep_the_structure(tmp_path):
    from spikemask.train import load_model, save_checkpoint

    mask = {"ratio": 0.6, "sites": ["mlp.hidden", "attn.scores"], "structure": "token", "seed": 5,
            "share_over_time": True}
    model = sm.create_model("test_spikformer", mask=mask).eval()
    assert "whole tokens" in repr(model)
    x = torch.poisson(torch.full((2, 2, 2, 32, 32), 0.4))
    path = save_checkpoint(tmp_path / "m.pt", model)
    loaded, _ = load_model(path)
    assert loaded.config.mask.structure == "token"
    hidden = [m for m in loaded.modules() if isinstance(m, SpikeMask) and m.site == "mlp.hidden"]
    assert hidden and all(m.structure == "token" and m.layout == "tokens" for m in hidden)
    model.reseed_masks(5)
    loaded.eval().reseed_masks(5)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_token_skip_linear_matches_the_dense_linear():
    torch.manual_seed(0)
    fc = torch.nn.Linear(12, 5)
    h = (torch.rand(2, 3, 7, 12) < 0.3).float()
    h[:, :, ::2] = 0  # dropped tokens
    expected = fc(h)
    assert skip_dropped_tokens(torch.nn.Sequential(fc), pattern="0") == ["0"]
    assert isinstance(fc, TokenSkipLinear)
    torch.testing.assert_close(fc(h), expected)
    torch.testing.assert_close(fc(torch.zeros(2, 3, 7, 12)), fc.bias.expand(2, 3, 7, 5))
    skip_dropped_tokens(torch.nn.Sequential(fc), enable=False, pattern="0")
    assert type(fc) is torch.nn.Linear


def test_token_skip_in_a_model_gives_the_same_logits(active_tiny):
    model, x = active_tiny
    sm.apply_rsm(model, ratio=0.5, sites=["mlp.hidden"], structure="token", seed=2)
    with torch.no_grad():
        model.reseed_masks(2)
        dense = model(x)
        assert skip_dropped_tokens(model) == ["blocks.0.mlp.fc2"]
        model.reseed_masks(2)
        skipped = model(x)
        skip_dropped_tokens(model, enable=False)
    torch.testing.assert_close(skipped, dense)
