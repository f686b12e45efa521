"""The per-layer ratio search: a feasible, non-dominated front whose points re-measure to their numbers."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import pytest
import torch
from conftest import make_active
from torch import nn

import spikemask as sm
from spikemask.config import ConfigError, to_dict
from spikemask.masking import MaskConfig
from spikemask.search import SearchConfig, pareto_front, reevaluate, run_search, write_search
from spikemask.train import load_run_config, save_checkpoint
from spikemask.train.loop import build_model_for

pytest.importorskip("optuna")

SMALL = dict(trials=8, samples=24, energy_samples=4, mask_seeds=2, batch_size=32)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, ndigits_root) -> str:
    """An untrained ``test_spikformer`` calibrated to fire, saved as ``fit`` saves one (run config inside)."""
    torch.manual_seed(0)
    model = make_active(sm.create_model("test_spikformer"), torch.poisson(torch.full((2, 8, 2, 32, 32), 0.4)))
    run = load_run_config({"name": "tiny", "model": {"name": "test_spikformer"}, "data": {"name": "ndigits"}})
    path = tmp_path_factory.mktemp("search") / "last.pt"
    save_checkpoint(path, model, run_config=to_dict(run))
    return str(path)


@pytest.fixture(scope="module")
def free(checkpoint):
    """(config, result) of a search without a budget."""
    cfg = SearchConfig(checkpoint=checkpoint, **SMALL)
    return cfg, run_search(cfg)


@pytest.fixture(scope="module")
def budgeted(checkpoint, free):
    """(config, result) of a search under a budget half-way between the cheapest trial and the reference."""
    energies = sorted(t["energy_mj"] for t in free[1]["trials"])
    cfg = SearchConfig(checkpoint=checkpoint, energy_budget_mj=(energies[0] + energies[-1]) / 2, **SMALL)
    return cfg, run_search(cfg)


def dominates(a: dict, b: dict) -> bool:
    return a["acc"] >= b["acc"] and a["energy_mj"] <= b["energy_mj"] and (a["acc"], a["energy_mj"]) != \
        (b["acc"], b["energy_mj"])


@pytest.mark.parametrize("which", ["free", "budgeted"])
def test_front_is_feasible_non_dominated_and_complete(which, request):
    cfg, result = request.getfixturevalue(which)
    assert len(result["trials"]) == cfg.trials
    feasible = [t for t in result["trials"] if t["feasible"]]
    assert result["front"] and len(feasible) == result["feasible_trials"]
    budget = cfg.energy_budget_mj
    for p in result["front"]:
        assert budget is None or p["energy_mj"] <= budget
        assert not any(dominates(t, p) for t in feasible), p
    for t in feasible:  # every feasible trial is on the front or beaten by (or equal to) a point on it
        assert any(dominates(p, t) or (p["acc"], p["energy_mj"]) == (t["acc"], t["energy_mj"])
                   for p in result["front"])
    assert [p["energy_mj"] for p in result["front"]] == sorted(p["energy_mj"] for p in result["front"])
    if budget is not None:
        assert any(not t["feasible"] for t in result["trials"])  # the budget did cut something
        assert all(t["feasible"] == (t["energy_mj"] <= budget) for t in result["trials"])


def test_reference_and_cheapest_corner_come_first(free):
    cfg, result = free
    ref, corner = result["trials"][:2]
    assert set(ref["ratios"].values()) == {0.0} and not MaskConfig(**_mask(ref)).active
    assert set(corner["ratios"].values()) == {cfg.max_ratio}
    assert result["reference"]["energy_mj"] == ref["energy_mj"] and ref["acc_std"] == 0.0
    assert corner["energy_mj"] < ref["energy_mj"]  # masking saves energy
    assert set(ref["ratios"]) == set(sm.create_model("test_spikformer").mask_sites)


def _mask(trial: dict) -> dict:
    mask = dict(trial["mask"])
    mask["block_ratios"] = {int(b): r for b, r in mask["block_ratios"].items()}
    return mask


@pytest.mark.parametrize("which", ["free", "budgeted"])
def test_front_points_reevaluate_to_their_numbers(which, request):
    cfg, result = request.getfixturevalue(which)
    for p in result["front"]:
        assert reevaluate(cfg, p) == (p["acc"], p["energy_mj"])


def test_event_engine_measures_the_front_points_alike(free):
    """The event engine computes the same logits to float rounding: each point's numbers again (accuracy within a
    rounding-flipped near-tie, energy to 1e-6)."""
    cfg, result = free
    event = dataclasses.replace(cfg, engine="event")
    for p in result["front"][:3]:
        acc, energy = reevaluate(event, p)
        assert abs(acc - p["acc"]) <= 100.0 / SMALL["samples"] + 1e-9  # percent: one sample
        assert energy == pytest.approx(p["energy_mj"], rel=1e-6)


def test_same_seed_same_trials(checkpoint, free):
    cfg, result = free
    again = run_search(cfg)
    keys = ("number", "mask", "acc", "energy_mj", "feasible")
    assert [{k: t[k] for k in keys} for t in again["trials"]] == [{k: t[k] for k in keys} for t in result["trials"]]


def test_written_points_train_as_run_configs(budgeted, tmp_path):
    cfg, result = budgeted
    paths = write_search(result, tmp_path)
    assert json.loads(paths["json"].read_text())["front"][0]["acc"] == result["front"][0]["acc"]
    assert len(paths["csv"].read_text().splitlines()) == len(result["front"]) + 1
    assert paths["plot"].stat().st_size > 1000
    for p in result["front"]:
        run = load_run_config(tmp_path / f"point_{p['point']}.yaml")
        assert run.model["mask"] == p["mask"] and run.data.name == "ndigits"
        with torch.device("meta"):
            model = build_model_for(run)
        assert model.config.mask == MaskConfig(**_mask(p))
    # a later search with a smaller front leaves no stale points behind
    write_search({**result, "front": result["front"][:1]}, tmp_path)
    assert sorted(f.name for f in tmp_path.glob("point_*.yaml")) == ["point_0.yaml"]


def test_per_block_and_both(checkpoint):
    cfg = SearchConfig(checkpoint=checkpoint, params="both", **{**SMALL, "trials": 4})
    result = run_search(cfg)
    stem = [s for s in result["searched"]["sites"] if s.startswith("sps.")]  # in no block: always their own τ
    for t in result["trials"]:
        assert "block 0" in t["ratios"] and all(s in t["ratios"] for s in stem)
    for p in result["front"][:2]:
        assert reevaluate(cfg, p) == (p["acc"], p["energy_mj"])
    blocks = run_search(SearchConfig(checkpoint=checkpoint, params="blocks", **{**SMALL, "trials": 2}))
    assert [list(t["ratios"]) for t in blocks["trials"]] == [["block 0"], ["block 0"]]
    defaults = [s for s in sm.create_model("test_spikformer").default_mask_sites if not s.startswith("sps.")]
    assert blocks["trials"][1]["mask"]["sites"] == defaults  # the default sites that sit in blocks


def test_budget_below_the_cheapest_says_so(checkpoint, caplog):
    result = run_search(SearchConfig(checkpoint=checkpoint, energy_budget_mj=1e-9, **{**SMALL, "trials": 2}))
    assert result["front"] == [] and result["feasible_trials"] == 0
    assert "no trial met the energy budget" in result["note"] and "no trial met" in caplog.text


@pytest.mark.parametrize("change, message", [
    (dict(trials=0), "search.trials must be >= 1"),
    (dict(energy_budget_mj=0.0), "search.energy_budget_mj must be > 0"),
    (dict(energy_budget_mj=-1.0), "search.energy_budget_mj must be > 0"),
    (dict(max_ratio=1.0), "search.max_ratio must be in (0, 1)"),
    (dict(step=0.07), "must be a multiple of search.step"),
    (dict(params="layers"), "search.params must be one of sites, blocks, both"),
    (dict(sites=()), "search.sites is empty"),
])
def test_bad_configs(change, message):
    with pytest.raises(ConfigError) as err:
        SearchConfig(checkpoint="x.pt", **change)
    assert message in str(err.value)


def test_bad_sites_and_models(checkpoint, monkeypatch):
    with pytest.raises(ConfigError, match=r"unknown mask site 'atn.k'.*Did you mean 'attn.k'.*Valid sites: .*attn.q"):
        run_search(SearchConfig(checkpoint=checkpoint, sites=("attn.q", "atn.k")))
    with pytest.raises(ConfigError, match="'sps.conv1' sits in no block"):
        run_search(SearchConfig(checkpoint=checkpoint, params="blocks", sites=("sps.conv1",)))
    import spikemask.train

    monkeypatch.setattr(spikemask.train, "load_model", lambda path: (nn.Linear(2, 2), {}))
    with pytest.raises(ValueError, match="has no Random Spike Masking sites"):
        run_search(SearchConfig(checkpoint=checkpoint))


def test_without_optuna(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"pip install 'spikemask\[search\]'"):
        run_search(SearchConfig(checkpoint="x.pt"))


def test_pareto_front_of_ties():
    pts = [{"acc": 50.0, "energy_mj": 2.0}, {"acc": 50.0, "energy_mj": 2.0}, {"acc": 40.0, "energy_mj": 1.0},
           {"acc": 40.0, "energy_mj": 1.5}, {"acc": 60.0, "energy_mj": 3.0}]
    assert pareto_front(pts) == [pts[2], pts[0], pts[4]]


def test_cli(checkpoint, tmp_path, capsys):
    from spikemask.cli.search_cmd import add_arguments, cmd_search

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "s"
    args = parser.parse_args([checkpoint, "--trials", "3", "--samples", "16", "--energy-samples", "4",
                              "--mask-seeds", "1", "--out", str(out)])
    assert cmd_search(args) == 0
    text = capsys.readouterr().out
    assert "accuracy–energy front of 3 trials" in text and "τ attn.q" in text and "point_0.yaml" in text
    assert (out / "search.json").is_file() and (out / "front.png").is_file()
    args = parser.parse_args([checkpoint, "--trials", "2", "--samples", "16", "--energy-samples", "4",
                              "--budget-mj", "1e-9", "--out", str(out)])
    assert cmd_search(args) == 2  # no point within the budget
    with pytest.raises(ConfigError, match="--budget-mj must be > 0"):
        cmd_search(parser.parse_args([checkpoint, "--budget-mj", "0"]))
