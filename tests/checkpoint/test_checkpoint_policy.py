"""The checkpoint policy: best.pt, top-k snapshots, last.pt, the manifest, cadence."""

import json

import pytest
import torch

from project.checkpoint.policy import MANIFEST, CheckpointPolicy
from project.errors import UserError


def state_at(epoch: int):
    return lambda: {"config": {}, "model": {"w": torch.tensor([float(epoch)])}, "epoch": epoch}


def validate(policy: CheckpointPolicy, scores: list[float]) -> None:
    for epoch, score in enumerate(scores, start=1):
        policy.on_validation_end({"val/loss": score}, epoch, epoch * 10, state_at(epoch))


def files(policy: CheckpointPolicy) -> set[str]:
    return {path.name for path in policy.directory.iterdir()}


def manifest(policy: CheckpointPolicy) -> dict:
    return json.loads((policy.directory / MANIFEST).read_text())


def test_best_follows_monitor_and_mode_and_top_k_keeps_the_k_best(tmp_path):
    policy = CheckpointPolicy(tmp_path, monitor="val/loss", mode="min", save_top_k=2)
    validate(policy, [0.5, 0.7, 0.3, 0.4, 0.9])
    assert files(policy) == {
        "best.pt", "last.pt", MANIFEST, "epoch=003-step=000030.pt", "epoch=004-step=000040.pt",
    }  # fmt: skip
    best = torch.load(policy.best_path, weights_only=True)
    last = torch.load(policy.last_path, weights_only=True)
    assert best["epoch"] == 3 and best["checkpoint_policy"]["best_score"] == 0.3
    assert last["epoch"] == 5 and last["metrics"] == {"val/loss": 0.9}
    listed = manifest(policy)
    assert [(e["file"], e["score"]) for e in listed["top_k"]] == [
        ("epoch=003-step=000030.pt", 0.3),
        ("epoch=004-step=000040.pt", 0.4),
    ]
    assert listed["best"] == {"file": "best.pt", "score": 0.3, "epoch": 3, "step": 30}
    assert listed["last"]["epoch"] == 5 and listed["monitor"] == "val/loss"
    # Each kept snapshot is the full state of its epoch.
    snapshot = torch.load(policy.directory / "epoch=004-step=000040.pt", weights_only=True)
    assert snapshot["model"]["w"].item() == 4.0


@pytest.mark.parametrize("save_top_k,expected", [(0, 0), (-1, 4)])
def test_top_k_zero_keeps_no_snapshot_and_minus_one_keeps_all(tmp_path, save_top_k, expected):
    policy = CheckpointPolicy(tmp_path, monitor="val/loss", mode="min", save_top_k=save_top_k)
    validate(policy, [0.5, 0.7, 0.3, 0.4])
    snapshots = files(policy) - {"best.pt", "last.pt", MANIFEST}
    assert len(snapshots) == expected == len(manifest(policy)["top_k"])


def test_every_n_epochs_and_save_last(tmp_path):
    policy = CheckpointPolicy(
        tmp_path, monitor="val/loss", mode="min", save_top_k=-1, every_n_epochs=2, save_last=False
    )
    validate(policy, [0.5, 0.4, 0.3, 0.6])
    assert files(policy) == {
        "best.pt", MANIFEST, "epoch=002-step=000020.pt", "epoch=004-step=000040.pt",
    }  # fmt: skip
    # best.pt is the best so far even when its epoch was not a snapshot epoch.
    assert torch.load(policy.best_path, weights_only=True)["epoch"] == 3


def test_every_n_steps_writes_a_resumable_last_mid_epoch(tmp_path):
    from tests.trainer.test_trainer import make_data, make_trainer

    policy = CheckpointPolicy(tmp_path, monitor="val/loss", mode="min", every_n_steps=4)
    saved_at = []
    save = policy.save_resumable
    policy.save_resumable = lambda step, build: saved_at.append(step) or save(step, build)
    trainer = make_trainer(torch.nn.Linear(6, 3), policy=policy, max_epochs=1, max_steps=9)
    loader = torch.utils.data.DataLoader(make_data(samples=40), batch_size=4)
    trainer.fit(loader, loader)  # steps 1..9 of a 10-step epoch
    assert saved_at == [4, 8, 9]  # every 4 steps, then max_steps
    assert manifest(policy)["last"]["step"] == 9
    state = torch.load(policy.last_path, weights_only=True)
    assert (state["global_step"], state["position"]["batch"]) == (9, 9)


def test_filename_template_with_a_metric_and_a_bad_template(tmp_path):
    policy = CheckpointPolicy(
        tmp_path, monitor="val/acc", filename="epoch={epoch:02d}-acc={val/acc:.3f}"
    )
    policy.check_filename(["val/acc", "val/loss"])
    policy.on_validation_end({"val/acc": 0.8125}, 1, 10, state_at(1))
    assert (policy.directory / "epoch=01-acc=0.812.pt").is_file()
    bad = CheckpointPolicy(tmp_path, monitor="val/acc", filename="{val/f1:.3f}")
    with pytest.raises(UserError, match=r"checkpoint.filename='\{val/f1:.3f\}' cannot be filled"):
        bad.check_filename(["val/acc", "val/loss"])


def test_state_round_trip_keeps_the_ranking(tmp_path):
    policy = CheckpointPolicy(tmp_path, monitor="val/loss", mode="min", save_top_k=2)
    validate(policy, [0.5, 0.7])
    resumed = CheckpointPolicy(tmp_path, monitor="val/loss", mode="min", save_top_k=2)
    resumed.load_state_dict(torch.load(policy.last_path, weights_only=True)["checkpoint_policy"])
    resumed.on_validation_end({"val/loss": 0.6}, 3, 30, state_at(3))
    # 0.7 (epoch 2) is evicted by 0.6: the resumed policy knew about both earlier files.
    assert {e["epoch"] for e in manifest(resumed)["top_k"]} == {1, 3}
    assert not (resumed.directory / "epoch=002-step=000020.pt").exists()


def test_leftovers_of_a_killed_save_are_removed(tmp_path):
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    (directory / ".last.pt.12345.tmp").write_bytes(b"half a checkpoint")
    CheckpointPolicy(tmp_path, monitor="val/loss")
    assert not list(directory.iterdir())
