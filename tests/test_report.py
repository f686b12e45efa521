"""Probes and the results report: a database filled with real energy reports and probes of tiny models, the
report built from it in a fresh interpreter that never imports torch, and its HTML page rendered in a real
headless Chromium."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import spikemask as sm
from spikemask.energy import measure_energy
from spikemask.results import ResultsDB, ResultsError
from spikemask.results.probes import collect_probes
from spikemask.results.report import FIGURES, build_report, t975

MODELS = ("test_spikformer", "test_spikingformer")
TIME_STEPS = (2, 3)
RATIOS = (0.0, 0.5)
TRAIN_SEEDS = (0, 1)
MASK_SEEDS = (0, 1)
GROUPS = {"attention": ("attn.q", "attn.k", "attn.scores"), "MLP": ("mlp.hidden",)}
PNG = b"\x89PNG\r\n\x1a\n"


def excite(model: nn.Module) -> nn.Module:
    """An untrained model hardly fires (BN at its initial statistics passes the small conv outputs on): strong
    BN gains make every layer spike, so Spikformer's residual stream adds spikes into integers 2, 3, ..."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.constant_(m.weight, 4.0)
            nn.init.constant_(m.bias, 0.5)
    return model


def events(model: nn.Module, batch: int = 2, seed: int = 0) -> torch.Tensor:
    c = model.config
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(c.T, batch, c.in_channels, c.img_size, c.img_size, generator=g) < 0.3).float()


def _accuracy(T: int, ratio: float, seed: int, mask_seed: int | None) -> float:
    """Stand-in accuracies (no training here): distinct per T, ratio, training and mask seed."""
    return 50.0 + T + 10 * ratio + 1.5 * seed + 0.5 * (mask_seed or 0)


def fill_database(path: Path) -> None:
    """2 models x 2 T x 2 trained ratios x 2 training seeds; per run its as-trained evaluation (per mask seed when
    masked) with a real energy report, and for unmasked runs inference-only masking per group and block masking,
    per mask seed; real probes stored as the run's artifact."""
    with ResultsDB(path) as db:
        for name in MODELS:
            for T in TIME_STEPS:
                for ratio in RATIOS:
                    for seed in TRAIN_SEEDS:
                        torch.manual_seed(seed)
                        model = excite(sm.create_model(name, T=T, mask={"ratio": ratio}))
                        x = events(model, seed=100 + seed)
                        rid = f"{name}_T{T}_r{ratio:g}_s{seed}"
                        config = {"model": {"name": name, "T": T, "mask": {"ratio": ratio}},
                                  "data": {"name": "ndigits"}, "seed": seed}
                        db.start_run(rid, config, sweep="test",
                                     fields={"model": name, "T": T, "mask_ratio": ratio, "train_seed": seed})
                        evs = []
                        for ms in MASK_SEEDS if ratio else (None,):
                            evs.append(dict(name="as trained", kind="as_trained", masked="trained sites" if ratio
                                            else None, mask_ratio=ratio, mask_seed=ms, mask={"ratio": ratio},
                                            acc=_accuracy(T, ratio, seed, ms), samples=2,
                                            energy=measure_energy(model, [(x, None)], mask_seeds=[ms or 0])))
                        if ratio == 0:
                            trained = dataclasses.replace(model.config.mask)
                            for group, sites in GROUPS.items():
                                model.set_mask(dataclasses.replace(trained, ratio=0.5, sites=sites))
                                for ms in MASK_SEEDS:
                                    evs.append(dict(name=f"inference {group} τ=0.5", kind="inference", masked=group,
                                                    mask_ratio=0.5, mask_seed=ms, mask={"ratio": 0.5},
                                                    acc=45.0 + ms + seed + (group == "MLP"), samples=2,
                                                    energy=measure_energy(model, [(x, None)], mask_seeds=[ms])))
                            for ms in MASK_SEEDS:
                                evs.append(dict(name="blocks k=1 τ=0.5", kind="blocks", masked="default sites",
                                                blocks=1, mask_ratio=0.5, mask_seed=ms, mask={"ratio": 0.5},
                                                acc=48.0 + ms + seed, samples=2))
                            model.set_mask(trained)
                        db.finish_run(rid, evs, artifacts={"probes": collect_probes(model, x)},
                                      fields={"params": sm.count_parameters(model), "family": model.family,
                                              "wall_s": 1.0})
        db.start_run("interrupted", {"model": {"name": "test_spikformer"}}, fields={"model": "test_spikformer"})


# the report is built by a fresh interpreter that imports spikemask.results.report and nothing of torch or of the
# training code (spikemask/__init__.py imports its names lazily)
_BUILD = textwrap.dedent("""
    import json, sys
    from spikemask.results.report import build_report
    result = build_report(sys.argv[1], sys.argv[2])
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "torch"
                    or m.startswith(("spikemask.train", "spikemask.models", "spikemask.energy")))
    print(json.dumps({"forbidden": loaded, "figures": {k: str(v) for k, v in result["figures"].items()},
                      "missing": result["missing"], "html": str(result["html"]), "markdown": str(result["markdown"]),
                      "rows": result["rows"]}))
""")


def build_without_torch(source: Path, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", _BUILD, str(source), str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    fill_database(root / "results.db")
    return root


@pytest.fixture(scope="module")
def report(sweep_dir) -> dict:
    return build_without_torch(sweep_dir, sweep_dir / "report")


# ------------------------------------------------------------------------------------------------ probes


@pytest.mark.parametrize("name", MODELS)
def test_probes_shapes_and_bounds(name):
    torch.manual_seed(0)
    model = excite(sm.create_model(name))
    model.train()
    mask_before = dataclasses.replace(model.config.mask)
    x = events(model, batch=3)
    p = collect_probes(model, x, ratios=(0.0, 0.5, 0.75), seed=0)
    assert model.training and model.config.mask == mask_before  # mode and masks restored
    T, M = model.config.T, len(p["map_layers"])
    assert int(p["T"]) == T and int(p["samples"]) == 3 and p["ratios"].tolist() == [0.0, 0.5, 0.75]
    assert M == 3 and p["map_layers"][0].startswith("sps.") and "attn" in p["map_layers"][1]
    assert "mlp" in p["map_layers"][2]
    for i in range(M):
        m = p[f"map_{i}"]
        assert m.ndim == 4 and m.shape[:2] == (3, T) and m.dtype == np.int32
        assert m.min() >= 0 and m.max() <= p["map_channels"][i]  # spiking channels per position
    # the tokenizer is before every mask: the same at every ratio; the attention and MLP maps are drawn after
    # their masks, so τ = 0.75 sends fewer spikes than τ = 0
    assert (p["map_0"][0] == p["map_0"][2]).all()
    for i in (1, 2):
        assert p["map_sources"][i] != p["map_layers"][i]
        assert 0 < p[f"map_{i}"][2].sum() < p[f"map_{i}"][0].sum()
    L = len(p["rate_layers"])
    assert p["firing_rate"].shape == (L, T) and (p["firing_rate"] >= 0).all() and (p["firing_rate"] <= 1).all()
    assert p["firing_rate"].max() > 0
    S = len(p["hist_layers"])
    assert p["hist_counts"].shape == (S, 18) and p["hist_bins"][-2:].tolist() == [">=16", "non-integer"]
    assert p["hist_layers"][-1] == "head"
    assert p["hist_counts"][-1].sum() == 3 * model.config.embed_dim  # the head reads one mean per sample


def test_probes_integer_inputs_spikformer_not_spikingformer():
    """004 appendix E: every layer after Spikingformer's first reads spikes (0/1); Spikformer's residual stream
    adds spikes, so the next block's projections read integers >= 2. Both heads read time averages (reals)."""
    probes = {}
    for name in MODELS:
        torch.manual_seed(0)
        model = excite(sm.create_model(name))
        probes[name] = collect_probes(model, events(model), ratios=(0.0,))
    spiking, spikf = probes["test_spikingformer"], probes["test_spikformer"]
    names = list(spiking["hist_layers"])
    for layer, row in zip(names[1:], spiking["hist_counts"][1:]):
        if layer != "head":
            assert row[2:].sum() == 0 and row[1] > 0, layer
    assert spiking["hist_counts"][names.index("head"), -1] > 0
    rows = dict(zip(spikf["hist_layers"], spikf["hist_counts"]))
    fed_by_stream = ["blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.attn.v", "blocks.0.mlp.fc1"]
    assert all(rows[n][-1] == 0 for n in fed_by_stream)  # integers, not reals
    assert sum(rows[n][2:-1].sum() for n in fed_by_stream) > 0  # some are >= 2
    assert rows["blocks.0.mlp.fc2"][2:].sum() == 0  # the MLP's hidden spikes: 0/1


def test_probes_of_a_converted_network():
    """Converted CNNs run step by step (one neuron call per step): the steps are stacked into [T, ...]."""
    torch.manual_seed(0)
    model = sm.create_model("test_vgg", converted=True)
    c = model.config
    p = collect_probes(model, torch.rand(2, c.in_channels, c.img_size, c.img_size), ratios=(0.0, 0.75))
    assert int(p["T"]) == c.T and p["firing_rate"].shape == (len(p["rate_layers"]), c.T)
    for i in range(len(p["map_layers"])):
        assert p[f"map_{i}"].shape[:2] == (2, c.T) and p[f"map_{i}"].max() <= p["map_channels"][i]
    assert p["firing_rate"].max() > 0


def test_probes_reject_bad_input():
    model = sm.create_model("test_spikformer")
    with pytest.raises(ValueError, match="expects one batch"):
        collect_probes(model, torch.zeros(2, 32, 32))
    with pytest.raises(ValueError, match="probe ratio"):
        collect_probes(model, events(model), ratios=(1.5,))
    with pytest.raises(TypeError, match="masking sites"):
        collect_probes(nn.Linear(2, 2), torch.zeros(1, 2, 2, 2))


# ------------------------------------------------------------------------------------------------ report


def _table(markdown: str, first_header: str) -> tuple[list[str], list[list[str]]]:
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return [c.strip() for c in lines[start].strip("|").split(" | ")], rows


def test_report_has_no_torch_import(report):
    assert report["forbidden"] == []


def test_report_figures(report, sweep_dir):
    expected = {"accuracy_vs_energy", "energy_by_group", "inference_masking", "blocks_masking", "synaptic_inputs",
                "firing_rates", "spike_maps:test_spikformer-ndigits", "spike_maps:test_spikingformer-ndigits"}
    assert set(report["figures"]) == expected and report["missing"] == {}
    for path in map(Path, report["figures"].values()):
        assert path.parent == sweep_dir / "report"
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, path.name
    md = Path(report["markdown"]).read_text()
    for key, path in report["figures"].items():
        assert f"]({Path(path).name})" in md, key  # every figure is linked, under its title
        assert FIGURES[key.partition(":")[0]][1] in md
    assert "Figures left out" not in md
    leftovers = [p.name for p in (sweep_dir / "report").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_report_table_delta_e_and_ci(report, sweep_dir):
    """ΔE (% saved) against the same-T unmasked run and against the largest T's, recomputed from the database."""
    with ResultsDB(sweep_dir / "results.db", create=False) as db:
        evs = [e for e in db.evaluations() if e["kind"] == "as_trained"]
    energy, accs = {}, {}
    for name in MODELS:
        for T in TIME_STEPS:
            for ratio in RATIOS:
                cell = [e for e in evs if (e["model"], e["T"], e["mask_ratio"]) == (name, T, ratio)]
                energy[name, T, ratio] = statistics.fmean(e["energy_mj"] for e in cell)
                accs[name, T, ratio] = {s: statistics.fmean(e["acc"] for e in cell if e["train_seed"] == s)
                                        for s in TRAIN_SEEDS}
    headers, rows = _table(Path(report["markdown"]).read_text(), "Model")
    assert headers[:4] == ["Model", "T", "M (%)", "Acc (%) mean ± std"]
    col = {h: i for i, h in enumerate(headers)}
    assert "Acc 95 % CI (train seeds)" in col and "E (µJ)" in col
    same, ref = "ΔE vs same-T unmasked (% saved)", "ΔE vs T=3 unmasked (% saved)"
    assert same in col and ref in col
    assert len(rows) == len(MODELS) * len(TIME_STEPS) * len(RATIOS)
    for row in rows:
        name, T, ratio = row[0], int(row[col["T"]]), 0.0 if row[col["M (%)"]] == "–" else float(row[2]) / 100
        E = energy[name, T, ratio]
        assert float(row[col["E (µJ)"]]) == pytest.approx(E * 1e3, rel=1e-3)
        if ratio == 0:
            assert row[col[same]] == "–"
        else:
            assert float(row[col[same]]) == pytest.approx(100 * (1 - E / energy[name, T, 0.0]), abs=0.051)
        assert float(row[col[ref]]) == pytest.approx(100 * (1 - E / energy[name, 3, 0.0]), abs=0.051)
        means = list(accs[name, T, ratio].values())
        half = t975(1) * statistics.stdev(means) / 2 ** 0.5
        lo, hi = map(float, re.match(r"\[(.+), (.+)\]", row[col["Acc 95 % CI (train seeds)"]]).groups())
        assert lo == pytest.approx(statistics.fmean(means) - half, abs=0.006)
        assert hi == pytest.approx(statistics.fmean(means) + half, abs=0.006)
        assert row[col["train seeds"]] == "2" and row[col["mask seeds"]] == ("2" if ratio else "–")
    assert t975(1) == pytest.approx(12.706) and t975(10) == pytest.approx(2.228)


def _chromium_body(page: Path, tmp_path: Path) -> dict[str, str]:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not installed: `make test` installs it (Debian package chromium); the report's "
                    "HTML page is checked in a real headless browser")
    proc = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'chr'}",
                           "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    body = re.search(r"<body([^>]*)>", proc.stdout)
    assert body, f"chromium dumped no DOM (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))


def test_report_html_renders_in_chromium(report, tmp_path):
    page = Path(report["html"])
    text = page.read_text()
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", text)  # nothing outside the page
    attrs = _chromium_body(page, tmp_path)
    assert attrs.get("data-check") == "done", attrs
    assert attrs["data-errors"] == "0", attrs["data-error-messages"]
    assert attrs["data-images"] == attrs["data-images-ok"] == str(len(report["figures"]))
    assert attrs["data-tables"] == "2" and attrs["data-sort-ok"] == "true"
    # the check itself catches a broken image and a script error
    broken = text.replace("base64,", "base64,AAAA", 1).replace("</body>", "<script>notDefined();</script></body>")
    bad = tmp_path / "broken.html"
    bad.write_text(broken)
    attrs = _chromium_body(bad, tmp_path)
    assert attrs["data-errors"] == "1" and "notDefined" in attrs["data-error-messages"]
    assert int(attrs["data-images-ok"]) == int(attrs["data-images"]) - 1


# ------------------------------------------------------------------------------------------------ missing data


@pytest.fixture(scope="module")
def small_db(tmp_path_factory, sweep_dir) -> Path:
    """One unmasked run: its as-trained evaluation only (no inference, blocks or probes)."""
    path = tmp_path_factory.mktemp("small") / "one.db"
    with ResultsDB(sweep_dir / "results.db", create=False) as full:
        ev = next(e for e in full.evaluations() if e["kind"] == "as_trained" and e["mask_ratio"] == 0)
        layers = full.table("layers", [ev["eval_id"]])
    energy = {"totals": ev["totals"], "samples": ev["energy_samples"],
              "layers": [{"name": r["layer"], "group": r["grp"], "op": r["op"], "rule": r["rule"],
                          "encoding": r["encoding"], "energy_pj": r["energy_pj"], "sops": r["sops"],
                          "macs": r["macs"], "input_rate": r["input_rate"]} for r in layers]}
    with ResultsDB(path) as db:
        db.start_run("only", {"model": {"name": ev["model"]}}, fields={"model": ev["model"], "T": ev["T"],
                                                                       "mask_ratio": 0.0, "train_seed": 0})
        db.finish_run("only", [dict(name="as trained", kind="as_trained", mask_ratio=0.0, mask={}, acc=ev["acc"],
                                    energy=energy)], fields={"params": 1000})
    return path


def test_report_leaves_out_figures_without_data(small_db):
    out = small_db.parent / "rep"
    result = build_report(small_db, out)
    assert set(result["figures"]) == {"accuracy_vs_energy", "energy_by_group"}
    assert set(result["missing"]) == {"inference_masking", "blocks_masking", "spike_maps", "synaptic_inputs",
                                      "firing_rates"}
    md = (out / "report.md").read_text()
    assert "## Figures left out" in md
    for option in ("--eval-ratios", "--blocks", "--no-probes"):
        assert option in md
    headers, rows = _table(md, "Model")
    ci = headers.index("Acc 95 % CI (train seeds)")
    assert rows[0][ci] == "–"  # one training seed: no interval
    assert "Figures left out" in (out / "report.html").read_text()


def test_report_without_results_writes_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ResultsError, match="holds no results.db"):
        build_report(tmp_path, out)
    with pytest.raises(ResultsError, match="does not exist"):
        build_report(tmp_path / "nothing.db", out)
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(ResultsError, match="empty"):
        build_report(tmp_path / "empty.db", out)
    with ResultsDB(tmp_path / "results.db") as db:
        db.start_run("r", {"model": {}})  # started, never finished
    with pytest.raises(ResultsError, match="no finished runs"):
        build_report(tmp_path, out)
    assert not out.exists() and not (tmp_path / "report").exists()


def test_report_cli(small_db, capsys):
    import argparse

    from spikemask.cli.report_cmd import add_arguments, cmd_report

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([str(small_db), "--out", str(small_db.parent / "cli"), "--json"])
    assert cmd_report(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert Path(summary["html"]).is_file() and set(summary["figures"]) == {"accuracy_vs_energy", "energy_by_group"}
    assert cmd_report(parser.parse_args([str(small_db)])) == 0  # default --out: report/ next to the database
    text = capsys.readouterr().out
    assert str(small_db.parent / "report" / "report.html") in text and "left out blocks_masking" in text


def test_report_and_results_commands_never_load_torch(sweep_dir, tmp_path):
    """`spikemask report` and `spikemask results` start without torch or the training code."""
    script = textwrap.dedent("""
        import json, sys
        from spikemask.cli.main import main
        codes = [main(["report", sys.argv[1], "--out", sys.argv[2]]), main(["results", "show", sys.argv[1]])]
        print(json.dumps({"codes": codes, "torch": sorted(m for m in sys.modules if m.split(".")[0] == "torch")}))
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(sweep_dir), str(tmp_path / "r")], capture_output=True,
                          text=True, timeout=300)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"codes": [0, 0], "torch": []}, proc.stderr[-2000:]
    from spikemask.cli.main import MAX_SIDE
    from spikemask.data.event_dataset import MAX_SIDE as DATA_MAX_SIDE

    assert MAX_SIDE == DATA_MAX_SIDE
