"""Typed configs: dataclasses <- YAML <- ``key=value`` overrides, and the errors on the way."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from spikemask.config import ConfigError, apply_overrides, from_dict, load_yaml, merge, parse_overrides, to_dict
from spikemask.masking import MaskConfig
from spikemask.models.spikformer import SpikformerConfig
from spikemask.neurons import NeuronConfig
from spikemask.train.config import OptimConfig, RunConfig


@dataclass(kw_only=True)
class Inner:
    rate: float = 0.5
    size: int = 3


@dataclass(kw_only=True)
class Outer:
    name: str = "x"
    count: int = 1
    lr: float = 1e-3
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    pair: tuple[float, float] = (0.9, 0.999)
    pools: tuple[bool, ...] = (True, False)
    names: list[str] = field(default_factory=list)
    table: dict[str, float] = field(default_factory=dict)
    maybe: int | None = None
    inner: Inner = field(default_factory=Inner)


# ---- from_dict ----------------------------------------------------------------------------------------


def test_defaults_and_values():
    cfg = from_dict(Outer, {"name": "y", "count": 4, "inner": {"size": 7}})
    assert cfg == Outer(name="y", count=4, inner=Inner(size=7))
    assert from_dict(Outer, None) == Outer()


def test_unknown_key_top_level():
    with pytest.raises(ConfigError) as exc:
        from_dict(Outer, {"cont": 2})
    msg = str(exc.value)
    assert "unknown config key 'cont'" in msg
    assert "Did you mean 'count'?" in msg
    assert "Valid keys: count, flag, inner, lr, maybe, mode, name, names, pair, pools, table" in msg


def test_unknown_key_nested_has_dotted_path():
    with pytest.raises(ConfigError) as exc:
        from_dict(Outer, {"inner": {"rat": 0.1}})
    msg = str(exc.value)
    assert "unknown config key 'inner.rat'" in msg
    assert "Did you mean 'rate'?" in msg
    assert "Valid keys under 'inner': rate, size" in msg


def test_unknown_key_deeply_nested_real_config():
    with pytest.raises(ConfigError,
                       match=r"'mask\.ratoi'.*Did you mean 'ratio'.*Valid keys under 'mask': "
                             r"block_ratios, blocks, draw, mode, ratio"):
        from_dict(SpikformerConfig, {"mask": {"ratoi": 0.5}})
    with pytest.raises(ConfigError, match=r"'data\.batchsize'.*Did you mean 'batch_size'"):
        from_dict(RunConfig, {"data": {"batchsize": 4}})


@pytest.mark.parametrize(
    "data,match",
    [
        ({"count": "3"}, "count: expected an integer, got '3'"),
        ({"count": True}, "count: expected an integer, got True"),
        ({"count": 2.5}, "count: expected an integer, got 2.5"),
        ({"lr": True}, "lr: expected a number, got True"),
        ({"lr": "fast"}, "lr: expected a number, got 'fast'"),
        ({"flag": 1}, "flag: expected true or false, got 1"),
        ({"flag": "yes"}, "flag: expected true or false, got 'yes'"),
        ({"name": 3}, "name: expected a string, got 3"),
        ({"table": [1, 2]}, "table: expected a mapping, got [1, 2]"),
        ({"table": {"a": "x"}}, "table.a: expected a number, got 'x'"),
        ({"names": "a"}, "names: expected a list, got 'a'"),
        ({"pools": [True, 1]}, "pools[1]: expected true or false, got 1"),
        ({"inner": [1]}, "inner: expected a mapping for Inner, got [1]"),
        ({"inner": {"size": "big"}}, "inner.size: expected an integer, got 'big'"),
        ({"mode": "c"}, "mode: 'c' is not one of 'a', 'b'"),
        ({"maybe": "x"}, "maybe: 'x' is not a valid int | None"),
        ({"pair": [0.9, 0.99, 0.5]}, "pair: expected a list of 2 items"),
        ({"pair": [0.9]}, "pair: expected a list of 2 items"),
    ],
)
def test_wrong_types_rejected_with_path(data, match):
    with pytest.raises(ConfigError) as exc:
        from_dict(Outer, data)
    assert match in str(exc.value)


def test_lossless_conversions():
    cfg = from_dict(Outer, {"lr": 1, "count": 3.0, "inner": {"rate": 2}})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.count == 3 and isinstance(cfg.count, int)
    assert cfg.inner.rate == 2.0 and isinstance(cfg.inner.rate, float)


def test_yaml_11_exponent_string_is_a_float():
    assert yaml.safe_load("lr: 1e-3")["lr"] == "1e-3"  # the quirk being worked around
    cfg = from_dict(Outer, yaml.safe_load("lr: 1e-3\ntable: {a: 5e-1}"))
    assert cfg.lr == 0.001 and cfg.table == {"a": 0.5}
    assert from_dict(OptimConfig, {"lr": "5e-4"}).lr == 5e-4


def test_tuples_literals_optional():
    cfg = from_dict(Outer, {"pair": [0.5, 1], "pools": [False, False, True], "mode": "b", "maybe": None,
                            "names": ("u", "v")})
    assert cfg.pair == (0.5, 1.0) and isinstance(cfg.pair, tuple) and isinstance(cfg.pair[1], float)
    assert cfg.pools == (False, False, True) and isinstance(cfg.pools, tuple)
    assert cfg.names == ["u", "v"] and isinstance(cfg.names, list)
    assert cfg.mode == "b" and cfg.maybe is None
    assert from_dict(Outer, {"maybe": 4}).maybe == 4
    assert from_dict(OptimConfig, {"betas": [0.8, 0.9]}).betas == (0.8, 0.9)


def test_post_init_checks_still_run():
    with pytest.raises(ValueError, match="tau must be > 1"):
        from_dict(NeuronConfig, {"tau": 0.9})
    with pytest.raises(ValueError, match=r"mask\.ratio must be in \[0, 1\)"):
        from_dict(MaskConfig, {"ratio": 1.0})


def test_nested_dataclass_instance_accepted():
    cfg = from_dict(SpikformerConfig, {"neuron": NeuronConfig(tau=1.5)})
    assert cfg.neuron.tau == 1.5


# ---- to_dict / round trips ----------------------------------------------------------------------------


def test_to_dict_is_plain_builtins():
    d = to_dict(Outer(pair=(0.1, 0.2), inner=Inner(size=2)))
    assert d["pair"] == [0.1, 0.2] and d["pools"] == [True, False]
    assert d["inner"] == {"rate": 0.5, "size": 2}
    yaml.safe_dump(d)  # safe_dump refuses tuples and dataclasses: this must not raise


def _yaml_round_trip(cfg, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return from_dict(type(cfg), load_yaml(path))


def test_round_trip_run_config(tmp_path):
    cfg = from_dict(RunConfig, {
        "name": "x", "seed": 3,
        "model": {"name": "test_spikformer", "mask": {"ratio": 0.5}},
        "data": {"batch_size": 4, "root": None, "split_by": "time"},
        "optim": {"lr": "1e-4", "betas": [0.8, 0.95]},
        "train": {"grad_clip": 1.0, "mixup_off_epoch": None},
        "energy": {"first_layer": "as_input"},
    })
    back = _yaml_round_trip(cfg, tmp_path)
    assert back == cfg
    assert back.optim.betas == (0.8, 0.95) and back.optim.lr == 1e-4
    assert back.train.mixup_off_epoch is None


def test_round_trip_spikformer_config(tmp_path):
    cfg = SpikformerConfig(img_size=32, embed_dim=64, num_heads=4, sps_pool=(False, True, True, True),
                           neuron=NeuronConfig(tau=1.5, surrogate="atan", alpha=3.0, detach_reset=False),
                           mask=MaskConfig(ratio=0.25, sites=("attn.q", "mlp.hidden"), site_ratios={"attn.k": 0.1},
                                           share_over_time=True, seed=7))
    back = _yaml_round_trip(cfg, tmp_path)
    assert back == cfg
    assert isinstance(back.sps_pool, tuple) and isinstance(back.mask.sites, tuple)
    assert dataclasses.asdict(back) == dataclasses.asdict(cfg)


# ---- overrides ----------------------------------------------------------------------------------------


def test_parse_overrides():
    assert parse_overrides(["a.b=1", "a.c=[x, y]", "a=null", "s=hello", "f=0.5", "e=a=b"]) == [
        (["a", "b"], 1),
        (["a", "c"], ["x", "y"]),
        (["a"], None),
        (["s"], "hello"),
        (["f"], 0.5),
        (["e"], "a=b"),
    ]


@pytest.mark.parametrize("item", ["abc", "=3", " =3"])
def test_override_without_key_or_equals(item):
    with pytest.raises(ConfigError, match="is not of the form key=value"):
        parse_overrides([item])


def test_apply_overrides_creates_sections_and_keeps_input():
    data = {"model": {"name": "m", "mask": {"ratio": 0.1}}, "seed": 0}
    out = apply_overrides(data, ["model.mask.ratio=0.5", "model.neuron.tau=1.5", "new.deep.key=[1, 2]", "seed=3"])
    assert out == {"model": {"name": "m", "mask": {"ratio": 0.5}, "neuron": {"tau": 1.5}},
                   "seed": 3, "new": {"deep": {"key": [1, 2]}}}
    assert data == {"model": {"name": "m", "mask": {"ratio": 0.1}}, "seed": 0}  # untouched


def test_apply_overrides_null_and_none_section():
    assert apply_overrides({"a": {"b": 1}}, ["a=null"]) == {"a": None}
    assert apply_overrides({"a": None}, ["a.b=2"]) == {"a": {"b": 2}}


def test_override_scalar_with_section_refused():
    with pytest.raises(ConfigError, match=r"cannot set 'seed\.x': 'seed' holds a value, not a section"):
        apply_overrides({"seed": 0}, ["seed.x=1"])


def test_overrides_into_run_config():
    data = apply_overrides({"model": {"name": "test_spikformer"}}, ["optim.lr=1e-3", "data.batch_size=8"])
    cfg = from_dict(RunConfig, data)
    assert cfg.optim.lr == 0.001 and cfg.data.batch_size == 8
    with pytest.raises(ConfigError, match=r"data\.batch_size: expected an integer, got 'eight'"):
        from_dict(RunConfig, apply_overrides(data, ["data.batch_size=eight"]))


def test_merge_is_deep_and_pure():
    base = {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    update = {"a": {"c": {"f": 4}}, "e": {"g": 5}}
    out = merge(base, update)
    assert out == {"a": {"b": 1, "c": {"d": 2, "f": 4}}, "e": {"g": 5}}
    assert base == {"a": {"b": 1, "c": {"d": 2}}, "e": 3} and update == {"a": {"c": {"f": 4}}, "e": {"g": 5}}
    out["a"]["c"]["d"] = 99
    assert base["a"]["c"]["d"] == 2  # no shared sub-dicts


# ---- load_yaml ----------------------------------------------------------------------------------------


def test_load_yaml_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"config file '.*nope\.yaml' does not exist"):
        load_yaml(path)


def test_load_yaml_invalid(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("a: [1, 2\nb: c: d\n")
    with pytest.raises(ConfigError, match=r"config file '.*bad\.yaml' is not valid YAML"):
        load_yaml(path)


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just a string\n", "3\n"])
def test_load_yaml_non_mapping(tmp_path, text):
    path = tmp_path / "list.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"config file '.*list\.yaml' must hold a mapping at the top level"):
        load_yaml(path)


def test_load_yaml_empty_and_valid(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert load_yaml(empty) == {}
    ok = tmp_path / "ok.yaml"
    ok.write_text("a: 1\nb: {c: [x, y]}\n")
    assert load_yaml(str(ok)) == {"a": 1, "b": {"c": ["x", "y"]}}


def test_a_study_preset_is_not_a_run_config():
    from spikemask.train import load_run_config

    with pytest.raises(ConfigError, match="spikemask demo --config demo_ndigits"):
        load_run_config("demo_ndigits")
