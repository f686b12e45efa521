"""The bad-input matrix for configs: every key of a run config x wrong type, non-finite, out of range.

Each case goes through the real command line (``spikemask train --set key=value``) and must end in
exactly one line on stderr that names the key, with exit status 2 and nothing written.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Literal, Union, get_args, get_origin

import pytest

from spikemask.cli.main import main
from spikemask.config import Bounds, ConfigError, from_dict
from spikemask.train import RunConfig
from spikemask.train.config import load_run_config


def _leaves(cls: type, prefix: str = "") -> list[tuple[str, Any, dataclasses.Field]]:
    """``(dotted key, annotation, field)`` of every leaf field of a config dataclass (``model`` is a free dict)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            out += _leaves(tp, key + ".")
        else:
            out.append((key, tp, f))
    return out


def _family_variant(family: str) -> str:
    """A registered variant of ``family`` to build (its test-sized one when there is one)."""
    import spikemask as sm

    names = [n for n in sm.list_models() if sm.model_info(n)["family"] == family]
    return next((n for n in names if n.startswith("test_")), names[0])


def _model_leaves() -> list[tuple[str, Any, dataclasses.Field, str]]:
    from spikemask.models.registry import _FAMILIES

    seen, out = set(), []
    for family, (config_cls, _) in sorted(_FAMILIES.items()):
        if config_cls in seen:  # families sharing a config class share its keys
            continue
        seen.add(config_cls)
        variant = _family_variant(family)
        out += [(*leaf, variant) for leaf in _leaves(config_cls, "model.")]
    return out


# run keys, then every model family's keys (the model section is a free mapping in RunConfig): (key, type,
# field, the model the config names)
LEAVES = [(*leaf, "test_spikformer") for leaf in _leaves(RunConfig) if leaf[0] != "model"] + _model_leaves()


def expected_name(key: str) -> str:
    """The key as a message must name it: nested model sections may drop the leading ``model.``."""
    parts = key.split(".")
    return ".".join(parts[1:]) if parts[0] == "model" and len(parts) > 2 else key


def _base(tp: Any) -> Any:
    """The non-None type of an Optional annotation."""
    if get_origin(tp) in (Union, __import__("types").UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _is_number(tp: Any) -> bool:
    tp = _base(tp)
    if tp in (int, float):
        return True
    return get_origin(tp) is tuple and all(a in (int, float) for a in get_args(tp) if a is not Ellipsis)


def wrong_type(tp: Any) -> str:
    tp = _base(tp)
    if tp is bool:
        return "maybe"
    if get_origin(tp) is Literal:
        return "not_a_choice"
    if tp is str:
        return "[1, 2]"
    if get_origin(tp) in (dict,):
        return "5"
    return "abc"  # numbers and tuples of numbers


def out_of_range(bounds: Bounds, tp: Any) -> str:
    low = bounds.ge - 1 if bounds.ge is not None else bounds.gt if bounds.gt is not None else None
    value = low if low is not None else (bounds.le + 1 if bounds.le is not None else bounds.lt)
    n = len(get_args(_base(tp))) if get_origin(_base(tp)) is tuple else 0
    return f"[{', '.join([str(value)] * n)}]" if n else str(value)


CASES = []
for key, tp, f, model in LEAVES:
    CASES.append((key, wrong_type(tp), "wrong type", model))
    if _is_number(tp):
        n = len(get_args(_base(tp))) if get_origin(_base(tp)) is tuple else 0
        for bad in (".nan", ".inf", "-.inf"):
            CASES.append((key, f"[{', '.join([bad] * n)}]" if n else bad, "non-finite", model))
    if "bounds" in f.metadata:
        CASES.append((key, out_of_range(f.metadata["bounds"], tp), "out of range", model))


def test_every_numeric_key_has_a_range_or_is_unbounded_by_design():
    """A new numeric key must state its valid range (``bounded``) or be listed here with the reason."""
    missing = [k for k, tp, f, _ in LEAVES if _is_number(tp) and "bounds" not in f.metadata]
    assert missing == []


def test_the_matrix_covers_every_section():
    sections = {key.split(".")[0] for key, _, _, _ in CASES}
    assert {"data", "optim", "schedule", "train", "seed", "device", "name", "energy", "model"} <= sections
    keys = {k for k, _, _, _ in CASES}
    assert {"model.T", "model.neuron.tau", "model.mask.ratio", "model.mask.seed", "model.act.levels",
            "model.depths"} <= keys
    assert len(CASES) > 150


def write_config(tmp_path, model: str = "test_spikformer"):
    path = tmp_path / "run.yaml"
    path.write_text(f"name: bad\nout_dir: {tmp_path / 'runs'}\ndevice: cpu\nmodel: {{name: {model}}}\n")
    return path


@pytest.fixture
def config_file(tmp_path):
    return write_config(tmp_path)


@pytest.mark.parametrize("key,value,kind,model", CASES, ids=[f"{k}={v}({kind},{m})" for k, v, kind, m in CASES])
def test_bad_value_is_one_line_naming_the_key(key, value, kind, model, tmp_path, capsys):
    config_file = write_config(tmp_path, model)
    capsys.readouterr()
    code = main(["train", "--config", str(config_file), "--set", f"{key}={value}"])
    out, err = capsys.readouterr()
    assert code == 2, (key, value, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert expected_name(key) in err, err
    assert not (tmp_path / "runs").exists()  # nothing was written


def test_unknown_key_lists_the_valid_ones(config_file, capsys):
    capsys.readouterr()
    assert main(["train", "--config", str(config_file), "--set", "optim.learning_rate=0.1"]) == 2
    err = capsys.readouterr().err
    assert "optim.learning_rate" in err and "lr" in err and "weight_decay" in err and err.count("\n") == 1


@pytest.mark.parametrize("key,value,message", [
    ("schedule.min_lr", float("nan"), "schedule.min_lr"),   # once reported as a problem with optim.lr
    ("optim.lr", float("inf"), "optim.lr"),
    ("train.grad_clip", -1.0, "train.grad_clip"),
    ("seed", 2**70, "seed"),
    ("train.max_train_batches", 0, "train.max_train_batches"),
    ("data.size", [0, 0], "data.size"),
    ("data.size", [100000, 100000], "data.size"),
])
def test_library_refuses_the_same_values(key, value, message):
    section, _, name = key.rpartition(".")
    data = {"model": {"name": "test_spikformer"}}
    if section:
        data[section] = {name: value}
    else:
        data[name] = value
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        from_dict(RunConfig, data)


def test_directly_built_configs_are_checked_too():
    from spikemask.train import OptimConfig, TrainConfig

    with pytest.raises(ConfigError, match="optim.lr"):
        OptimConfig(lr=math.inf)
    with pytest.raises(ConfigError, match="train.max_eval_batches"):
        TrainConfig(max_eval_batches=0)


def test_config_file_errors_name_the_file(tmp_path, capsys):
    binary = tmp_path / "latin1.yaml"
    binary.write_bytes("name: caf\xe9\n".encode("latin-1"))
    folder = tmp_path / "a_folder"
    folder.mkdir()
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    for path, expect in ((binary, "not UTF-8"), (folder, "is a directory"), (broken, "not valid YAML"),
                         (listing, "mapping")):
        capsys.readouterr()
        assert main(["train", "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and expect in err and err.count("\n") == 1, err
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_run_config(binary)
