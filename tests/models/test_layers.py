"""Finding layers by name, freezing by pattern, and the model summary."""

import pytest
import torch
from torch import nn

from project.models.cnn import SmallCNN
from project.models.layers import find_layer, freeze
from project.models.summary import count_multiply_adds, summarize


def test_find_layer_by_qualified_name_and_a_helpful_error():
    model = SmallCNN(num_classes=5)
    assert find_layer(model, "features.0.1") is model.features[0][1]
    with pytest.raises(
        KeyError,
        match=r"no layer named 'features.0.9'; layers under features.0: features.0.0, features.0.1, features.0.2",
    ):
        find_layer(model, "features.0.9")


def test_freeze_by_glob_pattern_stops_those_parameters_from_training():
    model = SmallCNN(num_classes=5)
    frozen = freeze(model, ["features.0.*", "head.*.bias"])
    assert frozen == [
        "features.0.0.weight",
        "features.0.1.weight",
        "features.0.1.bias",
        "head.3.bias",
    ]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(4, 3, 16, 16)).sum().backward()
    optimizer.step()
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) == (name in frozen), name


def test_freeze_pattern_that_matches_nothing_is_an_error():
    with pytest.raises(ValueError, match="model.freeze pattern 'backbone.*' matches no parameter"):
        freeze(SmallCNN(num_classes=5), ["backbone.*"])


def test_multiply_adds_by_hand_for_conv_linear_and_transposed_conv():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8*8*8 outputs x 3*9 = 13,824
        nn.ConvTranspose2d(8, 4, 2, stride=2),  # 8*8*8 inputs x 4*4 = 8,192
        nn.Conv2d(4, 4, 3, padding=1, groups=4),  # 4*16*16 outputs x 1*9 = 9,216
        nn.Flatten(),
        nn.Linear(4 * 16 * 16, 10),  # 10 x 1024 = 10,240
    )
    assert count_multiply_adds(model, torch.zeros(2, 3, 8, 8)) == 13_824 + 8_192 + 9_216 + 10_240


def test_summary_text_names_parameters_and_multiply_adds():
    model = SmallCNN(num_classes=5)
    text = str(summarize(model, torch.zeros(1, 3, 32, 32)))
    assert text.startswith("SmallCNN: 61,") and "trainable" in text
    assert "M multiply-adds per 3x32x32 input" in text
    model.train()
    summarize(model, torch.zeros(1, 3, 32, 32))
    assert model.training  # the probe restores the mode
