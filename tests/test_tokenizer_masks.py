"""Random Spike Masking on the tokenizer's convolutions (sites ``sps.conv1`` .. ``sps.conv4``): where they sit
in each family, what they remove, what the energy counter charges for it, and that nothing changes while they
are off (they are not default sites)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_active
from test_cli import run_json
from test_energy import naive_conv_uses, rows_by_name

import spikemask as sm
from spikemask.energy import EnergyConfig, EnergyCounter, build_report, measure_energy
from spikemask.masking import SpikeMask
from spikemask.models.tokenizers import TOKENIZER_SITES

FAMILIES = ["test_spikformer", "test_spikingformer", "test_saformer"]
# the conv each site feeds, written out from each tokenizer's architecture (not read from the model)
CONVS = {
    "test_spikformer": {"sps.conv1": "sps.stages.1.conv", "sps.conv2": "sps.stages.2.conv",
                        "sps.conv3": "sps.stages.3.conv", "sps.conv4": "sps.rpe.conv"},
    "test_spikingformer": {"sps.conv1": "sps.stages.0.conv", "sps.conv2": "sps.stages.1.conv",
                           "sps.conv3": "sps.stages.2.conv", "sps.conv4": "sps.stages.3.conv"},
    "test_saformer": {"sps.conv1": "sps.stages.1.conv", "sps.conv2": "sps.stages.2.conv",
                      "sps.conv3": "sps.stages.3.conv", "sps.conv4": "sps.fuse.conv"},
}
FIRST = {"test_spikformer": "sps.stages.0.conv", "test_spikingformer": "sps.stem.conv",
         "test_saformer": "sps.stages.0.conv"}
TAU = 0.5


def events(B=2):
    torch.manual_seed(0)
    return torch.poisson(torch.full((2, B, 2, 32, 32), 0.4))  # [T, B, C, H, W] event counts


def active(name, **kw):
    """``name`` with BatchNorm calibrated so it fires on :func:`events` (see ``conftest.make_active``)."""
    torch.manual_seed(0)
    model = sm.create_model(name, **kw)
    x = events()
    return make_active(model, x), x


def conv_inputs(model, x):
    """The input of every tokenizer conv in one forward pass, ``{conv name: [T*B, C, H, W]}``."""
    seen, handles = {}, []
    for conv in model.sps.modules():
        if isinstance(conv, torch.nn.Conv2d):
            name = next(n for n, m in model.named_modules() if m is conv)
            handles.append(conv.register_forward_hook(lambda _m, a, _o, name=name: seen.__setitem__(name, a[0])))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


def mask_only(model, site, tau, seed=0):
    """Mask ``site`` alone (everything upstream of it is then as without masks)."""
    sm.apply_rsm(model, ratio=0.0, sites=[], site_ratios={site: tau}, seed=seed)


@pytest.mark.parametrize("name", FAMILIES)
def test_sites_are_listed_feed_their_conv_and_are_off_by_default(name):
    model = sm.create_model(name, mask={"ratio": TAU})  # default sites at τ
    assert set(TOKENIZER_SITES) <= set(model.mask_sites)
    assert not set(TOKENIZER_SITES) & set(model.default_mask_sites)
    assert not set(TOKENIZER_SITES) & set(model.config.mask.sites)  # stored resolved: the defaults only
    masks = {m.site: (n, m) for n, m in model.named_modules() if isinstance(m, SpikeMask) and n.startswith("sps.")}
    assert sorted(masks) == sorted(TOKENIZER_SITES)  # one each; none on conv 0 (it reads the input)
    for site, (path, mask) in masks.items():
        assert f"{path.rpartition('.')[0]}.{mask.feeds[0]}" == CONVS[name][site], site
        assert not mask.enabled and mask.block is None
    assert any(m.enabled for m in model.modules() if isinstance(m, SpikeMask))  # the defaults are on
    # outside the blocks: mask.blocks does not gate them (here it switches every block mask off)
    gated = sm.create_model(name, mask={"ratio": TAU, "sites": ["sps.conv2", "attn.q"], "blocks": []})
    assert {m.site for m in gated.modules() if isinstance(m, SpikeMask) and m.enabled} == {"sps.conv2"}


@pytest.mark.parametrize("name", FAMILIES)
def test_each_site_removes_tau_of_the_spikes_its_conv_reads(name):
    model, x = active(name)
    plain = conv_inputs(model, x)
    for site, conv in CONVS[name].items():
        mask_only(model, site, TAU)
        masked = conv_inputs(model, x)
        before, after = plain[conv], masked[conv]
        assert set(before.unique().tolist()) <= {0.0, 1.0}, f"{conv} reads spikes"
        kept = after != 0
        assert not (kept & (before == 0)).any(), f"{site}: masking creates no spikes"
        assert torch.equal(after[kept], before[kept])  # kept spikes are not rescaled
        n = float((before != 0).sum())
        assert n > 200, f"{conv}: too few spikes to judge"
        dropped = 1 - float(kept.sum()) / n
        assert dropped == pytest.approx(TAU, abs=5 * math.sqrt(TAU * (1 - TAU) / n)), site
        for other, reads in plain.items():  # every other conv upstream of this one reads the same tensor
            if list(plain).index(other) < list(plain).index(conv):
                assert torch.equal(masked[other], reads), (site, other)


def counted(model, x, conv):
    """(report rows, the tensor ``conv`` read) from one forward pass under the energy counter."""
    module = model.get_submodule(conv)
    seen = []
    handle = module.register_forward_hook(lambda _m, a, _o: seen.append(a[0]))
    with EnergyCounter(model) as counter, torch.no_grad():
        model(x)
    handle.remove()
    return rows_by_name(build_report(counter, EnergyConfig())), seen[0]


@pytest.mark.parametrize("name", FAMILIES)
def test_counter_charges_only_the_spikes_that_pass(name):
    model, x = active(name)
    B = x.shape[1]
    plain_report = measure_energy(model, [x])
    plain = rows_by_name(plain_report)
    # τ = 0 on the four sites reproduces the unmasked count exactly
    sm.apply_rsm(model, ratio=0.0, sites=TOKENIZER_SITES)
    zero = measure_energy(model, [x])
    assert [r["events"] for r in zero["layers"]] == [r["events"] for r in plain_report["layers"]]
    assert zero["totals"]["energy_mj"] == plain_report["totals"]["energy_mj"]
    for site, conv in CONVS[name].items():
        mask_only(model, site, TAU)
        rows, read = counted(model, x, conv)
        row = rows[conv]
        assert [m["name"] for m in row["masks"]] == [conv.rpartition(".")[0] + ".mask"]
        assert row["encoding"] == "binary" and row["macs"] == 0
        # the counter against an independent, border-aware count of the tensor the conv actually read
        assert row["sops"] == pytest.approx(naive_conv_uses((read != 0).double(), model.get_submodule(conv)) / B,
                                            rel=1e-12), site
        n = float((plain[conv]["input_rate"] * read.numel()))
        assert row["sops"] / plain[conv]["sops"] == pytest.approx(1 - TAU, abs=6 * math.sqrt(TAU * (1 - TAU) / n))
        assert rows[FIRST[name]]["macs"] == plain[FIRST[name]]["macs"]
    # τ = 0.99 on all four: (almost) nothing reaches the spike-reading convs; the first conv is untouched
    sm.apply_rsm(model, ratio=0.99, sites=TOKENIZER_SITES, site_ratios={}, seed=0)
    high = rows_by_name(measure_energy(model, [x]))
    for conv in CONVS[name].values():
        assert high[conv]["sops"] <= 0.03 * plain[conv]["sops"], conv
    assert high[FIRST[name]]["macs"] == plain[FIRST[name]]["macs"]


@pytest.mark.parametrize("name", FAMILIES)
def test_default_masking_is_as_before(name):
    """With the tokenizer masks stripped (the model as it was), the default masks draw the same spikes."""
    cfg = {"ratio": TAU, "seed": 3}
    torch.manual_seed(0)
    model = sm.create_model(name, mask=cfg)
    torch.manual_seed(0)
    old = sm.create_model(name, mask=cfg)
    for module in old.sps.modules():
        if isinstance(getattr(module, "mask", None), SpikeMask):
            module.mask = None
    assert not any(isinstance(m, SpikeMask) for m in old.sps.modules())
    assert list(old.state_dict()) == list(model.state_dict())  # the masks hold no state: same checkpoints
    x = events()
    for m in (model, old):
        make_active(m, x)
        m.set_mask(m.config.mask)  # restart the seeded generators the calibration pass advanced
    with torch.no_grad():
        y, y_old = model(x), old(x)
        sm.apply_rsm(model, ratio=0.0)
        y_off = model(x)
    assert torch.equal(y, y_old)
    assert not torch.equal(y, y_off)  # the default masks did change the output: the comparison means something


def test_cli_masks_one_tokenizer_conv(capsys):
    base = rows_by_name(run_json(capsys, "-q", "energy", "--model", "test_spikformer", "--dense"))
    rep = run_json(capsys, "-q", "energy", "--model", "test_spikformer", "--dense", "--sites", "sps.conv2",
                   "--mask-ratio", TAU)
    assert [(m["site"], m["nominal"]) for m in rep["masks"] if m["nominal"]] == [("sps.conv2", TAU)]
    for name, row in rows_by_name(rep).items():
        keep = 1 - TAU if name == "sps.stages.2.conv" else 1.0
        assert row["sops"] == pytest.approx(base[name]["sops"] * keep, rel=1e-12), name
