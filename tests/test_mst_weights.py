"""Loading the MST authors' checkpoints (spikemask.models.mst_weights).

The authors' code (bic-L/Masked-Spiking-Transformer) needs timm, spikingjelly and a GPU, so it cannot run
here. ``authors_state`` writes the state dict of their ``MaskedSpikingTransformer`` after main.py's
``replace_activation_by_floor`` key by key from ``models/mst.py`` (module order, shapes, their relative
position index and shift-mask code, ``MyFloor.up`` of shape [1]); ``save_like_main`` saves it as main.py
does, with a stand-in for yacs' ``CfgNode`` that pickles as yacs 0.1.8's does (a dict subclass, its flags
in ``__dict__``); ``authors_forward`` re-implements their forward in plain torch with spikemask's ``qcfs``
for ``MyFloor``. Sizes: 16x16 images, patch 4, embed 8, depths (2, 2), heads (2, 2), window 2; Swin-T's
real sizes on the meta device (shapes only).
"""

from __future__ import annotations

import math
import re
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from spikemask.conversion import convert, qcfs
from spikemask.conversion.qcfs import QCFS
from spikemask.models.convert import AuthorsWeightsError
from spikemask.models.mst_weights import detect, is_mst_checkpoint, load_mst_state, load_mst_weights

TINY = dict(img=16, patch=4, embed=8, depths=(2, 2), heads=(2, 2), window=2, mlp_ratio=2.0)


# ------------------------------------------------------------------------------------------------ their file


def _relative_index(w: int) -> torch.Tensor:  # SpikingWindowAttention.__init__, verbatim in substance
    coords = torch.stack(torch.meshgrid([torch.arange(w), torch.arange(w)], indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += w - 1
    rel[:, :, 1] += w - 1
    rel[:, :, 0] *= 2 * w - 1
    return rel.sum(-1)


def _attn_mask(res: int, w: int, shift: int) -> torch.Tensor:  # MaskedSpikingTransformerBlock.__init__
    img = torch.zeros(1, res, res, 1)
    cnt = 0
    for h in (slice(0, -w), slice(-w, -shift), slice(-shift, None)):
        for v in (slice(0, -w), slice(-w, -shift), slice(-shift, None)):
            img[:, h, v, :] = cnt
            cnt += 1
    win = img.view(1, res // w, w, res // w, w, 1).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w)
    mask = win.unsqueeze(1) - win.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


def _geometry(res: int, window: int, j: int) -> tuple[int, int]:
    """(window, shift) of block ``j`` at resolution ``res``: smaller grids take one unshifted window."""
    if res <= window:
        return res, 0
    return window, window // 2 if j % 2 else 0


def authors_state(img=16, patch=4, embed=8, depths=(2, 2), heads=(2, 2), window=2, mlp_ratio=2.0, classes=10,
                  imagenet=False, in_chans=3, meta=False, seed=0) -> dict[str, torch.Tensor]:
    """``MaskedSpikingTransformer(...).state_dict()`` after ``replace_activation_by_floor``, random values."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def t(*shape, lo=-0.5, hi=0.5):
        return torch.empty(shape, device="meta") if meta else torch.rand(shape, generator=g) * (hi - lo) + lo

    def buf(x):
        return x.to("meta") if meta else x

    def lin(name, i, o, bias=True, gain=1.5):
        sd[f"{name}.weight"] = t(o, i, lo=-1 / math.sqrt(i), hi=1 / math.sqrt(i)) * gain
        if bias:
            sd[f"{name}.bias"] = t(o, lo=-0.2, hi=0.2)

    def bn(name, n):
        sd.update({f"{name}.weight": t(n, lo=0.8, hi=1.2), f"{name}.bias": t(n, lo=-0.1, hi=0.3),
                   f"{name}.running_mean": t(n, lo=-0.2, hi=0.2), f"{name}.running_var": t(n, lo=0.3, hi=1.0),
                   f"{name}.num_batches_tracked": buf(torch.tensor(1000))})

    def up(name, lo=0.5, hi=1.5):
        sd[f"{name}.up"] = t(1, lo=lo, hi=hi)  # MyFloor: nn.Parameter(torch.tensor([up]))

    sd["patch_embed.proj.weight"] = t(embed, in_chans, patch, patch)
    sd["patch_embed.proj.bias"] = t(embed, lo=-0.1, hi=0.1)
    up("patch_embed.proj_if")
    bn("patch_embed.norm", embed)
    grid = img // patch
    for i, (depth, nh) in enumerate(zip(depths, heads)):
        C, res = embed * 2 ** i, grid // 2 ** i
        for j in range(depth):
            b, (w, shift) = f"layers.{i}.blocks.{j}", _geometry(res, window, j)
            if shift:
                sd[f"{b}.attn_mask"] = buf(_attn_mask(res, w, shift))  # the block's own buffer comes first
            bn(f"{b}.norm1", C)
            up(f"{b}.shortcut1_if")
            sd[f"{b}.attn.relative_position_bias_table"] = t((2 * w - 1) ** 2, nh)
            sd[f"{b}.attn.relative_position_index"] = buf(_relative_index(w))
            lin(f"{b}.attn.qkv", C, 3 * C, gain=2.5)  # sharp enough that q, k and scores matter
            for a in ("q_if", "k_if", "v_if", "attn_if", "attn_v_if"):
                up(f"{b}.attn.{a}", *((2.0, 4.0) if a == "attn_if" else (0.5, 1.5)))  # q kᵀ rarely saturates
            lin(f"{b}.attn.proj", C, C)
            up(f"{b}.attn.proj_if")
            bn(f"{b}.norm2", C)
            up(f"{b}.shortcut2_if")
            hidden = int(C * mlp_ratio)
            lin(f"{b}.mlp.fc1", C, hidden)
            if imagenet:
                bn(f"{b}.mlp.norm1", hidden)
            up(f"{b}.mlp.fc1_if")
            lin(f"{b}.mlp.fc2", hidden, C)
            if imagenet:
                bn(f"{b}.mlp.norm2", C)
            up(f"{b}.mlp.fc2_if")
        if i < len(depths) - 1:
            lin(f"layers.{i}.downsample.reduction", 4 * C, 2 * C, bias=False)
            bn(f"layers.{i}.downsample.norm", 4 * C)
            up(f"layers.{i}.downsample.reduction_if")
    features = embed * 2 ** (len(depths) - 1)
    sd["norm.weight"], sd["norm.bias"] = t(features, lo=0.8, hi=1.2), t(features, lo=-0.1, hi=0.1)
    lin("head", features, classes)
    return sd


class CfgNode(dict):
    """What yacs 0.1.8's CfgNode pickles as: a dict subclass with its flags in ``__dict__``."""

    def __init__(self, init=None, **kw):
        super().__init__(init or {}, **kw)
        self.__dict__.update({"__immutable__": True, "__deprecated_keys__": set(), "__renamed_keys__": {},
                              "__new_allowed__": False})

    def __getattr__(self, name):
        if name in self:
            return self[name]
        raise AttributeError(name)


CfgNode.__module__ = "yacs.config"


def authors_config(masking=0.0, dataset="cifar10", classes=10, qk_scale=None, img=16, **tiny) -> CfgNode:
    s = dict(TINY, **tiny)
    mst = CfgNode(PATCH_SIZE=s["patch"], IN_CHANS=3, EMBED_DIM=s["embed"], DEPTHS=list(s["depths"]),
                  NUM_HEADS=list(s["heads"]), WINDOW_SIZE=s["window"], MLP_RATIO=s["mlp_ratio"], QKV_BIAS=True,
                  QK_SCALE=qk_scale, APE=False, PATCH_NORM=True, MASKING_RATIO=masking)
    return CfgNode(DATA=CfgNode(DATASET=dataset, IMG_SIZE=img, DATA_PATH=""),
                   MODEL=CfgNode(TYPE="mst", NUM_CLASSES=classes, DROP_PATH_RATE=0.2, MST=mst),
                   TRAIN=CfgNode(EPOCHS=300, OPTIMIZER=CfgNode(NAME="adamw", BETAS=(0.9, 0.999))))


def save_like_main(path, sd, config, monkeypatch) -> None:
    """main.py's ``save_state`` (best_model.pth), its optimizer / scheduler / scaler entries included."""
    yacs, yacs_config = types.ModuleType("yacs"), types.ModuleType("yacs.config")
    yacs_config.CfgNode, yacs.config = CfgNode, yacs_config
    monkeypatch.setitem(sys.modules, "yacs", yacs)
    monkeypatch.setitem(sys.modules, "yacs.config", yacs_config)
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([p], lr=1e-4, weight_decay=0.05)
    p.sum().backward()
    opt.step()
    sched = {"t_initial": 300, "lr_min": 1e-5, "warmup_t": 20, "base_values": [1e-4], "noise_range_t": None}
    torch.save({"model": sd, "optimizer": opt.state_dict(), "lr_scheduler": sched, "max_accuracy": 97.27,
                "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 0}, "epoch": 99,
                "config": config}, path)


def our_name(key: str) -> str:
    """The brief's renaming table, written independently of the loader's rules."""
    for theirs, ours in (("patch_embed.proj_if.up", "patch_act.lam"), ("patch_embed.proj.", "patch_embed."),
                         ("patch_embed.norm.", "patch_norm.")):
        key = key.replace(theirs, ours)
    return re.sub(r"_if\.up$", "_act.lam", re.sub(r"mlp\.norm([12])\.", r"mlp.fc\1_bn.", key))


# ------------------------------------------------------------------------------------------------ their forward


def authors_forward(sd, x, levels, img=16, patch=4, embed=8, depths=(2, 2), heads=(2, 2), window=2, **_):
    """``MaskedSpikingTransformer.forward`` in eval mode, masks off, on their own keys."""
    def act(name, z):
        return qcfs(z, sd[f"{name}.up"], levels)  # MyFloor: up * clamp(floor(z / up * t + 0.5) / t, 0, 1)

    def bn(name, z):  # BatchNorm1d(z.transpose(1, 2)).transpose(1, 2)
        return F.batch_norm(z.transpose(1, 2), sd[f"{name}.running_mean"], sd[f"{name}.running_var"],
                            sd[f"{name}.weight"], sd[f"{name}.bias"], False, 0.0, 1e-5).transpose(1, 2)

    def lin(name, z):
        return F.linear(z, sd[f"{name}.weight"], sd.get(f"{name}.bias"))

    x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch).flatten(2).transpose(1, 2)
    x = act("patch_embed.proj_if", bn("patch_embed.norm", x))
    B = x.shape[0]
    for i, (depth, nh) in enumerate(zip(depths, heads)):
        C, res = embed * 2 ** i, img // patch // 2 ** i
        for j in range(depth):
            b, (w, shift) = f"layers.{i}.blocks.{j}", _geometry(res, window, j)
            shortcut = x
            h = act(f"{b}.shortcut1_if", bn(f"{b}.norm1", x)).view(B, res, res, C)
            h = torch.roll(h, (-shift, -shift), (1, 2)) if shift else h
            win = h.view(B, res // w, w, res // w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, C)
            Bw, N, _ = win.shape
            q, k, v = lin(f"{b}.attn.qkv", win).reshape(Bw, N, 3, nh, C // nh).permute(2, 0, 3, 1, 4)
            q, k = act(f"{b}.attn.q_if", q), act(f"{b}.attn.k_if", k)
            a = act(f"{b}.attn.attn_if", (q @ k.transpose(-2, -1)) * (C // nh) ** -0.5)
            v = act(f"{b}.attn.v_if", v)
            table, index = sd[f"{b}.attn.relative_position_bias_table"], sd[f"{b}.attn.relative_position_index"]
            a = a + table[index.view(-1)].view(N, N, -1).permute(2, 0, 1).unsqueeze(0)
            if shift:
                mask = sd[f"{b}.attn_mask"]
                a = (a.view(Bw // mask.shape[0], mask.shape[0], nh, N, N) + mask[None, :, None]).view(-1, nh, N, N)
            o = act(f"{b}.attn.attn_v_if", (a.softmax(-1) @ v).transpose(1, 2).reshape(Bw, N, C))
            o = act(f"{b}.attn.proj_if", lin(f"{b}.attn.proj", o))
            o = o.view(B, res // w, res // w, w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(B, res, res, C)
            o = torch.roll(o, (shift, shift), (1, 2)) if shift else o
            x = bn(f"{b}.norm2", shortcut + o.reshape(B, res * res, C))
            m = lin(f"{b}.mlp.fc1", act(f"{b}.shortcut2_if", x))
            m = act(f"{b}.mlp.fc1_if", bn(f"{b}.mlp.norm1", m) if f"{b}.mlp.norm1.weight" in sd else m)
            m = lin(f"{b}.mlp.fc2", m)
            x = x + act(f"{b}.mlp.fc2_if", bn(f"{b}.mlp.norm2", m) if f"{b}.mlp.norm2.weight" in sd else m)
        if i < len(depths) - 1:
            d, h = f"layers.{i}.downsample", x.view(B, res, res, C)
            h = torch.cat([h[:, 0::2, 0::2], h[:, 1::2, 0::2], h[:, 0::2, 1::2], h[:, 1::2, 1::2]], -1)
            x = act(f"{d}.reduction_if", lin(f"{d}.reduction", bn(f"{d}.norm", h.view(B, -1, 4 * C))))
    x = F.layer_norm(x, (x.shape[-1],), sd["norm.weight"], sd["norm.bias"]).mean(1)
    return lin("head", x)


# ------------------------------------------------------------------------------------------------ tests


@pytest.fixture
def main_file(tmp_path, monkeypatch):
    path = tmp_path / "best_model.pth"
    sd = authors_state()
    save_like_main(path, sd, authors_config(), monkeypatch)
    return path, sd


def test_every_tensor_lands_where_it_belongs(main_file):
    path, sd = main_file
    assert is_mst_checkpoint(path) and detect(sd)
    model, report = load_mst_weights(path, levels=8)
    own = model.state_dict()
    derived = {k for k in sd if k.endswith(("relative_position_index", "attn_mask"))}
    assert report["mapped"] == {k: our_name(k) for k in sd if k not in derived} and set(report["dropped"]) == derived
    assert set(report["mapped"].values()) == set(own)  # every tensor of ours has its source
    for key, target in report["mapped"].items():
        assert torch.equal(own[target], sd[key].reshape(own[target].shape)), key
    assert len(report["converted"]) == 10 * 4 + 1 + 1  # λ: 10 per block, the patch embedding, one merging
    lam = model.layers[1].blocks[1].attn.attn_v_act
    assert isinstance(lam, QCFS) and lam.levels == 8
    assert lam.lam.item() == sd["layers.1.blocks.1.attn.attn_v_if.up"].item()
    assert model.layers[0].downsample.reduction_act.lam.item() == sd["layers.0.downsample.reduction_if.up"].item()
    c = model.config
    assert (c.img_size, c.patch_size, c.embed_dim, c.depths, c.num_heads, c.window_size, c.mlp_ratio, c.mlp_bn) == \
        (16, 4, 8, (2, 2), (2, 2), 2, 2.0, False)
    assert report["layout"] == "mst/cifar" and report["template"] == "swin_t_bn_cifar"
    assert model.variant == report["variant"] == "swin_bn_2-2_8_16px_cifar"
    assert report["from_file"]["img_size"] == "layers.0.blocks.1.attn_mask [4, 4, 4]"
    assert report["authors_config"]["MODEL"]["MST"]["DEPTHS"] == [2, 2] and report["dataset"] == "cifar10"
    assert c.drop_path == 0.2 and report["from_config"]["drop_path"] == "MODEL.DROP_PATH_RATE"
    assert report["levels"]["value"] == 8 and "main.py uses t=16" in report["levels"]["source"]
    assert c.mask.ratio == 0.0 and report["mask"]["source"] == "config MODEL.MST.MASKING_RATIO"
    assert (report["epoch"], report["reported_metric"]) == (99, 97.27)
    assert not model.training


@pytest.mark.parametrize("imagenet", [False, True])
@pytest.mark.parametrize("levels", [8, 1024])  # 1024: fine enough that every λ and table moves the output
def test_forward_matches_the_authors_and_converts(tmp_path, imagenet, levels):
    sd = {k: v.double() if v.is_floating_point() else v for k, v in authors_state(imagenet=imagenet, classes=5).items()}
    torch.save(sd, tmp_path / "w.pth")
    model, report = load_mst_weights(tmp_path / "w.pth", levels=levels, mask_ratio=0.0)
    assert report["layout"] == f"mst/{'imagenet' if imagenet else 'cifar'}" and model.config.mlp_bn == imagenet
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = authors_forward(sd, x, levels=levels, **TINY)
    with torch.no_grad():
        out = model.double()(x)
    assert ref.std() > 0.01 and torch.allclose(out, ref, atol=1e-9)
    snn = convert(model.float(), T=8)
    with torch.no_grad():
        y = snn(x.float())
    assert y.shape == (3, 5) and torch.isfinite(y).all()


def test_mask_ratio_from_config_or_argument(tmp_path, monkeypatch):
    save_like_main(tmp_path / "m.pth", authors_state(imagenet=True), authors_config(masking=0.75), monkeypatch)
    model, report = load_mst_weights(tmp_path / "m.pth")
    assert (model.config.mask.ratio, model.config.mask.sites) == (0.75, ("attn.q", "attn.k", "attn.scores"))
    assert report["mask"]["source"] == "config MODEL.MST.MASKING_RATIO"
    assert any("without its masks" in w for w in report["warnings"])
    assert report["levels"]["value"] == 16 and "hard-codes t=16" in report["levels"]["source"]
    _, report = load_mst_weights(tmp_path / "m.pth", mask_ratio=0.0)
    assert any("differs from the ratio it was trained with" in w for w in report["warnings"])
    # a bare state dict (DDP prefix and all) records nothing: the argument decides, or a warning says so
    torch.save({f"module.{k}": v for k, v in authors_state().items()}, tmp_path / "bare.pth")
    model, report = load_mst_weights(tmp_path / "bare.pth", mask_ratio=0.75)
    assert model.config.mask.ratio == 0.75 and report["stripped_prefix"] == "module."
    assert report["entry"] == "(the file itself)" and report["authors_config"] is None
    _, report = load_mst_weights(tmp_path / "bare.pth")
    assert any("does not record its masking ratio" in w for w in report["warnings"])


def test_import_report_travels_in_a_checkpoint(main_file, tmp_path):
    from spikemask.train import load_model, save_checkpoint

    path, _ = main_file
    model, report = load_mst_weights(path, mask_ratio=0.5)
    save_checkpoint(tmp_path / "ck.pt", model, imported_from=str(path), import_report=report)
    again, state = load_model(tmp_path / "ck.pt")
    assert state["import_report"]["mask"]["ratio"] == 0.5 and again.config.mask.ratio == 0.5
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


@pytest.mark.parametrize("imagenet,classes,depths,variant", [
    (False, 100, (2, 2, 6, 2), "swin_t_bn_cifar"),
    (True, 1000, (2, 2, 6, 2), "swin_t_bn_imagenet"),
    (False, 10, (2, 2, 3, 2), "swin_bn_2-2-3-2_96_224px_cifar"),  # the code's default config
])
def test_swin_t_sizes_on_meta(imagenet, classes, depths, variant):
    sd = authors_state(img=224, patch=4, embed=96, depths=depths, heads=(3, 6, 12, 24), window=7, mlp_ratio=4.0,
                       classes=classes, imagenet=imagenet, meta=True)
    with torch.device("meta"):
        model, report = load_mst_state(sd)
    assert model.variant == variant and model.config.num_classes == classes
    assert len(report["converted"]) == 10 * sum(depths) + 1 + 3  # 124 for Swin-T (3 mergings)
    assert report["from_file"]["img_size"] == "layers.0.blocks.1.attn_mask [64, 49, 49]"
    if depths == (2, 2, 6, 2):  # Swin-T itself: only the classes and the mask sites differ from the variant
        assert report["template"] is None and set(report["config_changes"]) <= {"num_classes", "mask.sites"}


def test_refusals_name_the_key(tmp_path, monkeypatch):
    def load(sd, **kw):
        torch.save(sd, tmp_path / "x.pth")
        return load_mst_weights(tmp_path / "x.pth", **kw)

    sd = authors_state()
    bad = dict(sd, **{"layers.0.blocks.1.attn.qkv.weight": torch.zeros(24, 7)})
    with pytest.raises(AuthorsWeightsError, match=r"'layers\.0\.blocks\.1\.attn\.qkv\.weight' \[24, 7\] does not fit"):
        load(bad)
    extra = dict(sd, **{"layers.0.blocks.0.attn.extra_if.up": torch.ones(1)})
    with pytest.raises(AuthorsWeightsError, match=r"key 'layers\.0\.blocks\.0\.attn\.extra_if\.up' \[1\] has no place"):
        load(extra)
    assert load(extra, strict=False)[1]["ignored"] == ["layers.0.blocks.0.attn.extra_if.up"]
    lacking = {k: v for k, v in sd.items() if k != "layers.1.blocks.0.mlp.fc2_if.up"}
    with pytest.raises(AuthorsWeightsError, match=r"'layers\.1\.blocks\.0\.mlp\.fc2_act\.lam' \[\] .* has no source"):
        load(lacking)
    unshifted = {k: v for k, v in sd.items() if not k.endswith("attn_mask")}
    with pytest.raises(AuthorsWeightsError, match=r"'layers\.0\.blocks\.1' .* shifts its windows but the file has no"):
        load(unshifted)
    wrong_index = dict(sd, **{"layers.0.blocks.0.attn.relative_position_index": torch.zeros(4, 4, dtype=torch.long)})
    with pytest.raises(AuthorsWeightsError, match=r"relative_position_index' \[4, 4\] differs"):
        load(wrong_index)
    with pytest.raises(AuthorsWeightsError, match="classifies into 10 classes, not num_classes=100"):
        load(sd, num_classes=100)
    with pytest.raises(AuthorsWeightsError, match=r"'patch_embed\.proj\.weight' \[8, 3, 4, 4\] does not fit "
                                                  r"'patch_embed\.weight' \[96, 3, 4, 4\] of swin_t_bn_cifar"):
        load(sd, variant="swin_t_bn_cifar")  # a named variant must fit as it is
    with pytest.raises(AuthorsWeightsError, match="takes 2 input channels"):
        load(authors_state(in_chans=2))
    with pytest.raises(AuthorsWeightsError, match="mask"):
        load(sd, mask_ratio=1.0)
    with pytest.raises(AuthorsWeightsError, match="not an MST checkpoint"):
        load({"patch_embed.proj_conv.weight": torch.zeros(8, 3, 3, 3), "head.weight": torch.zeros(10, 8)})
    save_like_main(tmp_path / "qk.pth", sd, authors_config(qk_scale=0.1), monkeypatch)
    with pytest.raises(AuthorsWeightsError, match="QK_SCALE"):
        load_mst_weights(tmp_path / "qk.pth")


class Opaque:
    """Stands for any object other than a yacs config: unpickling it would run code."""


def test_other_objects_are_refused_with_the_resave_recipe(tmp_path):
    torch.save({"model": authors_state(), "config": Opaque()}, tmp_path / "odd.pth")
    with pytest.raises(AuthorsWeightsError, match=r"refused to load .*Opaque.*weights_only=False.*\['model'\]"):
        load_mst_weights(tmp_path / "odd.pth")
    assert not is_mst_checkpoint(tmp_path / "odd.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    assert not is_mst_checkpoint(tmp_path / "junk.pth") and not is_mst_checkpoint(tmp_path / "missing.pth")


def test_cli_import_detects_mst_and_the_checkpoint_carries_levels_and_masks(main_file, tmp_path, capsys):
    from spikemask.cli.main import main
    from spikemask.train import load_model

    path, sd = main_file
    out = tmp_path / "mst.pt"
    assert main(["import-weights", str(path), "--out", str(out), "--mask-ratio", "0.75", "--levels", "8"]) == 0
    printed = capsys.readouterr().out
    assert "mst/cifar" in printed and "QCFS levels 8" in printed and "masking ratio 0.75" in printed
    model, state = load_model(out)
    assert model.config.act.levels == 8 and model.config.mask.ratio == 0.75
    # evaluated as the authors did: their CIFAR-10 at 224 with their normalisation
    assert state["run_config"]["data"] == {"name": "cifar10", "augment": "mst_cifar",
                                           "eval_transform": "mst_cifar_eval"}
    assert model.layers[0].blocks[0].attn.q_act.lam.item() == sd["layers.0.blocks.0.attn.q_if.up"].item()
    # Spikformer-only flags are refused for an MST file, and the MST-only flag for a Spikformer file
    assert main(["import-weights", str(path), "--out", str(tmp_path / "x.pt"), "--ema"]) == 2
    assert "MST checkpoint" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()
    assert main(["import-weights", str(out), "--out", str(tmp_path / "y.pt")]) == 2  # ours: neither layout
    assert not (tmp_path / "y.pt").exists()
