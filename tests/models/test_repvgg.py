"""RepVGG: the fused deploy form computes what the three-branch training form computes."""

import pytest
import torch
from torch import nn

from project.models.repvgg import RepVGG, RepVGGBlock, reparameterize


def randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BN statistics and affine parameters, as after training."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.1)
            module.weight.data.copy_(torch.randn(n, generator=generator))
            module.bias.data.copy_(torch.randn(n, generator=generator))


@pytest.mark.parametrize(
    "in_channels,out_channels,stride", [(8, 8, 1), (8, 16, 1), (8, 8, 2), (8, 16, 2)]
)
def test_block_deploy_form_equals_training_form(in_channels, out_channels, stride):
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    block = RepVGGBlock(in_channels, out_channels, stride)
    assert (block.identity is not None) == (in_channels == out_channels and stride == 1)
    randomize_batchnorm(block, generator)
    block.eval()
    x = torch.randn(4, in_channels, 15, 16, generator=generator)
    with torch.no_grad():
        train_form = block(x)
        block.switch_to_deploy()
        deploy_form = block(x)
    assert block.deployed and [name for name, _ in block.named_children()] == [
        "activation",
        "reparam",
    ]
    assert torch.allclose(train_form, deploy_form, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("variant", ["tiny", "A0"])
def test_whole_model_deploy_form_equals_training_form_and_loads_strictly(variant):
    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    model = RepVGG(num_classes=10, variant=variant)
    randomize_batchnorm(model, generator)
    model.eval()
    x = torch.randn(2, 3, 64, 64, generator=generator)
    with torch.no_grad():
        train_form = model(x)
        reparameterize(model)
        deploy_form = model(x)
    assert torch.allclose(train_form, deploy_form, atol=1e-5, rtol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())

    deployed = RepVGG(num_classes=10, variant=variant, deploy=True)
    deployed.load_state_dict(model.state_dict(), strict=True)
    deployed.eval()
    with torch.no_grad():
        assert torch.equal(deployed(x), deploy_form)


def test_reparameterize_twice_changes_nothing():
    model = RepVGG(num_classes=3).eval()
    reparameterize(model)
    weights = {name: p.clone() for name, p in model.state_dict().items()}
    reparameterize(model)
    assert all(torch.equal(weights[name], p) for name, p in model.state_dict().items())


def test_unknown_variant_lists_the_valid_ones():
    with pytest.raises(ValueError, match="choose one of: A0, A1, B0, tiny"):
        RepVGG(num_classes=3, variant="B3")
