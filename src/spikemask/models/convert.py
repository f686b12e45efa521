"""Load the authors' released Spikformer / Spikingformer checkpoints into spikemask models.

Spikformer (000, Zhou et al. ICLR 2023): github.com/ZK-Zhou/spikformer; Spikingformer (004):
github.com/zhouchenlin2096/Spikingformer. Their model files name modules differently per data set; each
naming is a :class:`Layout`, told apart by key names alone (``block.i`` prefixes: ``i`` < depth):

=====================  ==========================================  ==========================================
layout                 authors' file                               keys that identify it
=====================  ==========================================  ==========================================
spikformer/event       spikformer cifar10dvs/model.py              ``patch_embed.rpe_conv``, ``mlp.fc1_conv``
                                                                   Conv1d ``[4D, D, 1]``; ``pos_embed``, ``norm``
spikformer/cifar       spikformer cifar10/model.py                 ``patch_embed.rpe_conv``, ``attn.q_linear``
spikformer/imagenet    spikformer imagenet/model.py                ``patch_embed.rpe_conv``, ``mlp.fc1_conv``
                                                                   Conv2d ``[4D, D, 1, 1]``
spikformer/cifar-v0    spikformer model.py (repository root)       ``patch_embed.block1_conv`` + ``rpe_conv``
spikingformer/event    Spikingformer cifar10-dvs, dvs128-gesture   ``patch_embed.proj4_conv``, 2 input channels
spikingformer/imagenet Spikingformer imagenet/model.py             ``patch_embed.proj4_conv``, 3 input channels
spikingformer/cifar    Spikingformer cifar10, cifar100             ``patch_embed.block0_conv``
=====================  ==========================================  ==========================================

Mapping: tokenizer convs / BNs -> ``sps.stages.{0..3}``, ``sps.rpe`` (Spikformer) or ``sps.stem``,
``sps.stages.{0..3}`` (Spikingformer); ``block.i.attn.{q,k,v,proj}_{conv,linear}`` -> ``blocks.i.attn.{q,k,v,proj}``
(Conv1d ``[D, D, 1]`` -> Linear ``[D, D]``); ``block.i.mlp.{fc1,fc2}_{conv,linear}`` or ``mlp{1,2}_conv``
(Conv2d ``[4D, D, 1, 1]`` -> Linear) -> ``blocks.i.mlp.{fc1,fc2}``; every BatchNorm 1:1 (BatchNorm2d of a
1x1-conv MLP = :class:`~spikemask.layers.TokenBN`); ``head`` 1:1. Dropped, because their forward never
reads them: ``block.i.norm1`` / ``norm2`` (LayerNorms), and for spikformer/event ``pos_embed`` and ``norm``.

What the weights cannot say comes from the authors' code and is set in the model config: where the
tokenizer pools, the SSA scale (0.25 for Spikformer's event code, 0.125 elsewhere), Q/K/V bias, tau (1.5 for
Spikingformer on events, 2.0 elsewhere), threshold 0.5 of the attention neuron. The number of heads, T and
the image size come from the file's training ``args`` when they are there, else from the variant.

Input order: the authors' event models take ``[B, T, C, H, W]``; spikemask models take ``[T, B, C, H, W]``.

CLI: ``spikemask import-weights SOURCE --out CHECKPOINT [--variant NAME] [--num-classes N]``.
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import merge, to_dict
from ..train.checkpoint import read_torch_file
from .registry import create_model, list_models, resolve_config

__all__ = ["AuthorsWeightsError", "LAYOUTS", "Layout", "detect_layout", "load_authors_weights", "read_authors_file"]

log = logging.getLogger(__name__)


class AuthorsWeightsError(ValueError):
    """An authors' checkpoint is unreadable, unsafe, or does not fit a spikemask model (the message names the key)."""


@dataclass(frozen=True)
class Layout:
    """One naming of the authors' modules and what their forward pass does that the names do not say."""

    name: str
    family: str
    code: str  # the authors' model file(s)
    tokenizer: tuple[tuple[str, str, str], ...]  # (conv, bn) under ``patch_embed.`` -> ours under ``sps.``
    attn: str  # ``block.i.attn.{q,k,v,proj}_<attn>``: "conv" (Conv1d) or "linear"
    mlp: tuple[tuple[str, str, str], ...]  # (layer, bn) under ``block.i.mlp.`` -> ours
    pools: tuple[bool, bool, bool, bool]
    attn_scale: float
    tau: float
    unused: tuple[str, ...] = ()  # regexes of keys the forward never reads, besides block.i.norm1/norm2

    @property
    def kind(self) -> str:
        return self.name.split("/")[1].replace("-", "_")


def _names(stems: list[str], ours: list[str]) -> tuple[tuple[str, str, str], ...]:
    """(conv, bn, ours) for each ``stem`` (``{}`` stands for conv / bn)."""
    return tuple((stem.format("conv"), stem.format("bn"), o) for stem, o in zip(stems, ours))


def _fc(kind: str) -> tuple[tuple[str, str, str], ...]:
    return (f"fc1_{kind}", "fc1_bn", "fc1"), (f"fc2_{kind}", "fc2_bn", "fc2")


_STAGES = [f"stages.{i}" for i in range(4)]
_SPS = _names(["proj_{}", "proj_{}1", "proj_{}2", "proj_{}3", "rpe_{}"], _STAGES + ["rpe"])
_SPS_V0 = _names(["block1_{}", "block2_{}", "block3_{}", "block4_{}", "rpe_{}"], _STAGES + ["rpe"])
_TOK_PROJ = _names(["proj_{}", "proj1_{}", "proj2_{}", "proj3_{}", "proj4_{}"], ["stem"] + _STAGES)
_TOK_BLOCK = _names(["block0_{}", "block1_{}", "block2_{}", "block3_{}", "block4_{}"], ["stem"] + _STAGES)
_MLP_SF = (("mlp1_conv", "mlp1_bn", "fc1"), ("mlp2_conv", "mlp2_bn", "fc2"))
_ALL, _LAST2 = (True, True, True, True), (False, False, True, True)
_SF, _SGF = "ZK-Zhou/spikformer ", "zhouchenlin2096/Spikingformer "

LAYOUTS: dict[str, Layout] = {lay.name: lay for lay in (
    Layout("spikformer/event", "spikformer", _SF + "cifar10dvs/model.py", _SPS, "conv", _fc("conv"), _ALL, 0.25, 2.0,
           unused=(r"pos_embed", r"norm\.(weight|bias)")),
    Layout("spikformer/cifar", "spikformer", _SF + "cifar10/model.py", _SPS, "linear", _fc("linear"), _LAST2, 0.125,
           2.0),
    Layout("spikformer/imagenet", "spikformer", _SF + "imagenet/model.py", _SPS, "conv", _fc("conv"), _ALL, 0.125, 2.0),
    Layout("spikformer/cifar-v0", "spikformer", _SF + "model.py", _SPS_V0, "conv", _fc("conv"), _LAST2, 0.125, 2.0),
    Layout("spikingformer/event", "spikingformer", _SGF + "cifar10-dvs/model.py, dvs128-gesture/model.py", _TOK_PROJ,
           "conv", _MLP_SF, _ALL, 0.125, 1.5),
    Layout("spikingformer/imagenet", "spikingformer", _SGF + "imagenet/model.py", _TOK_PROJ, "conv", _MLP_SF, _ALL,
           0.125, 2.0),
    Layout("spikingformer/cifar", "spikingformer", _SGF + "cifar10/model.py, cifar100/model.py", _TOK_BLOCK, "conv",
           _MLP_SF, _LAST2, 0.125, 2.0),
)}

_UNUSED = {r"block\.\d+\.norm[12]\.(weight|bias)": "LayerNorm the Block builds but its forward never calls",
           r"pos_embed": "position parameter the forward never reads (rpe_conv is the position embedding)",
           r"norm\.(weight|bias)": "final LayerNorm the forward never calls",
           r"n_averaged": "the EMA wrapper's step counter"}
_STYLE = {"spikformer": dict(tokenizer="spikformer", residual="spike"),
          "spikingformer": dict(tokenizer="spikingformer", residual="membrane")}


# ------------------------------------------------------------------------------------------------ reading


def _allowed_globals() -> tuple[frozenset[str], tuple[Any, ...]]:
    """What the authors' files may hold besides tensors: their training ``args`` and numpy scalars / dtypes."""
    import numpy

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    dtypes = [getattr(numpy.dtypes, n) for n in dir(getattr(numpy, "dtypes", ())) if n.endswith("DType")]
    names = {"argparse.Namespace", "numpy.dtype", "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar"}
    names |= {f"numpy.dtypes.{d.__name__}" for d in dtypes}
    objects = (argparse.Namespace, numpy.dtype, (scalar, "numpy.core.multiarray.scalar"),
               (scalar, "numpy._core.multiarray.scalar"), *dtypes)
    return frozenset(names), objects


def read_authors_file(path: str | Path, *, allow: tuple[Any, ...] = (), allow_names: frozenset[str] = frozenset(),
                      allowed: str = "its training arguments and numpy scalars") -> Any:
    """``torch.load(weights_only=True)`` that also allows the training ``args`` (an argparse.Namespace) and
    numpy scalars the authors' scripts save; anything else that would be unpickled as code is refused.

    allow / allow_names: further classes (and their pickled names) another loader's files hold (MST's yacs
    config, :mod:`.mst_weights`); ``allowed`` says what is allowed in the refusal message.
    """
    names, objects = _allowed_globals()
    return read_torch_file(path, what="authors' checkpoint", error=AuthorsWeightsError, allow=objects + tuple(allow),
                           allow_names=names | allow_names,
                           holds=f"a released checkpoint never holds ({allowed} are allowed)")


def _find_state_dict(obj: Any, path: Path, ema: bool) -> tuple[str, dict[str, torch.Tensor]]:
    """The entry holding the weights: ``state_dict`` (timm), ``model`` (torchvision-style scripts), their
    ``_ema`` twins with ``ema``, or the file itself when it is a bare state dict."""
    if not isinstance(obj, dict):
        raise AuthorsWeightsError(f"{str(path)!r} holds a {type(obj).__name__}, not a checkpoint dict")
    names = ("state_dict_ema", "model_ema") if ema else ("state_dict", "model")
    for name in names:
        sd = obj.get(name)
        if isinstance(sd, dict) and sd and all(isinstance(v, torch.Tensor) for v in sd.values()):
            return name, sd
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return "(the file itself)", obj
    entries = ", ".join(sorted(map(str, obj))[:12])
    hint = "; it has EMA weights: pass ema=True (--ema)" if not ema and "state_dict_ema" in obj else ""
    raise AuthorsWeightsError(f"{str(path)!r}: no state dict under {' or '.join(names)} (entries: {entries}){hint}")


def _strip_prefix(state: dict[str, torch.Tensor], path: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """Drop DistributedDataParallel's / DataParallel's ``module.`` prefixes."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key
        while name.startswith("module."):
            name = name[len("module."):]
        if name in out:
            raise AuthorsWeightsError(f"{str(path)!r} holds {name!r} twice (with and without a 'module.' prefix)")
        out[name] = value
    return out, any(k.startswith("module.") for k in state)


# ------------------------------------------------------------------------------------------------ layouts


def detect_layout(state: dict[str, torch.Tensor], path: str | Path = "the file") -> Layout:
    """The layout whose names ``state`` uses (keys without ``module.``)."""
    def has(module: str) -> bool:
        return f"patch_embed.{module}.weight" in state

    fc1 = next((v for k, v in state.items() if re.fullmatch(r"block\.\d+\.mlp\.fc1_conv\.weight", k)), None)
    if has("rpe_conv") and has("block1_conv"):
        return LAYOUTS["spikformer/cifar-v0"]
    if has("rpe_conv") and any(re.match(r"block\.\d+\.attn\.q_linear\.", k) for k in state):
        return LAYOUTS["spikformer/cifar"]
    if has("rpe_conv") and fc1 is not None:
        return LAYOUTS["spikformer/event" if fc1.dim() == 3 else "spikformer/imagenet"]
    if has("block0_conv"):
        return LAYOUTS["spikingformer/cifar"]
    if has("proj4_conv") and has("proj_conv"):  # the same names on events and ImageNet: 2 channels are events
        return LAYOUTS["spikingformer/event" if state["patch_embed.proj_conv.weight"].shape[1] == 2
                       else "spikingformer/imagenet"]
    first = ", ".join(list(state)[:4])
    raise AuthorsWeightsError(f"{str(path)!r} is not a Spikformer / Spikingformer state dict this loader knows: "
                              f"no patch_embed.rpe_conv (+ block.i.mlp.fc1_*), block0_conv or proj4_conv "
                              f"(first keys: {first})")


def _key_map(layout: Layout, depth: int) -> dict[str, str]:
    """Authors' module name -> ours, for every module the authors' forward pass uses."""
    pairs = []
    for conv, bn, ours in layout.tokenizer:
        pairs += [(f"patch_embed.{conv}", f"sps.{ours}.conv"), (f"patch_embed.{bn}", f"sps.{ours}.bn")]
    for i in range(depth):
        for p in ("q", "k", "v", "proj"):
            pairs += [(f"block.{i}.attn.{p}_{layout.attn}", f"blocks.{i}.attn.{p}"),
                      (f"block.{i}.attn.{p}_bn", f"blocks.{i}.attn.{p}_bn")]
        for layer, bn, ours in layout.mlp:
            pairs += [(f"block.{i}.mlp.{layer}", f"blocks.{i}.mlp.{ours}"),
                      (f"block.{i}.mlp.{bn}", f"blocks.{i}.mlp.{ours}_bn")]
    return dict(pairs + [("head", "head")])


def _unused_reason(layout: Layout, key: str) -> str | None:
    allowed = (r"block\.\d+\.norm[12]\.(weight|bias)", r"n_averaged") + layout.unused
    return next((_UNUSED[p] for p in allowed if re.fullmatch(p, key)), None)


def _shape(state: dict[str, torch.Tensor], key: str, path: Path) -> tuple[int, ...]:
    if key not in state:
        raise AuthorsWeightsError(f"{str(path)!r} lacks {key!r}, which every model of its layout has")
    return tuple(state[key].shape)


def _structure(state: dict[str, torch.Tensor], layout: Layout, path: Path) -> dict[str, Any]:
    """What the weights say: D (last tokenizer conv), depth, input channels, MLP ratio, classes, Q/K/V bias."""
    D = _shape(state, f"patch_embed.{layout.tokenizer[-1][0]}.weight", path)[0]
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"block\.(\d+)\.", k))})
    if blocks != list(range(len(blocks))):
        raise AuthorsWeightsError(f"{str(path)!r}: transformer blocks {blocks} are not numbered 0..{len(blocks) - 1}")
    hidden = _shape(state, f"block.0.mlp.{layout.mlp[0][0]}.weight", path)[0] if blocks else 4 * D
    channels = _shape(state, f"patch_embed.{layout.tokenizer[0][0]}.weight", path)[1]
    return dict(embed_dim=D, depth=len(blocks), in_channels=channels, mlp_ratio=hidden / D,
                num_classes=_shape(state, "head.weight", path)[0],
                qkv_bias=f"block.0.attn.q_{layout.attn}.bias" in state)


def _file_hints(obj: dict[str, Any], state: dict[str, torch.Tensor], layout: Layout) -> dict[str, tuple[int, str]]:
    """Config values the file records besides its weights: from its training ``args`` (timm's ``time_step``,
    ``num_heads``, ``img_size``; the event scripts' ``T``) and the unused ``pos_embed`` (its token count)."""
    args = obj.get("args")
    args = vars(args) if isinstance(args, argparse.Namespace) else args if isinstance(args, dict) else {}
    hints: dict[str, tuple[int, str]] = {}
    for field, names in (("num_heads", ("num_heads",)), ("T", ("time_step", "T")), ("img_size", ("img_size",))):
        for n in names:
            v = args.get(n)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                hints[field] = (v, f"args.{n}")
                break
    pos = state.get("pos_embed")
    if "img_size" not in hints and pos is not None and pos.dim() == 3:
        side = round(pos.shape[1] ** 0.5)
        if side * side == pos.shape[1]:
            hints["img_size"] = (side * 2 ** sum(layout.pools), f"pos_embed {list(pos.shape)}")
    return hints


# ------------------------------------------------------------------------------------------------ the model


def _semantics(layout: Layout, qkv_bias: bool) -> dict[str, Any]:
    """The config values that make a spikemask model compute what the authors' forward computes."""
    return dict(_STYLE[layout.family], attention="ssa", sps_pool=list(layout.pools), attn_scale=layout.attn_scale,
                learnable_scale=False, attn_v_threshold=0.5, qkv_bias=qkv_bias, head="avgpool_fc",
                neuron=dict(kind="lif", tau=layout.tau, v_threshold=1.0, v_reset=0.0, v_init=None))


def _pick_variant(layout: Layout, s: dict[str, Any]) -> tuple[str, bool]:
    """(variant, exact): a registered variant of the same structure and data kind, else one of the same data
    kind (or family) whose structure is then overridden."""
    style = dict(_STYLE[layout.family], attention="ssa")
    same_kind, same_style = [], []
    for name in list_models():
        c = resolve_config(name)
        if name.startswith("test_") or any(getattr(c, k, None) != v for k, v in style.items()):  # other families
            continue
        same_style.append(name)
        if c.in_channels == s["in_channels"] and tuple(c.sps_pool) == layout.pools:
            same_kind.append(name)
            if (c.embed_dim, c.depth, c.mlp_ratio) == (s["embed_dim"], s["depth"], s["mlp_ratio"]):
                return name, True
    if not (same_kind or same_style):
        raise AuthorsWeightsError(f"no registered {layout.family} variant to load a {layout.name} file into")
    return (same_kind or same_style)[0], False


def _contradicts(fixed: Any, value: Any) -> bool:
    """Whether ``value`` changes a field of ``fixed`` (fields ``fixed`` does not name are free)."""
    if isinstance(fixed, dict) and isinstance(value, dict):
        return any(k in fixed and _contradicts(fixed[k], v) for k, v in value.items())
    return to_dict(value) != to_dict(fixed)


def _changes(before: Any, after: Any, prefix: str = "") -> dict[str, list[Any]]:
    if isinstance(before, dict) and isinstance(after, dict):
        out: dict[str, list[Any]] = {}
        for k in after:
            out.update(_changes(before.get(k), after[k], f"{prefix}{k}."))
        return out
    return {} if before == after else {prefix[:-1]: [before, after]}


def _convert(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, str | None]:
    """Conv1d ``[O, I, 1]`` / Conv2d ``[O, I, 1, 1]`` weights -> Linear ``[O, I]``; anything else as is."""
    if dst.dim() == 2 and src.dim() > 2 and all(n == 1 for n in src.shape[2:]):
        kind = "Conv1d" if src.dim() == 3 else "Conv2d 1x1"
        return src.reshape(src.shape[0], src.shape[1]), f"{kind} {list(src.shape)} -> Linear {list(src.shape[:2])}"
    return src, None


def _plain(value: Any) -> Any:
    """A number the report can hold (numpy scalars become floats); None for anything else."""
    try:
        return float(value) if not isinstance(value, (bool, str)) and value is not None else None
    except (TypeError, ValueError, RuntimeError):  # RuntimeError: a tensor of several numbers
        return None


def load_authors_weights(path: str | Path, variant: str | None = None, family: str | None = None,
                         num_classes: int | None = None, strict: bool = True, *, ema: bool = False,
                         **overrides: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Build a spikemask model computing what the authors' checkpoint at ``path`` computes; return it (in eval
    mode) and a plain-dict report.

    variant: the spikemask variant to load into; every shape is checked against it (``num_classes`` follows
        the file's head). None: the registered variant of the file's structure and data kind; if none has
        it, one of the same data kind with embed_dim / depth / mlp_ratio overridden (then ``num_heads`` must
        be known: from the file's ``args`` or ``overrides``).
    family: ``"spikformer"`` or ``"spikingformer"``, checked against the file's layout.
    num_classes: checked against the file's classifier.
    strict: refuse keys that have no place in the model (False: skip them, listed in ``report["ignored"]``).
        Unused keys the authors' code is known to make are dropped either way; a spikemask tensor without a
        source (except BatchNorm's ``num_batches_tracked``) and a shape mismatch are always refused.
    ema: load the EMA weights (``state_dict_ema`` / ``model_ema``).
    overrides: config fields the weights do not fix (``num_heads``, ``T``, ``img_size``, ``mask``); ``None``
        values are ignored. Fields fixed by the authors' code (scale, tau, pooling, ...) cannot be overridden.
    """
    path = Path(path)
    obj = read_authors_file(path)
    entry, raw = _find_state_dict(obj, path, ema)
    state, stripped = _strip_prefix(raw, path)
    layout = detect_layout(state, path)
    where = f"{str(path)!r} ({layout.name}, {layout.code})"
    if family is not None and family != layout.family:
        raise AuthorsWeightsError(f"{where} holds a {layout.family}, not a {family}")
    s = _structure(state, layout, path)
    if num_classes is not None and num_classes != s["num_classes"]:
        raise AuthorsWeightsError(f"{where}: its head.weight {list(state['head.weight'].shape)} classifies into "
                                  f"{s['num_classes']} classes, not num_classes={num_classes}")
    fixed = _semantics(layout, s["qkv_bias"])
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for key, value in overrides.items():
        if key in fixed and _contradicts(fixed[key], value):
            raise AuthorsWeightsError(f"{key}={value!r} contradicts the authors' code ({layout.code}: {fixed[key]!r})")
    hints = _file_hints(obj, state, layout)
    label, exact = variant, True
    if variant is None:
        variant, exact = _pick_variant(layout, s)
        label = variant if exact else f"{layout.family}_{s['depth']}_{s['embed_dim']}_{layout.kind}"
        if not exact and "num_heads" not in hints and "num_heads" not in overrides:
            raise AuthorsWeightsError(
                f"{where}: no registered variant has its structure (embed_dim {s['embed_dim']}, depth {s['depth']}, "
                f"mlp_ratio {s['mlp_ratio']:g}, {s['in_channels']} input channels) and the file does not record "
                f"num_heads: pass num_heads (--num-heads), or a variant")
    base = to_dict(resolve_config(variant))
    structure = {} if exact else {k: s[k] for k in ("embed_dim", "depth", "in_channels", "mlp_ratio")}
    settings = merge(merge(merge({k: v for k, (v, _) in hints.items()}, structure), fixed),
                     dict(overrides, num_classes=s["num_classes"]))
    try:
        config = to_dict(resolve_config(variant, **settings))
        model = create_model(variant, **settings)
    except ValueError as exc:
        raise AuthorsWeightsError(f"{where} cannot be loaded into {variant}: {exc}") from None
    if model.family != layout.family:
        raise AuthorsWeightsError(f"{where} holds a {layout.family}, but {variant} is a {model.family} model")
    model.variant = label

    c = model.config
    own, key_map = model.state_dict(), _key_map(layout, max(s["depth"], c.depth))
    inverse = {v: k for k, v in key_map.items()}
    ours = f"{label} (embed_dim {c.embed_dim}, depth {c.depth}, mlp_ratio {c.mlp_ratio:g}, {c.in_channels} channels)"
    loaded: dict[str, torch.Tensor] = {}
    mapped, converted, dropped, ignored = {}, {}, {}, []
    for key, tensor in state.items():
        reason = _unused_reason(layout, key)
        if reason is not None:
            dropped[key] = reason
            continue
        module, _, param = key.rpartition(".")
        target = f"{key_map[module]}.{param}" if module in key_map else None
        if target not in own:
            if strict:
                raise AuthorsWeightsError(f"{where}: key {key!r} {list(tensor.shape)} has no place in {ours}")
            ignored.append(key)
            continue
        value, how = _convert(tensor, own[target])
        if value.shape != own[target].shape:
            raise AuthorsWeightsError(f"{where}: {key!r} {list(tensor.shape)} does not fit {target!r} "
                                      f"{list(own[target].shape)} of {ours}")
        loaded[target], mapped[key] = value, target
        if how:
            converted[key] = how
    missing = [k for k in own if k not in loaded]
    defaulted = [k for k in missing if k.endswith(".num_batches_tracked")]
    lacking = [k for k in missing if k not in defaulted]
    if lacking:
        k = lacking[0]
        module, _, param = k.rpartition(".")
        source = f"{inverse[module]}.{param}" if module in inverse else "a tensor the authors' code never makes"
        raise AuthorsWeightsError(f"{where}: {k!r} {list(own[k].shape)} of {ours} has no source: the file lacks "
                                  f"{source!r} ({len(lacking)} tensor(s) without a source)")
    model.load_state_dict(loaded, strict=False)  # the only keys left out are the defaulted counters
    model.eval()

    assumed = {f: f"{config[f]} (the variant's; the file does not record it)" for f in ("num_heads", "T", "img_size")
               if f not in hints and f not in overrides}
    report = {
        "source": str(path), "entry": entry, "stripped_prefix": "module." if stripped else None,
        "layout": layout.name, "authors_code": layout.code, "family": model.family, "variant": label,
        "template": None if exact else variant, "structure": s,
        "config_changes": _changes(base, config), "from_file": {f: src for f, (_, src) in hints.items()},
        "assumed": assumed, "mapped": mapped, "converted": converted, "dropped": dropped, "ignored": ignored,
        "defaulted": defaulted, "epoch": obj.get("epoch") if isinstance(obj.get("epoch"), int) else None,
        "reported_metric": _plain(obj.get("metric", obj.get("max_test_acc1"))),
        "input": "[T, B, C, H, W] time-first (the authors' event models take [B, T, C, H, W])",
    }
    log.info("%s: %s -> %s, %d tensors mapped (%d reshaped), %d unused dropped", path, layout.name, label,
             len(mapped), len(converted), len(dropped))
    return model, report
