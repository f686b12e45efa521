"""Checkpoints: the model rebuilt from the file alone, safe loading, clear errors, atomic writes, masks kept."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

import spikemask as sm
from spikemask.cli.main import main
from spikemask.config import to_dict
from spikemask.train import CheckpointError, load_checkpoint, load_model, save_checkpoint
from spikemask.train.checkpoint import FORMAT, VERSION


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights and BatchNorm statistics of real event counts, wide enough that every layer fires.

    BN statistics are exact batch statistics of a random clip (a round trip that drops buffers shows);
    BN gains of 2 make the normalised currents cross the LIF thresholds.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        for mod in model.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.momentum = None
                mod.reset_running_stats()
                mod.weight.fill_(2.0)
        model.train()
        model(torch.poisson(torch.full((2, 8, 2, 32, 32), 0.4), generator=g))  # [T, B, C, H, W]
    return model.eval()


def masked_model():
    model = sm.create_model("test_spikformer", mask={"ratio": 0.4, "sites": ["attn.q", "attn.scores", "mlp.hidden"],
                                                     "share_over_time": True, "seed": 11})
    return perturbed(model)


def test_round_trip_rebuilds_the_same_model_from_the_file_alone(tmp_path):
    model = masked_model()
    path = save_checkpoint(tmp_path / "m.pt", model, epoch=3, note="hello")
    loaded, state = load_model(path)
    assert type(loaded) is type(model) and loaded.variant == "test_spikformer"
    assert to_dict(loaded.config) == to_dict(model.config)
    assert loaded.config.mask.ratio == 0.4 and loaded.config.mask.share_over_time
    assert state["epoch"] == 3 and state["note"] == "hello"
    assert "τ=0.4" in repr(loaded)  # the masks are live, not just stored
    sd, ld = model.state_dict(), loaded.state_dict()
    assert sd.keys() == ld.keys() and all(torch.equal(sd[k], ld[k]) for k in sd)
    x = torch.poisson(torch.full((2, 4, 2, 32, 32), 0.5))  # [T, B, C, H, W] event counts
    for m in (model, loaded.eval()):
        m.reseed_masks(5)
    out_a, out_b = model(x), loaded(x)
    assert torch.equal(out_a, out_b)
    # the masks do act: without them the logits change
    loaded.set_mask(sm.MaskConfig())
    assert not torch.equal(loaded(x), out_a)


def test_checkpoint_is_plain_data(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", masked_model())
    state = torch.load(path, weights_only=True)  # no allow-listing needed
    assert state["format"] == FORMAT and state["version"] == VERSION
    assert state["family"] == "spikformer" and isinstance(state["model_config"], dict)


class Payload:
    """An arbitrary object: unpickling it would run ``__setstate__``."""

    ran = False

    def __setstate__(self, state):
        Payload.ran = True


def test_arbitrary_pickled_objects_are_refused(tmp_path):
    model = sm.create_model("test_spikformer")
    state = {"format": FORMAT, "version": VERSION, "family": "spikformer", "variant": "test_spikformer",
             "model_config": to_dict(model.config), "model": model.state_dict(), "extra": Payload()}
    path = tmp_path / "evil.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "Payload" in str(err.value)
    assert "refus" in str(err.value) and "corrupt" not in str(err.value)  # a valid file, refused on purpose
    assert "False" not in str(err.value)  # no advice to switch the safety off (torch's message gives it)
    assert not Payload.ran
    with pytest.raises(CheckpointError):
        load_model(path)
    assert not Payload.ran


def write_bytes(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", ["missing", "directory", "truncated", "random", "text", "empty", "not_spikemask",
                                  "tensor", "newer", "lacks_weights"])
def test_bad_files_raise_clear_errors(tmp_path, case):
    good = save_checkpoint(tmp_path / "good.pt", sm.create_model("test_spikformer"))
    blob = good.read_bytes()
    plain = {"format": FORMAT, "version": VERSION, "family": "spikformer", "model_config": {}, "model": {}}
    path, expect = tmp_path / f"{case}.pt", "corrupt or not a PyTorch file"
    if case == "missing":
        expect = "does not exist"
    elif case == "directory":
        path = tmp_path / "run_dir"
        path.mkdir()
        expect = "is a directory"
    elif case == "truncated":
        write_bytes(path, blob[: len(blob) // 2])
    elif case == "random":
        write_bytes(path, os.urandom(4096))
    elif case == "text":
        path.write_text("hello world\n")  # the unpickler fails on this with a KeyError
    elif case == "empty":
        write_bytes(path, b"")
    elif case == "not_spikemask":
        torch.save({"state_dict": {"w": torch.ones(2)}}, path)
        expect = "not a spikemask checkpoint"
    elif case == "tensor":
        torch.save(torch.ones(3), path)
        expect = "not a spikemask checkpoint"
    elif case == "newer":
        torch.save({**plain, "version": VERSION + 1}, path)
        expect = "newer"
    elif case == "lacks_weights":
        del plain["model"]
        torch.save(plain, path)
        expect = "lacks model"
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    assert str(path) in str(err.value)
    assert expect in str(err.value)


def test_invalid_stored_model_config_is_a_checkpoint_error(tmp_path):
    model = sm.create_model("test_spikformer")
    path = save_checkpoint(tmp_path / "m.pt", model)
    state = torch.load(path, weights_only=True)
    state["model_config"]["embed_dim"] = 30  # not a multiple of 8
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="invalid model config"):
        load_model(path)


def test_failed_save_keeps_the_previous_file_and_leaves_no_temp_files(tmp_path):
    model = sm.create_model("test_spikformer")
    path = save_checkpoint(tmp_path / "last.pt", model, epoch=1)
    before = path.read_bytes()
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):  # a lambda cannot be pickled
        save_checkpoint(path, perturbed(model), epoch=2, hook=lambda: None)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no .last.pt.*.tmp left
    # and a save into a new directory creates it
    assert load_checkpoint(save_checkpoint(tmp_path / "a" / "b.pt", model))["family"] == "spikformer"


def eval_json(capsys, *args) -> dict:
    capsys.readouterr()
    assert main(["-q", "eval", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_masked_checkpoint_evaluates_with_its_mask_unless_overridden(ndigits_root, tmp_path, capsys):
    model = sm.create_model("test_spikformer", mask={"ratio": 0.5})
    path = save_checkpoint(tmp_path / "masked.pt", perturbed(model))
    as_trained = eval_json(capsys, path, "--seeds", "3", "--batch-size", "128")
    assert "τ=0.5" in as_trained["mask"]
    assert as_trained["mask_seeds"] == [0, 1, 2] and len(as_trained["per_seed"]) == 3
    assert as_trained["data"] == "ndigits"
    assert load_checkpoint(path)["model_config"]["mask"]["ratio"] == 0.5  # evaluating does not touch the file

    off = eval_json(capsys, path, "--seeds", "3", "--mask-ratio", "0", "--batch-size", "128")
    assert off["mask"] == "off" and off["mask_seeds"] == [] and len(off["per_seed"]) == 1

    # the library gives the same numbers: the CLI's defaults are the checkpoint's own settings
    from torch.utils.data import DataLoader

    from spikemask.data import get_dataset
    from spikemask.train import evaluate

    loaded, _ = load_model(path)
    loader = DataLoader(get_dataset("ndigits", split="test", T=2), batch_size=128)
    lib = evaluate(loaded, loader, torch.device("cpu"), mask_seeds=[0, 1, 2])
    assert lib["per_seed"] == pytest.approx(as_trained["per_seed"])
    loaded.set_mask(sm.MaskConfig())
    assert evaluate(loaded, loader, torch.device("cpu"))["acc"] == pytest.approx(off["acc"])


def test_mask_ratio_override_also_replaces_per_site_ratios(ndigits_root, tmp_path, capsys):
    model = sm.create_model("test_spikformer", mask={"ratio": 0.0, "site_ratios": {"attn.scores": 0.5}})
    path = save_checkpoint(tmp_path / "site.pt", perturbed(model))
    assert "τ=0.5 on attn.scores" in eval_json(capsys, path, "--seeds", "2", "--batch-size", "256")["mask"]
    off = eval_json(capsys, path, "--seeds", "2", "--mask-ratio", "0", "--batch-size", "256")
    assert off["mask"] == "off" and off["mask_seeds"] == []


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os

    from spikemask.io import atomic_write_text

    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "out.txt", "x")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644, "like open(): 0666 minus the umask, not mkstemp's 0600"
