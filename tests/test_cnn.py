"""Spiking ResNet and VGG (MST Table 3, QCFS authors' CIFAR models): shapes, gradients, parameter counts
against a formula, every mask site, blocks, ANN-to-SNN conversion, converted checkpoints, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spikemask as sm
from spikemask.config import ConfigError
from spikemask.conversion import QCFS, ConversionError, StepIF, convert
from spikemask.masking import MaskConfig, SpikeMask
from spikemask.train import load_model, save_checkpoint

TINY = ["test_resnet", "test_vgg"]
SITES = {"test_resnet": ("conv.input", "shortcut.input", "fc.input"), "test_vgg": ("conv.input", "fc.input")}


def _meta(name: str, **overrides):
    with torch.device("meta"):
        return sm.create_model(name, **overrides)


def _masks(model: nn.Module) -> list[tuple[str, SpikeMask]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SpikeMask)]


def templates(n: int, seed: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable toy task: one random template per class plus noise, ``[n, 1, size, size]`` in [0, 1.5]."""
    protos = torch.rand(10, 1, size, size, generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    return protos[y] + 0.5 * torch.rand(n, 1, size, size, generator=g), y


def trained(name: str, steps: int = 20, **overrides) -> nn.Module:
    """A tiny model (16 px) trained a few Adam steps on :func:`templates`, in eval mode."""
    torch.manual_seed(0)
    model = sm.create_model(name, img_size=16, **overrides)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        x, y = templates(32, step)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


# ---------------------------------------------------------------- registry, shapes, gradients


def test_variants_and_families_registered():
    names = set(sm.list_models())
    assert {"resnet18_cifar", "resnet_small_digits", "test_resnet", "vgg16_cifar", "vgg_small_digits",
            "test_vgg"} <= names
    assert {"resnet", "vgg"} <= set(sm.list_families())
    assert sm.model_info("resnet18_cifar")["family"] == "resnet"
    assert sm.model_info("vgg16_cifar")["family"] == "vgg"
    for name in ("resnet_small_digits", "vgg_small_digits", "test_resnet", "test_vgg"):
        c = sm.create_model(name).config
        assert (c.in_channels, c.img_size, c.num_classes) == (1, 32, 10)
    assert sm.create_model("resnet18_cifar").config.T == 32


@pytest.mark.parametrize("name", TINY)
def test_shapes_and_gradients(name):
    torch.manual_seed(0)
    model = sm.create_model(name).train()
    out = model(torch.rand(4, 1, 32, 32))
    assert out.shape == (4, 10)
    out.square().sum().backward()
    bad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert bad == []
    lams = [(n, p) for n, p in model.named_parameters() if n.endswith(".lam")]
    assert len(lams) == sum(isinstance(m, QCFS) for m in model.modules()) > 0
    assert all(float(p.grad.abs()) > 0 for _, p in lams), [n for n, p in lams if float(p.grad.abs()) == 0]


@pytest.mark.parametrize("name", TINY)
def test_relu_kind_is_a_plain_ann(name):
    model = sm.create_model(name, act={"kind": "relu"})
    assert not any(isinstance(m, QCFS) for m in model.modules())
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == sum(
        isinstance(m, QCFS) for m in sm.create_model(name).modules())
    with pytest.raises(ConversionError, match="ReLU"):
        convert(model, T=8)
    with pytest.raises(ConfigError, match="converted needs act.kind 'qcfs'"):
        sm.create_model(name, act={"kind": "relu"}, converted=True)


# ---------------------------------------------------------------- parameter counts


def resnet_count(*, width: int, depths, cin: int, classes: int) -> tuple[int, int]:
    """(weights, QCFS λ) of the QCFS authors' CIFAR ResNet: no conv biases, BN weight + bias, a Linear head."""
    def conv_bn(a, b, k):
        return k * k * a * b + 2 * b

    weights, acts, c = conv_bn(cin, width, 3), 1, width
    for stage, depth in enumerate(depths):
        out = width * 2**stage
        for i in range(depth):
            weights += conv_bn(c, out, 3) + conv_bn(out, out, 3)
            if (stage > 0 and i == 0) or c != out:
                weights += conv_bn(c, out, 1)  # projection shortcut
            acts += 2
            c = out
    return weights + c * classes + classes, acts


def vgg_count(*, channels, depths, cin: int, classes: int, hidden: int, img: int, conv_bias: bool = True):
    """(weights, QCFS λ) of the QCFS authors' VGG: conv (+bias) + BN per layer, three Linear layers."""
    weights, acts, c = 0, 0, cin
    for out, depth in zip(channels, depths):
        for _ in range(depth):
            weights += 9 * c * out + (out if conv_bias else 0) + 2 * out
            acts += 1
            c = out
    side = img // 2 ** len(depths)
    feats = c * side * side
    weights += feats * hidden + hidden + hidden * hidden + hidden + hidden * classes + classes
    return weights, acts + 2


def test_published_sizes():
    """ResNet-18: 11,173,962 weights (torchvision's resnet18(num_classes=10) has 11,181,642: its 7x7 stem) +
    17 λ; VGG-16 (authors' CIFAR classifier 512-4096-4096-10): 33,646,666 + 15 λ."""
    assert resnet_count(width=64, depths=(2, 2, 2, 2), cin=3, classes=10) == (11_173_962, 17)
    assert vgg_count(channels=(64, 128, 256, 512, 512), depths=(2, 2, 3, 3, 3), cin=3, classes=10, hidden=4096,
                     img=32) == (33_646_666, 15)
    assert sm.model_info("resnet18_cifar")["params"] == 11_173_962 + 17
    assert sm.model_info("vgg16_cifar")["params"] == 33_646_666 + 15
    # the same layers as torchvision's ResNet-18 but the stem: 7x7x3x64 = 9408 weights there, 3x3x3x64 = 1728 here
    assert 11_173_962 - 1728 + 9408 == 11_181_642


@pytest.mark.parametrize("name", [n for n in sm.list_models() if n.startswith(("resnet", "vgg", "test_resnet",
                                                                                   "test_vgg"))])
def test_parameter_count_matches_formula(name):
    model = _meta(name)
    c = model.config
    if model.family == "resnet":
        weights, acts = resnet_count(width=c.width, depths=c.depths, cin=c.in_channels, classes=c.num_classes)
    else:
        weights, acts = vgg_count(channels=c.channels, depths=c.depths, cin=c.in_channels, classes=c.num_classes,
                                  hidden=c.hidden, img=c.img_size, conv_bias=c.conv_bias)
    assert sm.count_parameters(model) == weights + acts
    assert sum(isinstance(m, QCFS) for m in model.modules()) == acts
    converted = _meta(name, converted=True)  # λ becomes a threshold buffer
    assert sm.count_parameters(converted) == weights
    assert sum(isinstance(m, StepIF) for m in converted.modules()) == acts


# ---------------------------------------------------------------- masks


@pytest.mark.parametrize("name", TINY)
def test_every_spiking_layer_reads_through_a_mask(name):
    """Every conv and linear layer but the first conv has a mask whose ``feeds`` (relative to the mask's parent,
    as the energy counter resolves it) names that layer; the first conv reads the analog image."""
    model = sm.create_model(name)
    modules = dict(model.named_modules())
    fed = {}
    for mname, mask in _masks(model):
        parent = mname.rpartition(".")[0]
        (f,) = mask.feeds
        fed[f"{parent}.{f}" if parent else f] = mask.site
    layers = [n for n, m in modules.items() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers[0] == "stem.conv" and "stem.conv" not in fed
    assert set(fed) == set(layers[1:])
    for layer, site in fed.items():
        kind = nn.Linear if site == "fc.input" else nn.Conv2d
        assert isinstance(modules[layer], kind)
        if kind is nn.Conv2d:  # the 1x1 convolutions are the projection shortcuts
            assert (modules[layer].kernel_size == (1, 1)) == (site == "shortcut.input"), layer
    assert model.mask_sites == SITES[name]
    assert model.default_mask_sites == tuple(s for s in SITES[name] if s != "fc.input")


@pytest.mark.parametrize("name", TINY)
def test_mask_rates_and_no_new_values(name):
    ratios = {"conv.input": 0.5, "shortcut.input": 0.25, "fc.input": 0.75}
    site_ratios = {s: r for s, r in ratios.items() if s in SITES[name]}
    torch.manual_seed(0)
    model = sm.create_model(name, mask={"site_ratios": site_ratios, "seed": 1}).train()  # batch statistics
    seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.setdefault(mod.site, []).append((args[0], out)))
             for _, m in _masks(model)]
    with torch.no_grad():
        model(torch.rand(16, 1, 32, 32))
    for h in hooks:
        h.remove()
    assert set(seen) == set(site_ratios)
    for site, pairs in seen.items():
        n_in = n_out = 0
        for x, out in pairs:
            assert out.shape == x.shape
            assert not ((out != 0) & (out != x)).any(), f"{site}: the mask changed or created a value"
            n_in += int((x != 0).sum())
            n_out += int((out != 0).sum())
        keep = 1 - site_ratios[site]
        assert n_in > 200, f"{site}: too few inputs fire to measure a rate"
        sigma = math.sqrt(keep * (1 - keep) / n_in)
        assert abs(n_out / n_in - keep) < 5 * sigma, (site, n_out / n_in, keep)


@pytest.mark.parametrize("name", TINY)
def test_blocks_select_masks(name):
    model = sm.create_model(name, mask={"ratio": 0.5, "blocks": [0, 1]})
    assert model.mask_blocks() == ["blocks.0", "blocks.1", "blocks.2"]
    for mname, m in _masks(model):
        expected_block = int(mname.split(".")[1]) if mname.startswith("blocks.") else None
        assert m.block == expected_block, mname
        if m.site == "fc.input":
            assert m.ratio == 0.0  # not a default site
        else:
            assert m.ratio == (0.5 if m.block in (0, 1) else 0.0), mname
    assert not any(n.startswith("stem.") for n, _ in _masks(model))

    model.set_mask(MaskConfig(ratio=0.5, block_ratios={0: 0.1, 2: 0.3}))
    by_block = {0: 0.1, 1: 0.5, 2: 0.3}
    for mname, m in _masks(model):
        if m.block is not None:
            assert m.ratio == by_block[m.block], mname
    # fc.input masks belong to no block: ``blocks`` does not switch them off
    model.set_mask(MaskConfig(ratio=0.5, sites=("fc.input",), blocks=(0,)))
    assert all(m.ratio == (0.5 if m.site == "fc.input" else 0.0) for _, m in _masks(model))
    with pytest.raises(ValueError, match="mask block 3 does not exist"):
        model.set_mask(MaskConfig(ratio=0.5, blocks=(3,)))
    with pytest.raises(ValueError, match="unknown mask site"):
        model.set_mask(MaskConfig(ratio=0.5, sites=("attn.q",)))


def test_full_size_blocks():
    assert len(_meta("resnet18_cifar").mask_blocks()) == 8  # BasicBlocks
    assert len(_meta("vgg16_cifar").mask_blocks()) == 12  # the convolutions after the first


# ---------------------------------------------------------------- conversion


@pytest.mark.parametrize("name", TINY)
def test_conversion_approaches_the_ann(name):
    model = trained(name)
    x, _ = templates(64, 999)
    fired = []
    hooks = [m.register_forward_hook(lambda mod, args, out: fired.append(float((out > 0).float().mean())))
             for m in model.modules() if isinstance(m, QCFS)]
    with torch.no_grad():
        ann = model(x)
    for h in hooks:
        h.remove()
    assert all(0.05 < f < 0.95 for f in fired), fired  # activations are neither silent nor saturated

    snn = convert(model, T=256)
    assert snn is not model and snn.config.converted and snn.config.T == 256
    assert not model.config.converted  # the ANN is left as it was
    assert not any(isinstance(m, QCFS) for m in snn.modules())
    with torch.no_grad():
        steps = snn.forward_steps(x)  # [T, B, classes]: running means
        final = snn(x)
    assert steps.shape == (256, 64, 10)
    assert torch.allclose(final, steps[-1])
    err = [float((steps[t - 1] - ann).abs().mean()) for t in (8, 256)]
    assert err[1] < err[0] / 3, err
    agree = float((steps[-1].argmax(1) == ann.argmax(1)).float().mean())
    assert agree >= 0.9, agree


def test_converted_masks_draw_every_step():
    snn = convert(sm.create_model("test_vgg", img_size=16, mask={"ratio": 0.5}).eval(), T=3)
    calls = []
    hooks = [m.register_forward_hook(lambda *a: calls.append(1)) for _, m in _masks(snn)]
    with torch.no_grad():
        snn(torch.rand(2, 1, 16, 16))
    for h in hooks:
        h.remove()
    assert len(calls) == 3 * sum(1 for _, m in _masks(snn) if m.site == "conv.input") + 3 * 3  # + fc masks


@pytest.mark.parametrize("name", TINY)
def test_converted_checkpoint_rebuilds(name, tmp_path):
    model = trained(name, steps=3, mask={"ratio": 0.25, "seed": 7})
    snn = convert(model, T=16)
    path = save_checkpoint(tmp_path / "snn.pt", snn)
    loaded, state = load_model(path)
    loaded.eval()  # load_model hands back train mode: BatchNorm would use batch statistics at every step
    assert state["model_config"]["converted"] is True and state["model_config"]["T"] == 16
    assert type(loaded) is type(snn) and loaded.variant == name and loaded.config.converted
    assert loaded.config.mask.ratio == 0.25
    assert not any(isinstance(m, QCFS) for m in loaded.modules())
    ths = {n: float(m.threshold) for n, m in snn.named_modules() if isinstance(m, StepIF)}
    assert ths == {n: float(m.threshold) for n, m in loaded.named_modules() if isinstance(m, StepIF)}
    x, _ = templates(8, 5)
    snn.reseed_masks(7)
    loaded.reseed_masks(7)
    with torch.no_grad():
        assert torch.equal(snn(x), loaded(x))


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("name", TINY)
def test_clear_errors(name):
    with pytest.raises(ConfigError, match=r"model\.T must be >= 1, got 0"):
        sm.create_model(name, T=0)
    model = sm.create_model(name).eval()
    with pytest.raises(ValueError, match=r"expects input \[B, 1, 32, 32\] .*got shape \(2, 4, 1, 32, 32\).*event"):
        model(torch.zeros(2, 4, 1, 32, 32))
    with pytest.raises(ValueError, match=r"expects input \[B, 1, 32, 32\]"):
        model(torch.zeros(4, 3, 32, 32))
    with pytest.raises(ConversionError, match="is an ANN: convert it first"):
        model.forward_steps(torch.zeros(1, 1, 32, 32))
    snn = convert(model, T=2)
    with pytest.raises(ValueError, match=r"expects input \[B, 1, 32, 32\]"):
        snn(torch.zeros(2, 2, 1, 32, 32))
    with pytest.raises(ValueError, match="T must be a positive integer"):
        snn.forward_steps(torch.zeros(1, 1, 32, 32), T=0)
    with pytest.raises(ValueError, match="T must be a positive integer"):
        convert(model, T=0)(torch.zeros(1, 1, 32, 32))
    shared = convert(sm.create_model(name, mask={"ratio": 0.5, "share_over_time": True}), T=2)
    with pytest.raises(ValueError, match="share_over_time is not supported"):
        shared(torch.zeros(1, 1, 32, 32))
