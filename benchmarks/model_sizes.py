"""Parameters and multiply-adds of the model zoo, measured by the project's own summary
(project/models/summary.py). Prints the Markdown table of the README's "Models" section;
tests/end_to_end/test_readme.py checks that the README shows exactly this output.

    python benchmarks/model_sizes.py
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from project.models.mobilenet import MobileNet  # noqa: E402
from project.models.repvgg import RepVGG, reparameterize  # noqa: E402
from project.models.summary import summarize  # noqa: E402
from project.models.unet import UNet  # noqa: E402
from project.models.upsample import UPSAMPLE_KINDS  # noqa: E402


def rows():
    imagenet, shapes = torch.zeros(1, 3, 224, 224), torch.zeros(1, 3, 32, 32)
    for version in (1, 2):
        for depthwise in (True, False):
            convs = "depthwise-separable" if depthwise else "standard 3x3"
            model = MobileNet(1000, version=version, depthwise=depthwise)
            yield (
                f"MobileNetV{version} 1.0, {convs}",
                "224x224, 1000 classes",
                summarize(model, imagenet),
            )
    for variant in ("A0", "tiny"):
        size, example = (
            ("224x224, 1000 classes", imagenet) if variant == "A0" else ("32x32, 5 classes", shapes)
        )
        model = RepVGG(1000 if variant == "A0" else 5, variant=variant).eval()
        yield f"RepVGG-{variant}, training form", size, summarize(model, example)
        yield f"RepVGG-{variant}, deploy form", size, summarize(reparameterize(model), example)
    for kind in UPSAMPLE_KINDS:
        model = UNet(6, width=8, upsample=kind)
        yield f"U-Net width 8, upsample={kind}", "32x32, 6 classes", summarize(model, shapes)


def main() -> None:
    print("| model | input | parameters | multiply-adds |")
    print("| --- | --- | ---: | ---: |")
    for name, size, summary in rows():
        print(
            f"| {name} | {size} | {summary.parameters / 1e6:.2f}M | {summary.multiply_adds / 1e6:,.1f}M |"
        )


if __name__ == "__main__":
    main()
