"""Spikformer family and the model registry: sizes from the spec, shapes, errors, masking in the config."""

from __future__ import annotations

import copy
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import make_active

import spikemask as sm
from spikemask.config import ConfigError, to_dict
from spikemask.models import SpikformerConfig

ALL = sm.list_models()
# the spiking transformers (the conversion families swin_bn, resnet, vgg are counted in their own tests)
TRANSFORMERS = [n for n in ALL if sm.model_info(n)["family"] in ("spikformer", "spikingformer", "saformer")]


def independent_count(*, D: int, depth: int, in_channels: int, classes: int, qkv_bias: bool,
                      mlp_ratio: float = 4.0, learnable_scale: bool = False, attention: str = "ssa",
                      dwc_kernel: int = 3, dwc_bn: bool = True, vector_bn: bool = True) -> int:
    """Parameters of a spiking transformer, counted from the architectures in ../shared/spec/architectures.md.

    Every tokenizer has five 3x3 convs C -> D/8 -> D/4 -> D/2 -> D -> D, each with BN; SSA and SDSA
    project Q, K, V, SASA only Q and K but adds a depthwise conv (and its BN) on K.
    """
    conv3 = lambda cin, cout: 9 * cin * cout  # noqa: E731  (3x3, no bias)
    bn = lambda c: 2 * c  # noqa: E731  (weight + bias; running stats are buffers)
    chans = [in_channels, D // 8, D // 4, D // 2, D, D]
    tokenizer = sum(conv3(a, b) + bn(b) for a, b in zip(chans, chans[1:]))
    hidden = int(D * mlp_ratio)
    projections = 2 if attention == "sasa" else 3
    attn = projections * (D * D + (D if qkv_bias else 0) + bn(D)) + (D * D + D + bn(D))
    attn += 1 if learnable_scale and attention == "ssa" else 0
    if attention == "sasa" and dwc_kernel:
        attn += D * dwc_kernel ** 2 + (bn(D) if dwc_bn else 0)
    if attention == "sasa" and vector_bn:
        attn += bn(D)  # the BatchNorm in front of the attention-vector neuron
    mlp = (D * hidden + hidden + bn(hidden)) + (hidden * D + D + bn(D))
    head = D * classes + classes
    return tokenizer + depth * (attn + mlp) + head


def _meta(name: str, **overrides):
    with torch.device("meta"):
        return sm.create_model(name, **overrides)


# ---- registry -----------------------------------------------------------------------------------------


def test_list_models_sorted_and_filtered():
    assert ALL == sorted(ALL)
    expected = {"spikformer_2_256_dvs", "spikformer_4_384", "spikformer_4_256", "spikformer_2_384",
                "spikformer_8_384", "spikformer_8_512", "spikformer_8_768", "test_spikformer"}
    assert expected <= set(ALL)
    assert sm.list_models("spikformer_8_*") == ["spikformer_8_384", "spikformer_8_512", "spikformer_8_768"]
    assert sm.list_models("no_such_*") == []


def test_typo_lists_close_names():
    with pytest.raises(ValueError, match=r"unknown model 'spikformr_2_256_dvs'\. Did you mean spikformer_2_256_dvs"):
        sm.create_model("spikformr_2_256_dvs")
    with pytest.raises(ValueError, match="unknown model"):
        sm.model_info("spikformr_2_256_dvs")


def test_none_overrides_are_ignored():
    model = sm.create_model("test_spikformer", num_classes=None, T=None)
    assert model.config.num_classes == 10 and model.config.T == 2
    assert model.head.out_features == 10
    assert sm.create_model("test_spikformer", num_classes=7).head.out_features == 7


def test_unknown_override_names_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown config key 'model\.num_class'\. Did you mean 'num_classes'") as exc:
        sm.create_model("test_spikformer", num_class=5)
    assert "Valid keys under 'model':" in str(exc.value) and "embed_dim" in str(exc.value)


def test_wrong_override_type_names_the_path():
    with pytest.raises(ConfigError, match=r"model\.T: expected an integer, got 'two'"):
        sm.create_model("test_spikformer", T="two")


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(num_heads=0), "num_heads must be >= 1, got 0"),
        (dict(num_heads=3), "embed_dim 32 is not divisible by num_heads 3"),
        (dict(embed_dim=12, num_heads=1), "embed_dim must be a positive multiple of 8"),
        (dict(embed_dim=0), "model.embed_dim must be >= 8, got 0"),
        (dict(num_classes=0), "num_classes must be >= 1, got 0"),
        (dict(depth=-1), "depth must be >= 0, got -1"),
        (dict(in_channels=0), "in_channels must be >= 1, got 0"),
        (dict(T=0), "T must be >= 1, got 0"),
        (dict(sps_pool=[True, True]), "sps_pool needs 4 entries"),
    ],
)
def test_invalid_config_values(overrides, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        sm.create_model("test_spikformer", **overrides)


def test_variant_factory_function():
    from spikemask.models.spikformer import test_spikformer

    model = test_spikformer(num_classes=3)
    assert model.variant == "test_spikformer" and model.head.out_features == 3


# ---- sizes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_parameter_count_matches_architecture(name):
    model = _meta(name)  # also: every variant builds on the meta device
    c = model.config
    assert all(p.device.type == "meta" for p in model.parameters())
    expected = independent_count(D=c.embed_dim, depth=c.depth, in_channels=c.in_channels, classes=c.num_classes,
                                 qkv_bias=c.qkv_bias, mlp_ratio=c.mlp_ratio, learnable_scale=c.learnable_scale,
                                 attention=c.attention, dwc_kernel=c.sasa.dwc_kernel, dwc_bn=c.sasa.dwc_bn,
                                 vector_bn=c.sasa.vector_bn)
    assert sm.count_parameters(model) == expected
    assert sm.model_info(name)["params"] == expected
    assert sm.model_info(name)["family"] == name.split("_")[0 if not name.startswith("test_") else 1]


def test_published_parameter_counts():
    """Spec figures (../shared/spec/architectures.md) and the papers' rounded ones."""
    assert sm.model_info("spikformer_2_256_dvs")["params"] == 2_566_666
    assert sm.model_info("spikformer_4_384")["params"] == 9_324_730
    papers_m = {"spikformer_4_256": 4.15, "spikformer_2_384": 5.76, "spikformer_8_384": 16.81,
                "spikformer_8_512": 29.68, "spikformer_8_768": 66.34}
    for name, millions in papers_m.items():
        assert abs(sm.model_info(name)["params"] / 1e6 - millions) < 0.015, name


def test_learnable_scale_adds_one_parameter_per_block():
    base = sm.count_parameters(_meta("test_spikformer", depth=2))
    assert sm.count_parameters(_meta("test_spikformer", depth=2, learnable_scale=True)) == base + 2


@pytest.mark.parametrize(
    "name,tokens",
    [("spikformer_2_256_dvs", 64), ("spikformer_4_384", 64), ("spikformer_4_256", 64), ("spikformer_2_384", 64),
     ("spikformer_8_384", 196), ("spikformer_8_512", 196), ("spikformer_8_768", 196), ("test_spikformer", 16)],
)
def test_token_count(name, tokens):
    """SPS pooling: 128 -> 8x8, CIFAR 32 -> 8x8, ImageNet 224 -> 14x14 (meta device: shapes only)."""
    model = _meta(name, T=1)
    c = model.config
    with torch.device("meta"):
        feats = model.forward_features(torch.empty(2, c.in_channels, c.img_size, c.img_size))
    assert tuple(feats.shape) == (1, 2, tokens, c.embed_dim)  # [T, B, N, D]
    assert c.grid ** 2 == tokens
    assert f"tokens={tokens}" in repr(model)


def test_token_count_real_tensors():
    """The same pooling on real data (small width so the 128x128 input stays cheap)."""
    model = sm.create_model("spikformer_2_256_dvs", embed_dim=16, num_heads=2, depth=0, T=1).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.rand(1, 1, 2, 128, 128))
    assert tuple(feats.shape) == (1, 1, 64, 16)


# ---- forward ----------------------------------------------------------------------------------------------


def test_forward_shapes_static_and_events():
    model = sm.create_model("test_spikformer", num_classes=5).eval()
    with torch.no_grad():
        assert tuple(model(torch.rand(3, 2, 32, 32)).shape) == (3, 5)
        assert tuple(model(torch.rand(2, 3, 2, 32, 32)).shape) == (3, 5)
        assert tuple(model(torch.rand(4, 3, 2, 32, 32)).shape) == (3, 5)  # events may have another T


def test_static_input_equals_repeated_events():
    torch.manual_seed(0)
    frame = torch.poisson(torch.full((4, 2, 32, 32), 0.4))
    events = frame.unsqueeze(0).repeat(2, 1, 1, 1, 1)  # [T=2, B, C, H, W]
    model = make_active(sm.create_model("test_spikformer"), events)
    with torch.no_grad():
        feats = model.forward_features(frame)
        static, evt = model(frame), model(events)
    assert feats.abs().sum() > 0  # the model fires, so the equality below is not the head bias alone
    assert torch.equal(static, evt)
    # independent check of the head: mean over T and tokens, then the linear layer
    torch.testing.assert_close(static, model.head(feats.mean(dim=(0, 2))))


def test_spike_stream_is_integer_valued(active_tiny):
    model, x = active_tiny
    with torch.no_grad():
        feats = model.forward_features(x)
    assert torch.equal(feats, feats.round()) and feats.min() >= 0


@pytest.mark.parametrize(
    "shape", [(2, 3, 32, 32), (2, 2, 16, 16), (2, 32, 32), (1, 2, 2, 2, 32, 32), (2, 2, 2, 32, 32, 1)]
)
def test_wrong_input_shape(shape):
    model = sm.create_model("test_spikformer")
    with pytest.raises(ValueError) as exc:
        model(torch.zeros(shape))
    msg = str(exc.value)
    assert "[B, 2, 32, 32]" in msg and "[T, B, 2, 32, 32]" in msg  # what it expects
    assert str(tuple(shape)) in msg  # what it got


# ---- masking in the config ------------------------------------------------------------------------------


def _mask_reprs(model) -> dict[str, str]:
    return {m.site: repr(m) for m in model.modules() if isinstance(m, sm.SpikeMask)}


def test_mask_is_in_config_and_repr():
    model = sm.create_model("test_spikformer", mask={"ratio": 0.5})
    assert model.config.mask.ratio == 0.5
    reprs = _mask_reprs(model)
    for site in ("attn.q", "attn.k", "attn.scores", "mlp.hidden"):  # the default sites
        assert "ratio=0.5" in reprs[site], reprs[site]
    assert "ratio=0" in reprs["mlp.hidden_pre"] and "ratio=0.5" not in reprs["mlp.hidden_pre"]
    text = repr(model)
    assert text.count("ratio=0.5") == 4
    assert "τ=0.5 on attn.k, attn.q, attn.scores, mlp.hidden" in text
    assert to_dict(model.config)["mask"]["ratio"] == 0.5


def test_mask_config_object_accepted():
    model = sm.create_model("test_spikformer", mask=sm.MaskConfig(ratio=0.2, sites=("attn.q",)))
    reprs = _mask_reprs(model)
    assert "ratio=0.2" in reprs["attn.q"] and "ratio=0.2" not in reprs["attn.k"]


@pytest.mark.parametrize("mask", [{"sites": ["attn.qq"]}, {"site_ratios": {"attn.qq": 0.3}}])
def test_unknown_mask_site(mask):
    with pytest.raises(ValueError, match=r"unknown mask site 'attn\.qq'.*Valid sites: attn\.q, attn\.k, attn\.scores"):
        sm.create_model("test_spikformer", mask=mask)


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5])
def test_mask_ratio_range(ratio):
    with pytest.raises(ValueError, match=r"mask\.ratio must be in \[0, 1\)"):
        sm.create_model("test_spikformer", mask={"ratio": ratio})
    model = sm.create_model("test_spikformer")
    with pytest.raises(ValueError, match=r"mask\.ratio must be in \[0, 1\)"):
        sm.apply_rsm(model, ratio=ratio)
    assert model.config.mask.ratio == 0.0  # a refused change leaves the model as it was


def test_apply_rsm_updates_config_and_modules():
    model = sm.apply_rsm(sm.create_model("test_spikformer"), ratio=0.3, sites=["attn.scores"])
    assert model.config.mask.ratio == 0.3 and model.config.mask.sites == ("attn.scores",)
    reprs = _mask_reprs(model)
    assert "ratio=0.3" in reprs["attn.scores"] and "ratio=0.3" not in reprs["attn.q"]
    with pytest.raises(ValueError, match="unknown mask site 'mlp.hiden'"):
        sm.apply_rsm(model, sites=["mlp.hiden"])


# ---- rebuild from the stored config ---------------------------------------------------------------------


def test_build_model_from_config_dict():
    model = sm.create_model("test_spikformer", num_classes=4, mask={"ratio": 0.2, "seed": 3},
                            neuron={"tau": 1.5, "surrogate": "atan"})
    stored = to_dict(model.config)
    rebuilt = sm.build_model("spikformer", stored, variant="test_spikformer")
    assert rebuilt.config == model.config
    assert isinstance(rebuilt.config, SpikformerConfig)
    assert rebuilt.config.sps_pool == (False, True, True, True)  # tuples come back as tuples
    assert repr(rebuilt) == repr(model)
    assert rebuilt.variant == "test_spikformer"
    with pytest.raises(ConfigError, match="unknown model family 'spikformr'; known: .*spikformer, spikingformer"):
        sm.build_model("spikformr", stored)


# ---- learning ---------------------------------------------------------------------------------------------


def test_tiny_model_learns_through_surrogate():
    """A few AdamW steps on a fixed batch reduce the loss with the head frozen: the signal crosses the LIFs."""
    torch.manual_seed(0)
    model = sm.create_model("test_spikformer").train()
    x = torch.poisson(torch.full((2, 8, 2, 32, 32), 0.5))
    y = torch.arange(8) % 4
    body = [p for n, p in model.named_parameters() if not n.startswith("head.")]
    opt = torch.optim.AdamW(body, lr=1e-2, weight_decay=0.0)
    losses = []
    for step in range(8):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        if step == 0:  # the first conv sits below every neuron: its gradient is all surrogate
            g = model.sps.stages[0].conv.weight.grad
            assert torch.isfinite(g).all() and g.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses


@pytest.mark.parametrize("name", ["test_spikformer", "test_spikingformer", "test_saformer"])
def test_channels_last_tokenizer_computes_the_same(name):
    """``channels_last`` (the default) only changes how the tokenizer's frames are laid out in memory: the same
    logits and gradients as contiguous NCHW frames, to float rounding, and the frames really are NHWC."""
    torch.manual_seed(0)
    nhwc = make_active(sm.create_model(name), torch.poisson(torch.full((2, 3, 2, 32, 32), 0.4)))
    nchw = copy.deepcopy(nhwc)  # same weights and BN settings (make_active changes the BN momentum)
    nchw.config.channels_last = False
    x = torch.poisson(torch.full((2, 3, 2, 32, 32), 0.4))
    seen = []
    conv = next(m for m in nhwc.sps.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, a, o: seen.append(a[0].is_contiguous(memory_format=torch.channels_last)))
    for model in (nhwc, nchw):
        model.train()
        F.cross_entropy(model(x), torch.arange(3)).backward()
    assert seen == [True]
    nhwc.eval(), nchw.eval()
    with torch.no_grad():
        assert torch.allclose(nhwc(x), nchw(x), rtol=0, atol=1e-4)
    for (k, a), b in zip(nhwc.named_parameters(), nchw.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-3, atol=1e-5), k
