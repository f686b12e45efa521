"""Load the MST authors' released checkpoints into spikemask's :class:`~spikemask.models.swin_bn.SwinBN`.

MST (001_9e47b243e487ffe3.txt): github.com/bic-L/Masked-Spiking-Transformer, ``models/mst.py``. Its
``main.py`` builds the Swin with ``nn.ReLU`` placeholders, turns every one into ``MyFloor(up, t=16)``
(``utils_QCFS.replace_activation_by_floor``: QCFS with λ = ``up``, a ``[1]`` parameter) and saves
``{'model': state_dict, 'optimizer', 'lr_scheduler', 'max_accuracy', 'scaler', 'epoch', 'config'}`` with
``config`` a yacs ``CfgNode``. A bare state dict (the ``model`` entry saved alone) loads too.

Mapping (``L`` = ``layers.i``, ``B`` = ``layers.i.blocks.j``; everything else keeps its name):

=========================================  ===========================================================
authors' key                               spikemask
=========================================  ===========================================================
``patch_embed.proj`` / ``.norm``           ``patch_embed`` (Conv2d) / ``patch_norm`` (BatchNorm)
``patch_embed.proj_if.up``                 ``patch_act.lam``
``B.shortcut{1,2}_if.up``                  ``B.shortcut{1,2}_act.lam``
``B.attn.{q,k,v,attn,attn_v,proj}_if.up``  ``B.attn.{q,k,v,attn,attn_v,proj}_act.lam``
``B.mlp.norm{1,2}`` (ImageNet only)        ``B.mlp.fc{1,2}_bn``
``B.mlp.fc{1,2}_if.up``                    ``B.mlp.fc{1,2}_act.lam``
``L.downsample.reduction_if.up``           ``L.downsample.reduction_act.lam``
``B.attn.relative_position_index``         derived: checked equal to ours, dropped
``B.attn_mask`` (shifted blocks)           derived: checked equal to our ``B.shift_mask``, dropped
=========================================  ===========================================================

The structure comes from the weights: embed_dim, patch size and input channels from ``patch_embed.proj``,
depths from the block numbers, heads from the width of each stage's relative position bias table, the
window from its length, the image size from the first shift mask (``[nW, w², w²]``), MLP ratio, qkv bias,
classes, and CIFAR vs ImageNet from the MLP's BatchNorm (the authors' ``dataset == 'imagenet'``). What
they cannot say: the QCFS levels (``t``: main.py hard-codes 16; neither the weights nor the config record
it) and the masking ratio (``--masking_ratio``; recorded in the config as ``MODEL.MST.MASKING_RATIO``).

The config is read without running code: ``yacs.config.CfgNode`` is a dict subclass whose pickle is
"new empty object, set items, update ``__dict__``", which an ``OrderedDict`` reproduces, so the name is
allow-listed as ``OrderedDict`` (yacs need not be installed). Any other class in the file is refused,
with the two lines that re-save the weights alone.

CLI: ``spikemask import-weights SOURCE --out CKPT [--mask-ratio 0.75] [--levels 16]`` (:func:`is_mst_checkpoint`
tells the two loaders' files apart).
"""

from __future__ import annotations

import logging
import math
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..config import to_dict
from .convert import (
    AuthorsWeightsError,
    _changes,
    _find_state_dict,
    _plain,
    _strip_prefix,
    read_authors_file,
)
from .registry import create_model, resolve_config

__all__ = ["MST_CODE", "MASK_SITES", "detect", "is_mst_checkpoint", "load_mst_state", "load_mst_weights",
           "read_mst_file", "data_config"]

log = logging.getLogger(__name__)

MST_CODE = "bic-L/Masked-Spiking-Transformer models/mst.py"
MASK_SITES = ("attn.q", "attn.k", "attn.scores")  # Masking_Spike in SpikingWindowAttention; V and the MLP unmasked
LEVELS = 16  # main.py: replace_activation_by_floor(ann, t=16, ...)
_TEMPLATES = {"cifar": "swin_t_bn_cifar", "imagenet": "swin_t_bn_imagenet"}
_STRUCTURE = ("img_size", "patch_size", "in_channels", "embed_dim", "depths", "num_heads", "window_size",
              "mlp_ratio", "qkv_bias", "mlp_bn")
_CFG_NODE = "yacs.config.CfgNode"
_RESAVE = ("if you trust the file, keep only its weights and import that: python -c \"import torch; "
           "c = torch.load('{src}', map_location='cpu', weights_only=False); torch.save(c['model'], "
           "'{src}.weights.pth')\"")

_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_BLOCK = r"(layers\.\d+\.blocks\.\d+)"
_RULES = [(re.compile(a), b) for a, b in (
    (r"patch_embed\.proj\.(weight|bias)", r"patch_embed.\1"),
    (rf"patch_embed\.norm\.{_BN}", r"patch_norm.\1"),
    (r"patch_embed\.proj_if\.up", "patch_act.lam"),
    (rf"{_BLOCK}\.(norm[12])\.{_BN}", r"\1.\2.\3"),
    (rf"{_BLOCK}\.shortcut([12])_if\.up", r"\1.shortcut\2_act.lam"),
    (rf"{_BLOCK}\.attn\.(qkv|proj)\.(weight|bias)", r"\1.attn.\2.\3"),
    (rf"{_BLOCK}\.attn\.(q|k|v|attn|attn_v|proj)_if\.up", r"\1.attn.\2_act.lam"),
    (rf"{_BLOCK}\.attn\.relative_position_bias_table", r"\1.attn.relative_position_bias_table"),
    (rf"{_BLOCK}\.mlp\.(fc[12])\.(weight|bias)", r"\1.mlp.\2.\3"),
    (rf"{_BLOCK}\.mlp\.norm([12])\.{_BN}", r"\1.mlp.fc\2_bn.\3"),
    (rf"{_BLOCK}\.mlp\.(fc[12])_if\.up", r"\1.mlp.\2_act.lam"),
    (rf"(layers\.\d+\.downsample)\.norm\.{_BN}", r"\1.norm.\2"),
    (r"(layers\.\d+\.downsample)\.reduction\.weight", r"\1.reduction.weight"),
    (r"(layers\.\d+\.downsample)\.reduction_if\.up", r"\1.reduction_act.lam"),
    (r"(norm|head)\.(weight|bias)", r"\1.\2"),
)]
_DERIVED = [(re.compile(a), b) for a, b in (
    (rf"{_BLOCK}\.attn\.relative_position_index", r"\1.attn.relative_position_index"),
    (rf"{_BLOCK}\.attn_mask", r"\1.shift_mask"),
)]


# ------------------------------------------------------------------------------------------------ reading


def detect(state: Mapping[str, Any]) -> bool:
    """Whether a state dict (keys with or without ``module.``) is in the MST authors' layout: a Swin patch
    embedding and QCFS thresholds named ``layers.i.blocks.j.attn.q_if.up``."""
    keys = {k[len("module."):] if k.startswith("module.") else k for k in state}
    return "patch_embed.proj.weight" in keys and any(re.fullmatch(r"layers\.\d+\.blocks\.\d+\.attn\.q_if\.up", k)
                                                     for k in keys)


def read_mst_file(path: str | Path) -> Any:
    """The file's contents, read with ``weights_only=True``; its yacs config comes back as nested OrderedDicts."""
    try:
        return read_authors_file(path, allow=((OrderedDict, _CFG_NODE),),
                                 allow_names=frozenset({_CFG_NODE, "__builtin__.set", "builtins.set"}),
                                 allowed="its yacs config, training arguments and numpy scalars")
    except AuthorsWeightsError as exc:
        if str(exc).startswith("refused to load"):  # code besides tensors: say how to keep the weights only
            raise AuthorsWeightsError(f"{exc}; {_RESAVE.format(src=Path(path).as_posix())}") from None
        raise


def is_mst_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a readable MST authors' checkpoint (False for anything else, unreadable included)."""
    try:
        obj = read_mst_file(path)
        _, state = _find_state_dict(obj, Path(path), ema=False)
    except AuthorsWeightsError:
        return False
    return detect(state)


def _authors_config(obj: Any) -> dict[str, Any] | None:
    cfg = obj.get("config") if isinstance(obj, dict) else None
    return to_dict(cfg) if isinstance(cfg, dict) else None  # OrderedDicts -> dicts, tuples -> lists


def _cfg(config: dict[str, Any] | None, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# ------------------------------------------------------------------------------------------------ structure


def _shape(state: Mapping[str, torch.Tensor], key: str, where: str) -> tuple[int, ...]:
    if key not in state:
        raise AuthorsWeightsError(f"{where} lacks {key!r}, which every MST Swin has")
    return tuple(state[key].shape)


def _indices(state: Mapping[str, Any], pattern: str, where: str, what: str) -> list[int]:
    found = sorted({int(m.group(1)) for k in state if (m := re.match(pattern, k))})
    if found != list(range(len(found))):
        raise AuthorsWeightsError(f"{where}: {what} {found} are not numbered 0..{len(found) - 1}")
    return found


def _structure(state: Mapping[str, torch.Tensor], where: str) -> tuple[dict[str, Any], dict[str, str]]:
    """What the weights say about the model, and from which key each value comes."""
    proj = _shape(state, "patch_embed.proj.weight", where)  # [D, C, p, p]
    if len(proj) != 4 or proj[2] != proj[3]:
        raise AuthorsWeightsError(f"{where}: patch_embed.proj.weight {list(proj)} is not a square patch convolution")
    D, C, p = proj[0], proj[1], proj[2]
    if C != 3:
        raise AuthorsWeightsError(f"{where}: patch_embed.proj.weight {list(proj)} takes {C} input channels; the "
                                  f"authors' MST code feeds 3-channel images (its event model's extra layer is not "
                                  f"published)")
    stages = _indices(state, r"layers\.(\d+)\.", where, "stages layers.i")
    if not stages:
        raise AuthorsWeightsError(f"{where}: no layers.0.blocks.0 keys: not a Swin")
    depths = [len(_indices(state, rf"layers\.{i}\.blocks\.(\d+)\.", where, f"blocks of layers.{i}")) for i in stages]
    tables = [_shape(state, f"layers.{i}.blocks.0.attn.relative_position_bias_table", where) for i in stages]
    side = math.isqrt(tables[0][0])
    if side * side != tables[0][0] or side % 2 == 0:
        raise AuthorsWeightsError(f"{where}: layers.0.blocks.0.attn.relative_position_bias_table {list(tables[0])} "
                                  f"has no (2w - 1)² rows")
    window = (side + 1) // 2
    hidden = _shape(state, "layers.0.blocks.0.mlp.fc1.weight", where)[0]
    s = dict(patch_size=p, in_channels=C, embed_dim=D, depths=depths, num_heads=[t[1] for t in tables],
             window_size=window, mlp_ratio=hidden / D, qkv_bias="layers.0.blocks.0.attn.qkv.bias" in state,
             mlp_bn="layers.0.blocks.0.mlp.norm1.weight" in state,
             num_classes=_shape(state, "head.weight", where)[0])
    src = dict(patch_size="patch_embed.proj.weight", in_channels="patch_embed.proj.weight",
               embed_dim="patch_embed.proj.weight", depths="layers.i.blocks.j numbering",
               num_heads="layers.i.blocks.0.attn.relative_position_bias_table widths",
               window_size=f"layers.0.blocks.0.attn.relative_position_bias_table {list(tables[0])}",
               mlp_ratio="layers.0.blocks.0.mlp.fc1.weight", qkv_bias="layers.0.blocks.0.attn.qkv.bias",
               mlp_bn="layers.0.blocks.0.mlp.norm1 (ImageNet only in the authors' code)", num_classes="head.weight")
    for key in state:  # the first shifted block: its mask holds (resolution / window)² windows
        m = re.fullmatch(r"layers\.(\d+)\.blocks\.\d+\.attn_mask", key)
        if m and state[key].dim() == 3:
            nW, n = state[key].shape[0], state[key].shape[1]
            w, per_side = math.isqrt(n), math.isqrt(nW)
            if w * w == n and per_side * per_side == nW:
                s["img_size"] = w * per_side * 2 ** int(m.group(1)) * p
                src["img_size"] = f"{key} {list(state[key].shape)}"
                break
    return s, src


# ------------------------------------------------------------------------------------------------ loading


def _target(key: str, rules: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, repl in rules:
        if pattern.fullmatch(key):
            return pattern.sub(repl, key)
    return None


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values (shapes only on the meta device, where there are no values)."""
    if a.shape != b.shape:
        return False
    return True if a.is_meta or b.is_meta else bool(torch.equal(a.to(b.dtype), b))


def load_mst_state(state: Mapping[str, torch.Tensor], *, variant: str | None = None, num_classes: int | None = None,
                   mask_ratio: float | None = None, levels: int = LEVELS, strict: bool = True,
                   authors_config: dict[str, Any] | None = None, source: str = "the state dict"
                   ) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`load_mst_weights` on a state dict already read (keys without ``module.``); ``authors_config``:
    the checkpoint's config as plain dicts, if any. Built under ``torch.device("meta")`` it checks names
    and shapes only (derived buffers too)."""
    where = f"{source} ({MST_CODE})"
    if not detect(state):
        raise AuthorsWeightsError(f"{where}: not an MST checkpoint (no patch_embed.proj.weight and "
                                  f"layers.i.blocks.j.attn.q_if.up); first keys: {', '.join(list(state)[:4])}")
    s, src = _structure(state, where)
    if num_classes is not None and num_classes != s["num_classes"]:
        raise AuthorsWeightsError(f"{where}: its head.weight {list(state['head.weight'].shape)} classifies into "
                                  f"{s['num_classes']} classes, not num_classes={num_classes}")
    cfg, warnings, from_config, assumed = authors_config, [], {}, {}
    if _cfg(cfg, "MODEL.MST.QK_SCALE") is not None:
        raise AuthorsWeightsError(f"{where}: its config sets MODEL.MST.QK_SCALE = {_cfg(cfg, 'MODEL.MST.QK_SCALE')}; "
                                  f"SwinBN scales q kᵀ by head_dim^-0.5 (the authors' default) only")
    kind = "imagenet" if s["mlp_bn"] else "cifar"
    template = _TEMPLATES[kind]
    base = to_dict(resolve_config(template))
    if "img_size" not in s:
        if isinstance(_cfg(cfg, "DATA.IMG_SIZE"), int):
            s["img_size"], from_config["img_size"] = _cfg(cfg, "DATA.IMG_SIZE"), "DATA.IMG_SIZE"
        else:
            s["img_size"] = base["img_size"]
            assumed["img_size"] = f"{base['img_size']} ({template}'s; no shifted block or config records it)"
    for field, key in (("num_classes", "MODEL.NUM_CLASSES"), ("embed_dim", "MODEL.MST.EMBED_DIM"),
                       ("depths", "MODEL.MST.DEPTHS"), ("num_heads", "MODEL.MST.NUM_HEADS"),
                       ("patch_size", "MODEL.MST.PATCH_SIZE"), ("img_size", "DATA.IMG_SIZE")):
        value = _cfg(cfg, key)
        if value is not None and value != s[field]:
            warnings.append(f"its config's {key} = {value} disagrees with the weights ({field} {s[field]}); "
                            f"the weights are followed")

    ratio_cfg = _cfg(cfg, "MODEL.MST.MASKING_RATIO")
    ratio_cfg = float(ratio_cfg) if isinstance(ratio_cfg, (int, float)) and not isinstance(ratio_cfg, bool) else None
    if mask_ratio is None:
        ratio, ratio_src = (ratio_cfg, "config MODEL.MST.MASKING_RATIO") if ratio_cfg is not None else \
            (0.0, "default 0 (the file does not record its masking ratio)")
    else:
        ratio, ratio_src = float(mask_ratio), "argument mask_ratio"
        if ratio_cfg is not None and ratio_cfg != ratio:
            warnings.append(f"mask_ratio={ratio:g} differs from the ratio it was trained with "
                            f"(config MODEL.MST.MASKING_RATIO = {ratio_cfg:g})")
    if ratio > 0:
        warnings.append(f"Random Spike Masking on at {', '.join(MASK_SITES)} with ratio {ratio:g}, in training and "
                        f"inference, as the authors' code; evaluated without its masks the checkpoint computes "
                        f"something other than what was trained")
    elif ratio_cfg is None:
        warnings.append("the file does not record its masking ratio: a checkpoint trained with masking (the 75 % "
                        "ones) needs mask_ratio=0.75 (--mask-ratio); evaluated without its masks it differs from how "
                        "it was trained")
    levels_src = (f"argument levels={levels}" + (" (the authors' main.py hard-codes t=16" if levels == LEVELS else
                  f" (the authors' main.py uses t={LEVELS}") + "; neither the weights nor the config record it)")
    drop_path = _cfg(cfg, "MODEL.DROP_PATH_RATE")
    if isinstance(drop_path, float):
        from_config["drop_path"] = "MODEL.DROP_PATH_RATE"

    structure = {k: s[k] for k in _STRUCTURE}
    exact = all(to_dict(structure[k]) == base[k] for k in _STRUCTURE)
    settings = dict(num_classes=s["num_classes"], act=dict(kind="qcfs", levels=levels, shift=0.5),
                    mask=dict(ratio=ratio, sites=list(MASK_SITES)),
                    drop_path=drop_path if "drop_path" in from_config else None)
    label, chosen = variant, variant is not None
    if not chosen:
        variant = template
        settings.update(structure)
        label = template if exact else \
            f"swin_bn_{'-'.join(map(str, s['depths']))}_{s['embed_dim']}_{s['img_size']}px_{kind}"
    try:
        config = to_dict(resolve_config(variant, **settings))
        model = create_model(variant, **settings)
    except ValueError as exc:
        raise AuthorsWeightsError(f"{where} cannot be loaded into {variant}: {exc}") from None
    if model.family != "swin_bn":
        raise AuthorsWeightsError(f"{where} holds an MST Swin, but {variant} is a {model.family} model")
    model.variant = label

    c = model.config
    ours = (f"{label} (img {c.img_size}, embed_dim {c.embed_dim}, depths {list(c.depths)}, heads "
            f"{list(c.num_heads)}, window {c.window_size}, mlp_bn {c.mlp_bn})")
    own, buffers = model.state_dict(), dict(model.named_buffers())
    loaded: dict[str, torch.Tensor] = {}
    mapped, converted, dropped, ignored, sources = {}, {}, {}, [], {}
    for key, tensor in state.items():
        derived = _target(key, _DERIVED)
        if derived is not None:
            if derived not in buffers:
                raise AuthorsWeightsError(f"{where}: {key!r} {list(tensor.shape)}: the authors' block shifts its "
                                          f"windows, {derived.rpartition('.')[0]!r} of {ours} does not (another image "
                                          f"or window size)")
            if not _same(tensor, buffers[derived]):
                raise AuthorsWeightsError(f"{where}: {key!r} {list(tensor.shape)} differs from {derived!r} "
                                          f"{list(buffers[derived].shape)} of {ours} (another image or window size)")
            dropped[key], sources[derived] = f"derived buffer, equal to {derived}", key
            continue
        target = _target(key, _RULES)
        if target not in own:
            if strict:
                raise AuthorsWeightsError(f"{where}: key {key!r} {list(tensor.shape)} has no place in {ours}")
            ignored.append(key)
            continue
        value = tensor
        if key.endswith("_if.up") and tensor.shape == (1,):  # MyFloor.up is [1], QCFS.lam a scalar
            value, converted[key] = tensor.reshape(()), "MyFloor.up [1] -> QCFS.lam []"
        if value.shape != own[target].shape:
            raise AuthorsWeightsError(f"{where}: {key!r} {list(tensor.shape)} does not fit {target!r} "
                                      f"{list(own[target].shape)} of {ours}")
        loaded[target], mapped[key] = value, target
    unshifted = [k for k in buffers if k.endswith(".shift_mask") and k not in sources]
    if unshifted:
        block = unshifted[0].rpartition(".")[0]
        raise AuthorsWeightsError(f"{where}: {block!r} of {ours} shifts its windows but the file has no "
                                  f"{block}.attn_mask (another image or window size)")
    missing = [k for k in own if k not in loaded]
    defaulted = [k for k in missing if k.endswith(".num_batches_tracked")]  # only counts BatchNorm updates
    lacking = [k for k in missing if k not in defaulted]
    if lacking:
        raise AuthorsWeightsError(f"{where}: {lacking[0]!r} {list(own[lacking[0]].shape)} of {ours} has no source "
                                  f"in the file ({len(lacking)} tensor(s) without a source)")
    model.load_state_dict(loaded, strict=False)  # the only keys left out are the defaulted counters
    model.eval()

    report = {
        "layout": f"mst/{kind}", "authors_code": MST_CODE, "family": model.family, "variant": label,
        "template": None if chosen or exact else template,
        "structure": s, "from_file": src, "from_config": from_config, "assumed": assumed,
        "config_changes": _changes(base, config),
        "levels": {"value": levels, "source": levels_src},
        "mask": {"ratio": ratio, "sites": list(MASK_SITES), "source": ratio_src},
        "mapped": mapped, "converted": converted, "dropped": dropped, "ignored": ignored, "defaulted": defaulted,
        "warnings": warnings,
        "notes": ["softmax, relative position bias and the head's LayerNorm stay analog once converted",
                  "the authors' snn_validate scales each IF neuron by 2 + λ (modules_QCFS.ScaledNeuron); "
                  "spikemask's conversion uses λ, as QCFS does"],
        "input": "[B, 3, H, W] images, fed at every step once converted",
    }
    log.info("%s: mst/%s -> %s, %d tensors mapped (%d λ reshaped), %d derived dropped", source, kind, label,
             len(mapped), len(converted), len(dropped))
    return model, report


def load_mst_weights(path: str | Path, *, variant: str | None = None, num_classes: int | None = None,
                     mask_ratio: float | None = None, levels: int = LEVELS, strict: bool = True
                     ) -> tuple[nn.Module, dict[str, Any]]:
    """Build the :class:`SwinBN` computing what the MST authors' checkpoint at ``path`` computes; return it (in
    eval mode) and a plain-data report (for ``save_checkpoint(..., import_report=report)``).

    variant: the spikemask variant to load into, every shape checked against it. None: ``swin_t_bn_cifar``
        (no MLP BatchNorm) or ``swin_t_bn_imagenet``, with the structure the weights have (classes, depths,
        widths, window, image size, ...); the variant is named after that structure when it is not Swin-T's.
    num_classes: checked against the file's classifier.
    mask_ratio: Random Spike Masking ratio at the code's sites (attn.q, attn.k, attn.scores). None: the
        config's ``MODEL.MST.MASKING_RATIO`` when the file has its config, else 0 (with a warning).
    levels: QCFS levels L (the authors' ``t``; their main.py hard-codes 16; no file records it).
    strict: refuse keys that have no place in the model (False: skip them, listed in ``report["ignored"]``).
        A model tensor without a source, a shape mismatch and a derived buffer that differs are always refused.
    """
    path = Path(path)
    obj = read_mst_file(path)
    entry, raw = _find_state_dict(obj, path, ema=False)
    state, stripped = _strip_prefix(raw, path)
    cfg = _authors_config(obj)
    model, report = load_mst_state(state, variant=variant, num_classes=num_classes, mask_ratio=mask_ratio,
                                   levels=levels, strict=strict, authors_config=cfg, source=repr(str(path)))
    meta = obj if entry != "(the file itself)" else {}
    return model, {
        "source": str(path), "entry": entry, "stripped_prefix": "module." if stripped else None, **report,
        "authors_config": cfg, "dataset": _cfg(cfg, "DATA.DATASET"),
        "epoch": meta.get("epoch") if isinstance(meta.get("epoch"), int) else None,
        "reported_metric": _plain(meta.get("max_accuracy")),
    }


def data_config(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """The spikemask data section that evaluates an imported MST checkpoint as the authors did (their
    ``data/build.py``: CIFAR resized to 224 with their normalisation, ImageNet's standard eval transform), from
    its config's ``DATA.DATASET`` or else its classes; None when neither says which set it is."""
    dataset = str(report.get("dataset") or "").lower()
    classes = report.get("structure", {}).get("num_classes")
    if dataset not in ("cifar10", "cifar100", "imagenet"):
        dataset = "imagenet" if report.get("layout") == "mst/imagenet" else \
            {10: "cifar10", 100: "cifar100"}.get(classes, "")
    if not dataset:
        return None
    if dataset == "imagenet":
        return {"name": "imagenet", "augment": "imagenet", "eval_transform": "imagenet_eval"}
    return {"name": dataset, "augment": "mst_cifar", "eval_transform": "mst_cifar_eval"}
