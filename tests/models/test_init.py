"""Weight-initialization schemes: statistics of the initialized weights."""

import math

import pytest
import torch
from torch import nn

from project.models.blocks import InvertedResidual
from project.models.init import WEIGHT_INITS, init_weights

FAN_IN, FAN_OUT = 1024, 2048  # a large layer: sample statistics within ~2% of the truth


def initialized(scheme: str) -> torch.Tensor:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FAN_IN, FAN_OUT), nn.BatchNorm1d(FAN_OUT))
    with torch.no_grad():
        model[1].weight.fill_(3.0)
        model[1].bias.fill_(2.0)
        model[0].bias.fill_(1.0)
    init_weights(model, scheme)
    if scheme != "default":
        assert torch.all(model[0].bias == 0)
    assert torch.all(model[1].weight == 1) and torch.all(model[1].bias == 0)
    return model[0].weight.detach()


@pytest.mark.parametrize(
    "scheme,expected_std",
    [
        ("kaiming_normal", math.sqrt(2 / FAN_IN)),
        ("kaiming_uniform", math.sqrt(2 / FAN_IN)),
        ("xavier_normal", math.sqrt(2 / (FAN_IN + FAN_OUT))),
        ("xavier_uniform", math.sqrt(2 / (FAN_IN + FAN_OUT))),
        ("normal", 0.01),
        (
            "default",
            math.sqrt(1 / (3 * FAN_IN)),
        ),  # kaiming_uniform(a=sqrt(5)): bound 1/sqrt(fan_in)
    ],
)
def test_weight_std_matches_the_scheme(scheme, expected_std):
    weight = initialized(scheme)
    assert abs(weight.std().item() - expected_std) < 0.1 * expected_std
    assert abs(weight.mean().item()) < 0.1 * expected_std


def test_uniform_schemes_are_bounded_and_trunc_normal_is_cut_at_two_std():
    bound = math.sqrt(6 / FAN_IN)  # kaiming_uniform with the ReLU gain
    assert initialized("kaiming_uniform").abs().max() <= bound
    weight = initialized("trunc_normal")
    assert weight.abs().max() <= 0.04 and 0.015 < weight.std() < 0.02


def test_orthogonal_rows_are_orthonormal():
    weight = initialized("orthogonal")  # (2048, 1024): columns orthonormal
    identity = weight.T @ weight
    assert torch.allclose(identity, torch.eye(FAN_IN), atol=1e-4)


def test_zero_init_residual_zeroes_only_the_last_bn_of_residual_branches():
    torch.manual_seed(0)
    model = nn.Sequential(InvertedResidual(8, 8, 1, 4), InvertedResidual(8, 16, 2, 4))
    init_weights(model, "kaiming_normal", zero_init_residual=True)
    assert torch.all(model[0].block[-1].weight == 0)
    assert torch.all(model[0].block[0][1].weight == 1)  # the other BNs start at 1
    assert torch.all(model[1].block[-1].weight == 1)  # no residual: untouched
    model.eval()
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(model[0](x), x)


def test_unknown_scheme_lists_the_valid_ones():
    with pytest.raises(ValueError) as error:
        init_weights(nn.Linear(2, 2), "he")
    assert "model.init='he' is not known" in str(error.value)
    assert all(name in str(error.value) for name in WEIGHT_INITS)
