"""Any torchvision classification model by name (`model=torchvision model.name=resnet18`)."""

import torchvision
from torch import nn

from project.models.layers import find_layer


def classification_models() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def last_linear_name(model: nn.Module) -> str:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)][-1]


def torchvision_model(name: str, num_classes: int, weights: str | None = None) -> nn.Module:
    """Build `name` with `num_classes` outputs.

    Without weights the classifier is built at the right size. With weights (a name such
    as "DEFAULT" or "IMAGENET1K_V1", downloaded by torchvision on first use), the
    pretrained model is built as published and its last linear layer replaced by a new
    one with `num_classes` outputs, the usual start for fine-tuning.
    """
    available = classification_models()
    if name not in available:
        raise ValueError(
            f"model.name={name!r} is not a torchvision classification model; some that are: "
            f"{', '.join(n for n in available if n.startswith(('resnet', 'mobilenet', 'efficientnet_b')))}, ..."
        )
    if weights is None:
        return torchvision.models.get_model(name, num_classes=num_classes)
    model = torchvision.models.get_model(name, weights=weights)
    head_name = last_linear_name(model)
    head = find_layer(model, head_name)
    if head.out_features != num_classes:
        parent_name, _, attribute = head_name.rpartition(".")
        parent = find_layer(model, parent_name) if parent_name else model
        setattr(parent, attribute, nn.Linear(head.in_features, num_classes))
    return model
