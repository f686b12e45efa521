"""Loading the authors' Spikformer / Spikingformer checkpoints (spikemask.models.convert).

The authors' code needs spikingjelly.clock_driven, cupy and timm, so it cannot run here. Instead
``authors_state_dict`` writes their state dicts key by key from their model files (ZK-Zhou/spikformer
cifar10dvs, cifar10, imagenet and root model.py; zhouchenlin2096/Spikingformer cifar10-dvs / dvs128-gesture,
imagenet, cifar10 / cifar100), and ``spikformer_reference`` / ``spikingformer_reference`` re-implement their
forward passes in plain torch (their tensor layouts, reshapes and op order) with spikemask's LIF neuron.
Sizes are tiny: D 32, depth 1, T 2, 32x32 inputs.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import spikemask as sm
from spikemask.models.convert import AuthorsWeightsError, load_authors_weights

D, DEPTH, HEADS, T, B, CLASSES, SIZE = 32, 1, 2, 2, 2, 10, 32

# layout -> (family, tokenizer naming, attention / MLP layer kind, input channels, pooled stages, tau)
LAYOUTS = {
    "spikformer/event": ("spikformer", "proj", "conv1d", 2, (0, 1, 2, 3), 2.0),
    "spikformer/cifar": ("spikformer", "proj", "linear", 3, (2, 3), 2.0),
    "spikformer/imagenet": ("spikformer", "proj", "conv2d", 3, (0, 1, 2, 3), 2.0),
    "spikformer/cifar-v0": ("spikformer", "block", "conv2d", 3, (2, 3), 2.0),
    "spikingformer/event": ("spikingformer", "proj", "conv2d", 2, (0, 1, 2, 3), 1.5),
    "spikingformer/imagenet": ("spikingformer", "proj", "conv2d", 3, (0, 1, 2, 3), 2.0),
    "spikingformer/cifar": ("spikingformer", "block", "conv2d", 3, (2, 3), 2.0),
}


# ------------------------------------------------------------------------------------------------ their keys


def tokenizer_names(layout: str) -> list[tuple[str, str]]:
    """The five (conv, bn) names under ``patch_embed.``, in the order their forward uses them."""
    family, naming = LAYOUTS[layout][:2]
    if family == "spikformer" and naming == "proj":  # SPS: proj_conv, proj_conv1..3, rpe_conv
        stages = [(f"proj_conv{i}", f"proj_bn{i}") for i in (1, 2, 3)]
        return [("proj_conv", "proj_bn"), *stages, ("rpe_conv", "rpe_bn")]
    if family == "spikformer":  # root model.py: block1..block4, rpe
        return [(f"block{i}_conv", f"block{i}_bn") for i in (1, 2, 3, 4)] + [("rpe_conv", "rpe_bn")]
    if naming == "proj":  # Spiking Tokenizer: proj_conv, proj1..proj4
        return [("proj_conv", "proj_bn")] + [(f"proj{i}_conv", f"proj{i}_bn") for i in (1, 2, 3, 4)]
    return [(f"block{i}_conv", f"block{i}_bn") for i in range(5)]


def authors_state_dict(layout: str, dim: int = D, depth: int = DEPTH, classes: int = CLASSES, size: int = SIZE,
                       seed: int = 0) -> dict[str, torch.Tensor]:
    """Every key and shape the authors' ``model.state_dict()`` holds, with random values that make neurons fire."""
    family, _, kind, c_in, _, _ = LAYOUTS[layout]
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def weight(*shape):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        return torch.randn(*shape, generator=g) * 1.5 / fan_in ** 0.5

    def uniform(n, lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=g)

    def bn(name, n):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = uniform(n, 1.0, 2.0), uniform(n, 0.5, 1.5)
        sd[f"{name}.running_mean"], sd[f"{name}.running_var"] = 0.1 * torch.randn(n, generator=g), uniform(n, 0.5, 1.5)
        sd[f"{name}.num_batches_tracked"] = torch.tensor(1234)

    def layer(name, n_out, n_in, bias, kind):  # Linear, Conv1d k=1 or Conv2d 1x1
        tail = {"linear": (), "conv1d": (1,), "conv2d": (1, 1)}[kind]
        sd[f"{name}.weight"] = weight(n_out, n_in, *tail)
        if bias:
            sd[f"{name}.bias"] = 0.1 * torch.randn(n_out, generator=g)

    if layout == "spikformer/event":  # the Spikformer registers pos_embed before its children
        sd["pos_embed"] = 0.02 * torch.randn(1, (size // 16) ** 2, dim, generator=g)
    chans = [c_in, dim // 8, dim // 4, dim // 2, dim, dim]
    for i, (conv, norm) in enumerate(tokenizer_names(layout)):
        sd[f"patch_embed.{conv}.weight"] = weight(chans[i + 1], chans[i], 3, 3)
        bn(f"patch_embed.{norm}", chans[i + 1])
    suffix = "linear" if kind == "linear" else "conv"
    attn_kind = kind if kind != "conv2d" else "conv1d"  # attention projections are Conv1d even when the MLP is 2-D
    for b in range(depth):
        p = f"block.{b}"
        sd[f"{p}.norm1.weight"], sd[f"{p}.norm1.bias"] = torch.ones(dim), torch.zeros(dim)
        for name in ("q", "k", "v", "proj"):
            layer(f"{p}.attn.{name}_{suffix}", dim, dim, name == "proj" or suffix == "linear", attn_kind)
            bn(f"{p}.attn.{name}_bn", dim)
        sd[f"{p}.norm2.weight"], sd[f"{p}.norm2.bias"] = torch.ones(dim), torch.zeros(dim)
        names = ("mlp1_conv", "mlp1_bn", "mlp2_conv", "mlp2_bn") if family == "spikingformer" else (
            f"fc1_{suffix}", "fc1_bn", f"fc2_{suffix}", "fc2_bn")
        layer(f"{p}.mlp.{names[0]}", 4 * dim, dim, True, kind)
        bn(f"{p}.mlp.{names[1]}", 4 * dim)
        layer(f"{p}.mlp.{names[2]}", dim, 4 * dim, True, kind)
        bn(f"{p}.mlp.{names[3]}", dim)
    if layout == "spikformer/event":
        sd["norm.weight"], sd["norm.bias"] = torch.ones(dim), torch.zeros(dim)
    sd["head.weight"], sd["head.bias"] = weight(classes, dim), 0.1 * torch.randn(classes, generator=g)
    return sd


def save_like_timm(path, sd, **args):
    """As timm's CheckpointSaver under DDP: 'module.' keys, the argparse Namespace, a numpy metric."""
    torch.save({"epoch": 299, "arch": "vit_snn", "state_dict": {f"module.{k}": v for k, v in sd.items()},
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0, 1]}]}, "version": 2,
                "args": argparse.Namespace(model="spikformer", lr=5e-4, mean=[0.5, 0.5], **args),
                "metric": np.float64(95.19)}, path)
    return path


# ------------------------------------------------------------------------------------------------ their forward


def lif(x, tau, v_threshold=1.0):
    return sm.LIF(sm.NeuronConfig(tau=tau, v_threshold=v_threshold))(x)


def bn(sd, name, x):  # BatchNorm1d / 2d in eval mode: channels on dim 1
    return F.batch_norm(x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"],
                        sd[f"{name}.bias"], training=False, eps=1e-5)


def spikformer_reference(layout, sd, x, heads=HEADS, rates=None):
    """Spikformer's forward: SPS, blocks of SSA + MLP on [T, B, C, N] (conv code) or [T, B, N, C] (cifar10
    Linear code), mean over tokens then T, head. ``x``: [T, B, C, H, W]."""
    _, _, kind, _, pooled, tau = LAYOUTS[layout]
    scale = 0.25 if layout == "spikformer/event" else 0.125
    Tn, Bn, _, H, W = x.shape
    y = x.flatten(0, 1)
    for i, (conv, norm) in enumerate(tokenizer_names(layout)[:4]):
        y = bn(sd, f"patch_embed.{norm}", F.conv2d(y, sd[f"patch_embed.{conv}.weight"], padding=1))
        y = lif(y.reshape(Tn, Bn, *y.shape[1:]), tau).flatten(0, 1)
        if i in pooled:
            y = F.max_pool2d(y, 3, 2, 1)
    rpe = bn(sd, "patch_embed.rpe_bn", F.conv2d(y, sd["patch_embed.rpe_conv.weight"], padding=1))
    y = y + lif(rpe.reshape(Tn, Bn, *rpe.shape[1:]), tau).flatten(0, 1)
    C = y.shape[1]
    if kind == "linear":
        x = y.reshape(Tn, Bn, C, -1).transpose(-1, -2)  # [T, B, N, C]: x.flatten(-2).transpose(-1, -2)
    else:
        x = y.reshape(Tn, Bn, C, -1)  # [T, B, C, N]
    for b in range(DEPTH):
        p = f"block.{b}"
        if kind == "linear":
            x = x + _ssa_linear(sd, p, x, heads, scale, tau, rates)
        else:  # their ImageNet code multiplies K^T V first
            x = x + _ssa_conv(sd, p, x, heads, scale, tau, rates, kv_first=layout == "spikformer/imagenet")
        x = x + (_mlp_linear if kind == "linear" else _mlp_conv)(sd, p, x, tau, kind)
    feats = x.mean(2) if kind == "linear" else x.mean(3)  # [T, B, C]
    return F.linear(feats.mean(0), sd["head.weight"], sd["head.bias"])


def _ssa_conv(sd, p, x, heads, scale, tau, rates, kv_first):
    Tn, Bn, C, N = x.shape
    x_for_qkv = x.flatten(0, 1)  # [TB, C, N]
    out = {}
    for name in ("q", "k", "v"):
        y = bn(sd, f"{p}.attn.{name}_bn", F.conv1d(x_for_qkv, sd[f"{p}.attn.{name}_conv.weight"]))
        y = lif(y.reshape(Tn, Bn, C, N), tau)
        out[name] = y.transpose(-1, -2).reshape(Tn, Bn, N, heads, C // heads).permute(0, 1, 3, 2, 4)
    if rates is not None:
        rates.append(out["q"].mean().item())
    if kv_first:
        x = (out["q"] @ (out["k"].transpose(-2, -1) @ out["v"])) * scale
    else:
        x = (out["q"] @ out["k"].transpose(-2, -1) @ out["v"]) * scale
    x = lif(x.transpose(3, 4).reshape(Tn, Bn, C, N), tau, 0.5).flatten(0, 1)
    x = bn(sd, f"{p}.attn.proj_bn", F.conv1d(x, sd[f"{p}.attn.proj_conv.weight"], sd[f"{p}.attn.proj_conv.bias"]))
    return lif(x.reshape(Tn, Bn, C, N), tau)


def _mlp_conv(sd, p, x, tau, kind):
    Tn, Bn, C, N = x.shape
    conv = F.conv1d if kind == "conv1d" else F.conv2d
    y = x.flatten(0, 1) if kind == "conv1d" else x.flatten(0, 1).unsqueeze(-1)  # imagenet: [TB, C, H, W]
    for i in (1, 2):
        y = bn(sd, f"{p}.mlp.fc{i}_bn", conv(y, sd[f"{p}.mlp.fc{i}_conv.weight"], sd[f"{p}.mlp.fc{i}_conv.bias"]))
        y = lif(y.reshape(Tn, Bn, *y.shape[1:]), tau).flatten(0, 1)
    return y.reshape(Tn, Bn, C, N)


def _ssa_linear(sd, p, x, heads, scale, tau, rates):
    Tn, Bn, N, C = x.shape
    x_for_qkv = x.flatten(0, 1)  # [TB, N, C]
    out = {}
    for name in ("q", "k", "v"):
        y = F.linear(x_for_qkv, sd[f"{p}.attn.{name}_linear.weight"], sd[f"{p}.attn.{name}_linear.bias"])
        y = bn(sd, f"{p}.attn.{name}_bn", y.transpose(-1, -2)).transpose(-1, -2).reshape(Tn, Bn, N, C)
        out[name] = lif(y, tau).reshape(Tn, Bn, N, heads, C // heads).permute(0, 1, 3, 2, 4)
    if rates is not None:
        rates.append(out["q"].mean().item())
    attn = (out["q"] @ out["k"].transpose(-2, -1)) * scale
    x = lif((attn @ out["v"]).transpose(2, 3).reshape(Tn, Bn, N, C), tau, 0.5).flatten(0, 1)
    x = F.linear(x, sd[f"{p}.attn.proj_linear.weight"], sd[f"{p}.attn.proj_linear.bias"])
    return lif(bn(sd, f"{p}.attn.proj_bn", x.transpose(-1, -2)).transpose(-1, -2).reshape(Tn, Bn, N, C), tau)


def _mlp_linear(sd, p, x, tau, kind):
    Tn, Bn, N, C = x.shape
    y = x.flatten(0, 1)
    for i in (1, 2):
        y = F.linear(y, sd[f"{p}.mlp.fc{i}_linear.weight"], sd[f"{p}.mlp.fc{i}_linear.bias"])
        y = bn(sd, f"{p}.mlp.fc{i}_bn", y.transpose(-1, -2)).transpose(-1, -2)
        y = lif(y.reshape(Tn, Bn, N, -1), tau).flatten(0, 1)
    return y.reshape(Tn, Bn, N, C)


def spikingformer_reference(layout, sd, x, heads=HEADS, rates=None):
    """Spikingformer's forward: Spiking Tokenizer (conv-BN, then 4 x [LIF, pool?, conv, BN]), blocks on
    [T, B, C, H, W] whose branches start with a LIF and end in BN, mean over tokens then T, head."""
    *_, pooled, tau = LAYOUTS[layout]
    Tn, Bn = x.shape[:2]
    names = tokenizer_names(layout)
    y = bn(sd, f"patch_embed.{names[0][1]}", F.conv2d(x.flatten(0, 1), sd[f"patch_embed.{names[0][0]}.weight"],
                                                       padding=1))
    for i, (conv, norm) in enumerate(names[1:]):
        y = lif(y.reshape(Tn, Bn, *y.shape[1:]), tau).flatten(0, 1)
        if i in pooled:
            y = F.max_pool2d(y, 3, 2, 1)
        y = bn(sd, f"patch_embed.{norm}", F.conv2d(y, sd[f"patch_embed.{conv}.weight"], padding=1))
    x = y.reshape(Tn, Bn, *y.shape[1:])  # [T, B, C, H, W]
    for b in range(DEPTH):
        p = f"block.{b}"
        _, _, C, H, W = x.shape
        a = lif(x, tau).flatten(3)  # the attention's "proj_lif" runs first
        N = a.shape[-1]
        out = {}
        for name in ("q", "k", "v"):
            q = bn(sd, f"{p}.attn.{name}_bn", F.conv1d(a.flatten(0, 1), sd[f"{p}.attn.{name}_conv.weight"]))
            q = lif(q.reshape(Tn, Bn, C, N), tau)
            out[name] = q.transpose(-1, -2).reshape(Tn, Bn, N, heads, C // heads).permute(0, 1, 3, 2, 4)
        if rates is not None:
            rates.append(out["q"].mean().item())
        if layout == "spikingformer/imagenet":  # their ImageNet code multiplies K^T V first
            s = (out["q"] @ (out["k"].transpose(-2, -1) @ out["v"])) * 0.125
        else:
            s = (out["q"] @ out["k"].transpose(-2, -1) @ out["v"]) * 0.125
        s = lif(s.transpose(3, 4).reshape(Tn, Bn, C, N), tau, 0.5).flatten(0, 1)
        s = bn(sd, f"{p}.attn.proj_bn", F.conv1d(s, sd[f"{p}.attn.proj_conv.weight"], sd[f"{p}.attn.proj_conv.bias"]))
        x = x + s.reshape(Tn, Bn, C, H, W)
        m = x
        for i in (1, 2):
            m = lif(m, tau).flatten(0, 1)
            m = F.conv2d(m, sd[f"{p}.mlp.mlp{i}_conv.weight"], sd[f"{p}.mlp.mlp{i}_conv.bias"])
            m = bn(sd, f"{p}.mlp.mlp{i}_bn", m)
            m = m.reshape(Tn, Bn, *m.shape[1:])
        x = x + m
    return F.linear(x.flatten(3).mean(3).mean(0), sd["head.weight"], sd["head.bias"])


def reference(layout, sd, x, **kw):
    fn = spikformer_reference if LAYOUTS[layout][0] == "spikformer" else spikingformer_reference
    return fn(layout, {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}, x, **kw)


def inputs(layout, seed=1):
    g = torch.Generator().manual_seed(seed)
    if LAYOUTS[layout][3] == 2:  # event frames: counts, [T, B, 2, H, W]
        return torch.randint(0, 3, (T, B, 2, SIZE, SIZE), generator=g).double()
    return torch.randn(B, 3, SIZE, SIZE, generator=g).double()  # static: repeated over T


# ------------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_layout_maps_every_tensor_and_computes_the_authors_forward(tmp_path, layout):
    sd = authors_state_dict(layout)
    path = save_like_timm(tmp_path / "ckpt.pth.tar", sd, num_heads=HEADS, time_step=T, img_size=SIZE)
    model, report = load_authors_weights(path)

    family, _, kind, c_in, pooled, tau = LAYOUTS[layout]
    assert report["layout"] == layout and model.family == family and report["entry"] == "state_dict"
    assert report["stripped_prefix"] == "module." and report["epoch"] == 299
    assert report["reported_metric"] == pytest.approx(95.19)
    assert report["from_file"] == {"num_heads": "args.num_heads", "T": "args.time_step", "img_size": "args.img_size"}
    c = model.config
    assert (c.embed_dim, c.depth, c.num_heads, c.T, c.img_size, c.in_channels) == (D, DEPTH, HEADS, T, SIZE, c_in)
    assert c.sps_pool == tuple(i in pooled for i in range(4)) and c.neuron.tau == tau
    assert c.attn_scale == (0.25 if layout == "spikformer/event" else 0.125)
    assert c.qkv_bias == (kind == "linear") and c.attn_v_threshold == 0.5

    own = model.state_dict()
    unused = {k for k in sd if ".norm1." in k or ".norm2." in k or k in ("pos_embed", "norm.weight", "norm.bias")}
    assert set(report["dropped"]) == unused
    assert set(report["mapped"]) == set(sd) - unused and set(report["mapped"].values()) == set(own)
    for src, dst in report["mapped"].items():
        assert torch.equal(sd[src].reshape(own[dst].shape).to(own[dst].dtype), own[dst]), src
        assert (src in report["converted"]) == (sd[src].dim() != own[dst].dim())
    assert len(report["converted"]) == (0 if kind == "linear" else 6 * DEPTH)

    x, rates = inputs(layout), []
    expected = reference(layout, sd, x if x.dim() == 5 else x.unsqueeze(0).repeat(T, 1, 1, 1, 1), rates=rates)
    with torch.no_grad():
        got = model.double()(x)
    assert 0.05 < min(rates) and max(rates) < 0.95  # the neurons fire: the comparison is not between zeros
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    assert got.std() > 0


def test_a_released_size_loads_into_its_registered_variant(tmp_path):
    """Spikformer-2-256 on CIFAR10-DVS, saved as the authors' event script does: {'model', 'args' (T), ...}."""
    sd = authors_state_dict("spikformer/event", dim=256, depth=2, classes=11, size=128)
    path = tmp_path / "checkpoint_max_test_acc1.pth"
    torch.save({"model": sd, "optimizer": {}, "lr_scheduler": {}, "epoch": 191, "max_test_acc1": 80.9,
                "args": argparse.Namespace(model="spikformer", T=16, data_path="/data/CIFAR10DVS", amp=True)}, path)
    model, report = load_authors_weights(path, num_classes=11)
    assert model.variant == report["variant"] == "spikformer_2_256_dvs" and report["template"] is None
    assert report["entry"] == "model" and report["stripped_prefix"] is None
    assert report["config_changes"] == {"num_classes": [10, 11]}  # scale 0.25, tau 2, no bias: as registered
    assert report["from_file"] == {"T": "args.T", "img_size": "pos_embed [1, 64, 256]"}
    assert set(report["assumed"]) == {"num_heads"} and model.config.num_heads == 16


def test_registered_variant_defaults_are_set_to_the_authors_semantics(tmp_path):
    sd = authors_state_dict("spikformer/event")
    path = save_like_timm(tmp_path / "a.pth", sd, time_step=T, num_heads=HEADS)
    model, report = load_authors_weights(path, variant="test_spikformer")
    assert model.variant == "test_spikformer" and model.config.sps_pool == (True,) * 4
    assert report["config_changes"] == {"sps_pool": [[False, True, True, True], [True, True, True, True]]}


def test_explicit_variant_of_another_size_names_the_first_key_that_does_not_fit(tmp_path):
    path = save_like_timm(tmp_path / "a.pth", authors_state_dict("spikformer/event"), time_step=T)
    with pytest.raises(AuthorsWeightsError) as err:
        load_authors_weights(path, variant="spikformer_2_256_dvs")
    msg = str(err.value)
    assert "'patch_embed.proj_conv.weight' [4, 2, 3, 3]" in msg and "'sps.stages.0.conv.weight' [32, 2, 3, 3]" in msg
    assert "spikformer_2_256_dvs" in msg and "\n" not in msg


def test_variant_of_another_family_is_refused(tmp_path):
    path = save_like_timm(tmp_path / "a.pth", authors_state_dict("spikingformer/event"), num_heads=HEADS)
    with pytest.raises(AuthorsWeightsError, match="spikformer_2_256_dvs is a spikformer model"):
        load_authors_weights(path, variant="spikformer_2_256_dvs")
    with pytest.raises(AuthorsWeightsError, match="holds a spikingformer, not a spikformer"):
        load_authors_weights(path, family="spikformer")
    with pytest.raises(AuthorsWeightsError, match=r"head.weight \[10, 32\] classifies into 10 classes"):
        load_authors_weights(path, num_classes=100)


def test_unknown_key_is_refused_with_its_shape_unless_not_strict(tmp_path):
    sd = authors_state_dict("spikformer/imagenet")
    sd["block.0.attn.talking_heads.weight"] = torch.zeros(2, 2)
    path = save_like_timm(tmp_path / "a.pth", sd, num_heads=HEADS, time_step=T)
    with pytest.raises(AuthorsWeightsError) as err:
        load_authors_weights(path)
    assert "'block.0.attn.talking_heads.weight' [2, 2] has no place in" in str(err.value)
    _, report = load_authors_weights(path, strict=False)
    assert report["ignored"] == ["block.0.attn.talking_heads.weight"]


def test_target_without_a_source_is_refused(tmp_path):
    sd = authors_state_dict("spikingformer/cifar")
    del sd["block.0.attn.q_bn.running_var"]
    path = save_like_timm(tmp_path / "a.pth", sd, num_heads=HEADS)
    with pytest.raises(AuthorsWeightsError) as err:
        load_authors_weights(path)
    assert "'blocks.0.attn.q_bn.running_var' [32]" in str(err.value)
    assert "lacks 'block.0.attn.q_bn.running_var'" in str(err.value)


def test_unknown_size_needs_the_number_of_heads(tmp_path):
    sd = authors_state_dict("spikingformer/event")
    path = tmp_path / "dvs.pth"
    torch.save({"model": sd, "epoch": 3, "args": argparse.Namespace(T=T)}, path)
    with pytest.raises(AuthorsWeightsError, match="does not record num_heads"):
        load_authors_weights(path)
    model, report = load_authors_weights(path, num_heads=HEADS, img_size=SIZE)
    assert report["template"] == "spikingformer_2_256_dvs" and model.variant == "spikingformer_1_32_event"
    assert model.config.num_heads == HEADS and model.config.T == T and model.config.neuron.tau == 1.5


def test_settings_fixed_by_the_authors_code_cannot_be_overridden(tmp_path):
    path = save_like_timm(tmp_path / "a.pth", authors_state_dict("spikformer/event"), num_heads=HEADS)
    with pytest.raises(AuthorsWeightsError, match=r"attn_scale=0.125 contradicts .*cifar10dvs/model.py: 0.25"):
        load_authors_weights(path, attn_scale=0.125)
    with pytest.raises(AuthorsWeightsError, match="neuron"):
        load_authors_weights(path, neuron={"tau": 1.5})
    model, _ = load_authors_weights(path, neuron={"surrogate": "atan"}, T=3)  # free: not in the forward pass
    assert model.config.neuron.surrogate == "atan" and model.config.T == 3


class Payload:
    def __reduce__(self):
        return (exec, ("import sys; sys._spikemask_payload_ran = True",))


def test_a_pickle_holding_code_is_refused_without_running_it(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": authors_state_dict("spikformer/cifar"), "args": Payload()}, path)
    with pytest.raises(AuthorsWeightsError) as err:
        load_authors_weights(path)
    msg = str(err.value)
    assert "refused" in msg and "holds code" in msg and "exec" in msg and "False" not in msg
    assert not hasattr(sys, "_spikemask_payload_ran")


def test_files_that_are_not_authors_checkpoints(tmp_path):
    with pytest.raises(AuthorsWeightsError, match="does not exist"):
        load_authors_weights(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"\x80\x02garbage" * 10)
    with pytest.raises(AuthorsWeightsError, match="corrupt"):
        load_authors_weights(tmp_path / "junk.pth")
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}}, tmp_path / "resnet.pth")
    with pytest.raises(AuthorsWeightsError, match="not a Spikformer / Spikingformer state dict"):
        load_authors_weights(tmp_path / "resnet.pth")
    torch.save({"epoch": 1, "state_dict_ema": authors_state_dict("spikformer/cifar")}, tmp_path / "ema.pth")
    with pytest.raises(AuthorsWeightsError, match="pass ema=True"):
        load_authors_weights(tmp_path / "ema.pth")
    _, report = load_authors_weights(tmp_path / "ema.pth", ema=True, num_heads=HEADS)
    assert report["entry"] == "state_dict_ema"


def test_imported_model_saves_as_a_spikemask_checkpoint(tmp_path):
    from spikemask.train import load_model, save_checkpoint

    path = save_like_timm(tmp_path / "a.pth", authors_state_dict("spikformer/cifar"), num_heads=HEADS, time_step=T)
    model, report = load_authors_weights(path)
    out = save_checkpoint(tmp_path / "imported.pt", model, imported_from=str(path), import_report=report)
    again, state = load_model(out)  # weights_only: the report is plain data
    assert state["import_report"] == report and again.variant == model.variant
    x = inputs("spikformer/cifar").float()
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), model.eval()(x))


def test_import_weights_command(tmp_path, capsys):
    from spikemask.cli.main import main
    from spikemask.train import load_model

    path = save_like_timm(tmp_path / "a.pth", authors_state_dict("spikingformer/event"), num_heads=HEADS,
                          time_step=T)
    out = tmp_path / "imported.pt"
    assert main(["import-weights", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "spikingformer/event" in printed and str(out) in printed
    model, state = load_model(out)
    assert model.family == "spikingformer" and state["imported_from"] == str(path)
    # an existing output is never replaced silently; a bad source is one line
    assert main(["import-weights", str(path), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    assert main(["import-weights", str(tmp_path / "junk.pth"), "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "junk.pth" in err
