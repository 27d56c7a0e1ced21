"""Atomic writes and safe, clearly failing loads."""

import pickle

import pytest
import torch
from torch import nn

from project.checkpoint.files import atomic_save
from project.checkpoint.format import FORMAT_VERSION, load_checkpoint, read_weights
from project.errors import UserError
from project.models.weights import load_model_weights
from tests.conftest import REPO_ROOT


def valid_state(**extra):
    return {
        "format_version": FORMAT_VERSION,
        "config": {"seed": 1},
        "model": {"w": torch.ones(2)},
        **extra,
    }


def test_atomic_save_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    atomic_save(valid_state(epoch=1), path)
    atomic_save(valid_state(epoch=2), path)
    assert load_checkpoint(path)["epoch"] == 2
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_a_save_that_fails_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save(valid_state(epoch=1), path)

    def crash(obj, file):
        file.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(UserError, match=f"cannot write {path}: disk full; the files already"):
        atomic_save(valid_state(epoch=2), path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=f"checkpoint not found: {tmp_path / 'nope.pt'}$"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(tmp_path):
    path = tmp_path / "last.pt"
    atomic_save(valid_state(), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(
        UserError, match=f"cannot read checkpoint {path}: corrupt or not a checkpoint"
    ):
        load_checkpoint(path)


def test_a_file_of_another_program(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(UserError, match="is not a checkpoint of this project"):
        load_checkpoint(path)


def test_a_newer_format_asks_for_an_update(tmp_path):
    path = tmp_path / "future.pt"
    torch.save(valid_state(format_version=FORMAT_VERSION + 1), path)
    with pytest.raises(UserError, match=f"format {FORMAT_VERSION + 1}, newer than this code reads"):
        load_checkpoint(path)


class RunsCode:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_a_checkpoint_carrying_a_pickled_object_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save(valid_state(payload=RunsCode()), path, pickle_module=pickle)
    with pytest.raises(
        UserError, match=r"refused to load .*evil.pt: it holds pickled Python objects \(print\)"
    ):
        load_checkpoint(path)
    with pytest.raises(UserError, match="refused to load"):
        read_weights(path)  # the model.pretrained path refuses it too
    assert "code ran" not in capsys.readouterr().out


def test_the_project_never_loads_with_weights_only_false():
    sources = [*REPO_ROOT.glob("project/**/*.py"), *REPO_ROOT.glob("*.py")]
    assert len(sources) > 20
    for source in sources:
        assert "weights_only=False" not in source.read_text(), source


def test_weights_of_another_architecture_name_the_file(tmp_path):
    weights = nn.Linear(4, 2).state_dict()
    with pytest.raises(
        UserError,
        match=r"ckpt.pt does not fit the model Linear: 1 shape mismatch \(weight \(2, 4\) vs \(2, 5\)\)",
    ):
        load_model_weights(nn.Linear(5, 2), weights, tmp_path / "ckpt.pt")
