"""Every model: builds from its config, keeps its parameters across forward calls, and the
published architectures match their papers' parameter and multiply-add counts."""

import re

import pytest
import torch
import torchvision
from omegaconf import OmegaConf

from project.errors import UserError
from project.models.build import build_model
from project.models.mobilenet import MobileNet
from project.models.summary import summarize
from project.models.torchvision_model import torchvision_model
from project.models.unet import UNet
from project.models.upsample import UPSAMPLE_KINDS
from tests.conftest import compose_config

IMAGENET = torch.zeros(1, 3, 224, 224)

MODEL_OVERRIDES = {
    "cnn": [],
    "mobilenet": ["model.width_mult=0.25"],
    "repvgg": [],
    "torchvision": ["model.name=resnet18"],
    "unet": ["dataset=shapes_seg"],
    "lstm": ["dataset=sequences"],
}


def example_batch(model_name: str):
    if model_name == "lstm":
        return (torch.randint(1, 32, (3, 20)), torch.tensor([20, 7, 12]))
    return (torch.randn(3, 3, 32, 32),)


@pytest.mark.parametrize("name", MODEL_OVERRIDES)
def test_no_layer_is_created_inside_forward(name):
    cfg = compose_config(overrides=[f"model={name}", *MODEL_OVERRIDES[name]])
    model = build_model(cfg.model)
    before = {key: id(p) for key, p in model.named_parameters()}
    modules_before = [id(m) for m in model.modules()]
    batch = example_batch(name)
    for mode in ("train", "eval", "train"):
        getattr(model, mode)()
        output = model(*batch)
        output.float().mean().backward()
    assert {key: id(p) for key, p in model.named_parameters()} == before
    assert [id(m) for m in model.modules()] == modules_before
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_mobilenet_v1_matches_the_paper():
    depthwise = summarize(MobileNet(1000, version=1), IMAGENET)
    standard = summarize(MobileNet(1000, version=1, depthwise=False), IMAGENET)
    # Paper, Table 4: 4.2M parameters and 569M multiply-adds; 29.3M with standard convs.
    assert depthwise.parameters == pytest.approx(4.2e6, rel=0.01)
    assert depthwise.multiply_adds == pytest.approx(569e6, rel=0.01)
    assert standard.parameters == pytest.approx(29.3e6, rel=0.01)


def test_mobilenet_v2_matches_the_reference_implementation():
    ours = summarize(MobileNet(1000, version=2), IMAGENET)
    reference = summarize(torchvision.models.mobilenet_v2(), IMAGENET)
    assert ours.parameters == reference.parameters == 3_504_872
    assert ours.multiply_adds == reference.multiply_adds
    # The paper's Table 3 says 3.4M and 300M: 3.47M without BN parameters, truncated.
    bn_free = sum(
        p.numel()
        for name, p in MobileNet(1000, version=2).named_parameters()
        if p.dim() > 1 or name.endswith("classifier.3.bias")
    )
    assert 3.4e6 <= bn_free < 3.5e6
    assert ours.multiply_adds == pytest.approx(300e6, rel=0.01)


def test_mobilenet_width_multiplier_scales_channels():
    half = MobileNet(10, version=1, width_mult=0.5)
    assert half.features[0][0].out_channels == 16 and half.classifier[-1].in_features == 512
    thin_v2 = MobileNet(10, version=2, width_mult=0.5)
    assert thin_v2.classifier[-1].in_features == 1280  # V2 keeps the last conv at 1280


@pytest.mark.parametrize("upsample", UPSAMPLE_KINDS)
@pytest.mark.parametrize("size", [(32, 32), (33, 29)])
def test_unet_outputs_a_class_map_of_the_input_size(upsample, size):
    model = UNet(6, width=4, upsample=upsample, depthwise=True)
    assert model(torch.randn(2, 3, *size)).shape == (2, 6, *size)


def test_torchvision_model_by_name_without_weights():
    model = torchvision_model("resnet18", num_classes=7)
    assert model.fc.out_features == 7
    assert summarize(model).parameters == pytest.approx(11.18e6, rel=0.01)
    with pytest.raises(ValueError, match="model.name='resnet1' is not a torchvision"):
        torchvision_model("resnet1", num_classes=7)


def test_build_model_applies_init_and_freeze_from_the_config():
    cfg = compose_config(
        overrides=["model=mobilenet", "model.width_mult=0.25", "model.freeze=[features.0.*]"]
    )
    model = build_model(cfg.model)
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["features.0.0.weight", "features.0.1.weight", "features.0.1.bias"]
    summary = summarize(model)
    assert summary.parameters - summary.trainable == sum(
        p.numel() for p in model.features[0].parameters()
    )
    # kaiming_normal, the YAML's init: std of the largest conv matches sqrt(2 / fan_in).
    # A small layer (the 27-weight stem, a 72-weight depthwise conv) has too few
    # samples for a 15% tolerance to hold for every random draw.
    largest = max(
        (m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)),
        key=lambda weight: weight.numel(),
    )
    assert largest.numel() > 10_000
    fan_in = largest[0].numel()
    assert largest.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.1)


def test_model_build_options_are_not_passed_to_the_constructor():
    cfg = OmegaConf.create(
        {"_target_": "project.models.cnn.SmallCNN", "num_classes": 3, "init": "orthogonal"}
    )
    assert build_model(cfg).head[-1].out_features == 3


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model=unet", "model.upsample=deconv"], "model.upsample='deconv' is not known"),
        (["model=repvgg", "model.variant=B9"], "model.variant='B9' is not known"),
        (["model=cnn", "model.freeze=[backbone.*]"], "'backbone.*' matches no parameter"),
        (["model=torchvision", "model.name=resnet"], "model.name='resnet' is not a torchvision"),
        (["model=cnn", "+model.widht=3"], "unexpected keyword argument 'widht'"),
    ],
)
def test_bad_model_options_become_one_line_user_errors(overrides, message):
    cfg = compose_config(overrides=overrides)
    with pytest.raises(UserError, match=re.escape(message)) as error:
        build_model(cfg.model)
    assert "\n" not in str(error.value)
