"""export.py: every format is written, loads in its own runtime, and matches PyTorch; int8
quantization meets its targets; the inference form (RepVGG fused, EMA, plain BN) is used."""

import copy
import json
import shlex
import shutil

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from project.checkpoint.format import load_checkpoint
from project.deploy.export import export_and_verify, load_trained_model
from project.deploy.quantize import quantize_post_training, signal_to_quantization_noise
from project.errors import USER_ERROR_EXIT_CODE, UserError
from project.models.build import build_model
from project.models.mobilenet import MobileNet
from project.models.repvgg import RepVGG, RepVGGBlock
from project.models.trained import inference_form, revert_sync_batchnorm
from project.models.weights import load_model_weights
from tests.conftest import compose_config, run_script
from tests.end_to_end.test_readme import commands, section

DEPLOY_COMMANDS = commands(section("Deploy"), "python export.py")


@pytest.fixture
def checkpoint(tmp_path, trained_run):
    """A copy of the shared 1-epoch run's best.pt: exports write next to it."""
    copy = tmp_path / "checkpoints" / "best.pt"
    copy.parent.mkdir()
    shutil.copy(trained_run / "checkpoints" / "best.pt", copy)
    return copy


def run_export(command: str, checkpoint):
    words = [
        f"ckpt={checkpoint}" if word.startswith("ckpt=") else word
        for word in shlex.split(command)[2:]
    ]
    return run_script("export.py", *words, f"hydra.run.dir={checkpoint.parent / 'export_log'}")


def pytorch_model(checkpoint) -> nn.Module:
    state = load_checkpoint(checkpoint)
    model = build_model(OmegaConf.create(state["config"]).model, initialize=False)
    load_model_weights(model, state["model"], checkpoint)
    return model.eval()


def test_the_documented_exports_load_in_their_runtimes_and_match_pytorch(checkpoint):
    documented = {
        shlex.split(command)[-1]: command
        for command in DEPLOY_COMMANDS
        if "quantize=" not in command
    }
    assert set(documented) == {
        "format=onnx", "format=torchscript", "format=exported_program", "format=tensorrt"
    }  # fmt: skip
    model = pytorch_model(checkpoint)
    images = torch.randn(3, 3, 32, 32)  # a batch size the export never saw
    with torch.no_grad():
        expected = model(images)
    runtimes = {
        "onnx": lambda path: torch.from_numpy(
            onnxruntime.InferenceSession(str(path)).run(None, {"images": images.numpy()})[0]
        ),
        "torchscript": lambda path: torch.jit.load(str(path))(images),
        "exported_program": lambda path: torch.export.load(str(path)).module()(images),
    }
    suffixes = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "exported_program": ".pt2"}
    for export_format, run in runtimes.items():
        result = run_export(documented[f"format={export_format}"], checkpoint)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "max abs difference from PyTorch on validation data" in result.stdout
        artifact = checkpoint.with_suffix(suffixes[export_format])
        report = json.loads(artifact.with_name(artifact.name + ".json").read_text())
        assert report["max_abs_difference"] <= 1e-4 and report["weights"] == "model"
        with torch.no_grad():
            torch.testing.assert_close(run(artifact), expected, atol=1e-4, rtol=1e-4)

    result = run_export(documented["format=tensorrt"], checkpoint)
    if torch.cuda.is_available():
        pytest.importorskip("torch_tensorrt")
        assert result.returncode == 0, result.stderr[-3000:]
    else:
        assert result.returncode == USER_ERROR_EXIT_CODE
        assert "error: format=tensorrt needs a CUDA GPU" in result.stderr


def test_a_failed_verification_exits_non_zero_and_writes_nothing(checkpoint):
    trained = load_trained_model(checkpoint)
    with pytest.raises(UserError, match=r"differs from PyTorch by up to .* above tolerance=0"):
        export_and_verify(trained, "onnx", tolerance=0.0)  # ONNX Runtime differs by ~1e-6
    assert sorted(path.name for path in checkpoint.parent.iterdir()) == ["best.pt"]


def test_int8_quantization_meets_its_targets_and_loads_as_a_program(checkpoint):
    [command] = [c for c in DEPLOY_COMMANDS if "quantize=int8" in c]
    result = run_export(command, checkpoint)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SQNR of the logits" in result.stdout and "CPU latency" in result.stdout
    artifact = checkpoint.with_suffix(".int8.pt2")
    report = json.loads(artifact.with_name(artifact.name + ".json").read_text())
    assert report["fp32_accuracy"] > 0.5  # the model learned something to lose
    assert report["accuracy_drop_points"] <= 1.0
    assert report["weights_size_ratio"] >= 3.5
    assert report["file_size_ratio"] > 1.5  # the graph's description is a fixed cost
    assert report["sqnr_db"] > 20
    assert report["fp32_latency_ms"] > 0 and report["int8_latency_ms"] > 0
    int8 = torch.export.load(str(artifact)).module()
    images = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        sqnr = signal_to_quantization_noise(pytorch_model(checkpoint)(images), int8(images))
    assert sqnr > 15


@pytest.mark.parametrize(
    "model", [MobileNet(num_classes=5, width_mult=0.5), RepVGG(num_classes=5)],
    ids=["mobilenet", "repvgg-deploy"],
)  # fmt: skip
def test_post_training_quantization_of_mobilenet_and_deployed_repvgg(model):
    torch.manual_seed(0)
    model = inference_form(model)
    calibration = [torch.randn(8, 3, 32, 32) for _ in range(4)]
    int8 = quantize_post_training(model, calibration, calibration[0])
    int8_weights = [t for t in int8.state_dict().values() if t.dtype == torch.int8]
    assert int8_weights and not any(
        p.dtype == torch.float32 and p.ndim == 4 for p in int8.parameters()
    )
    with torch.no_grad():
        images = torch.randn(4, 3, 32, 32)
        assert signal_to_quantization_noise(model(images), int8(images)) > 15


def test_quantize_refuses_a_format_it_cannot_write(checkpoint):
    cfg = compose_config("export", [f"ckpt={checkpoint}", "quantize=int8", "format=onnx"])
    from export import export

    with pytest.raises(UserError, match="format=onnx is not available for int8"):
        export(cfg)


def test_repvgg_is_fused_and_ema_weights_are_used_when_they_were_best(tmp_path):
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py", "model=repvgg", "trainer.ema_decay=0.5", "debug=fast",
        f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = run_dir / "checkpoints" / "best.pt"
    state = load_checkpoint(checkpoint)
    assert state["inference_weights"] == "ema"

    trained = load_trained_model(checkpoint)
    blocks = [m for m in trained.model.modules() if isinstance(m, RepVGGBlock)]
    assert blocks and all(block.deployed for block in blocks)
    training_form = build_model(OmegaConf.create(state["config"]).model, initialize=False)
    images = trained.validation_batch()[:8]
    with torch.no_grad():
        exported = trained.model(images)
        load_model_weights(training_form, state["ema"], checkpoint)
        torch.testing.assert_close(exported, training_form.eval()(images), atol=1e-4, rtol=1e-4)
        load_model_weights(training_form, state["model"], checkpoint)
        assert not torch.allclose(exported, training_form(images), atol=1e-3)

    path, difference = export_and_verify(trained, "onnx", tolerance=1e-4)
    assert difference <= 1e-4
    session = onnxruntime.InferenceSession(str(path))
    graph = onnx.load(str(path)).graph
    assert sum(node.op_type == "Conv" for node in graph.node) == len(blocks)
    assert not any(node.op_type == "BatchNormalization" for node in graph.node)
    np.testing.assert_allclose(
        session.run(None, {"images": images.numpy()})[0], exported.numpy(), atol=1e-4
    )


def test_sync_batchnorm_becomes_batchnorm_with_the_same_outputs():
    torch.manual_seed(0)
    model = build_model(compose_config("train", []).model)
    model.train()
    for _ in range(3):  # running statistics that are not the initial ones
        model(torch.randn(16, 3, 32, 32))
    reference = copy.deepcopy(model).eval()
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert any(isinstance(m, nn.SyncBatchNorm) for m in synced.modules())
    plain = revert_sync_batchnorm(synced).eval()
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in plain.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in plain.modules()) == 4
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(plain(images), reference(images))


def test_bad_export_input_is_one_line_naming_the_value(tmp_path, checkpoint):
    from export import export

    with pytest.raises(UserError, match="format='png' is not valid; choose one of: onnx, "):
        export(compose_config("export", [f"ckpt={checkpoint}", "format=png"]))
    with pytest.raises(UserError, match="missing.pt"):
        load_trained_model(tmp_path / "missing.pt")
    result = run_script("export.py", f"hydra.run.dir={tmp_path / 'log'}")
    assert result.returncode != 0 and "ckpt" in result.stderr
