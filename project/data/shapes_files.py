"""Write the generated shapes to disk as PNG files, to try `dataset=image_folder` and
`dataset=file_list` (and to test and benchmark them) without downloading anything:

    python -m project.data.shapes_files data/images --train 2000 --val 500 --test 500

writes `<root>/<split>/<label>_<shape>/<index>.png` and `<root>/<split>.txt` list files
whose lines are `<split>/<label>_<shape>/<index>.png <label>`. The label prefix makes the
folders sort in label order, so image_folder's class indices equal the list's labels.
"""

import argparse
from pathlib import Path

import torch
from PIL import Image

from project.data.shapes import SHAPES, render_shapes

CHUNK = 1000


def write_shapes_files(
    root: Path,
    sizes: dict[str, int],
    num_classes: int = len(SHAPES),
    image_size: int = 32,
    seed: int = 0,
) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for split_index, (split, count) in enumerate(sizes.items()):
        generator = torch.Generator().manual_seed(seed * 3 + split_index)
        lines = []
        for first in range(0, count, CHUNK):  # the renderer's memory grows with its batch
            images, labels, _ = render_shapes(
                min(CHUNK, count - first), num_classes, image_size, 0.08, generator
            )
            for index, (image, label) in enumerate(
                zip(images, labels.tolist(), strict=True), first
            ):
                relative = Path(split) / f"{label}_{SHAPES[label]}" / f"{index:06d}.png"
                (root / relative).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / relative)
                lines.append(f"{relative.as_posix()} {label}\n")
        (root / f"{split}.txt").write_text("".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder to write into")
    parser.add_argument("--train", type=int, default=2000, help="train images")
    parser.add_argument("--val", type=int, default=500, help="validation images (0: none)")
    parser.add_argument("--test", type=int, default=500, help="test images (0: none)")
    parser.add_argument("--num-classes", type=int, default=len(SHAPES), help="shapes, 2..5")
    parser.add_argument("--image-size", type=int, default=32, help="height = width")
    args = parser.parse_args()
    sizes = {"train": args.train, "val": args.val, "test": args.test}
    write_shapes_files(
        args.root,
        {split: count for split, count in sizes.items() if count},
        args.num_classes,
        args.image_size,
    )
    print(f"wrote {sum(sizes.values())} images and their list files under {args.root}")


if __name__ == "__main__":
    main()
