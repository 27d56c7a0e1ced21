"""Pictures of classification results, drawn with PIL (no plotting library): the confusion
matrix, and the validation samples the model got most wrong."""

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import make_grid

CELL = 36  # pixels per confusion-matrix cell


def confusion_image(confusion: Tensor, names: list[str] | None = None) -> Image.Image:
    """Rows: true class, columns: predicted; shade = share of the row, text = count."""
    counts = confusion.long().cpu()
    classes = len(counts)
    names = names or [str(index) for index in range(classes)]
    margin = 8 + 7 * max(len(name) for name in names)
    size = margin + classes * CELL
    image = Image.new("RGB", (size, size + 16), "white")
    draw, font = ImageDraw.Draw(image), ImageFont.load_default()
    shares = counts.double() / counts.sum(dim=1, keepdim=True).clamp(min=1)
    for row in range(classes):
        draw.text((2, margin + row * CELL + CELL // 3), names[row], fill="black", font=font)
        draw.text((margin + row * CELL + 2, 2), names[row][:5], fill="black", font=font)
        for column in range(classes):
            shade = int(255 * (1 - float(shares[row, column])))
            box = [margin + column * CELL, margin + row * CELL]
            box += [box[0] + CELL - 1, box[1] + CELL - 1]
            draw.rectangle(box, fill=(shade, shade, 255), outline="gray")
            text_color = "white" if shade < 128 else "black"
            draw.text((box[0] + 3, box[1] + CELL // 3), str(int(counts[row, column])),
                      fill=text_color, font=font)  # fmt: skip
    draw.text((margin, size + 2), "rows: true class, columns: predicted", fill="black", font=font)
    return image


def as_tensor(image: Image.Image) -> Tensor:
    """(3, H, W) float in 0..1, what TensorBoard's add_image takes."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255


class WorstSamples:
    """The `keep` validation samples with the lowest probability of their true class."""

    def __init__(self, keep: int = 16):
        self.keep = keep
        self.clear()

    def clear(self) -> None:
        self.images = self.targets = self.predicted = self.confidence = self.true_prob = None

    @torch.no_grad()
    def observe(self, images: Tensor, targets: Tensor, logits: Tensor) -> None:
        probabilities = logits.float().softmax(dim=1)
        true_prob = probabilities.gather(1, targets[:, None]).squeeze(1)
        confidence, predicted = probabilities.max(dim=1)
        lowest = true_prob.topk(min(self.keep, len(true_prob)), largest=False).indices
        batch = [
            t[lowest].cpu() for t in (images.float(), targets, predicted, confidence, true_prob)
        ]
        if self.images is not None:
            batch = [torch.cat([kept, new]) for kept, new in zip(self._kept(), batch, strict=True)]
        order = batch[4].argsort()[: self.keep]
        self.images, self.targets, self.predicted, self.confidence, self.true_prob = (
            t[order] for t in batch
        )  # fmt: skip

    def _kept(self) -> list[Tensor]:
        return [self.images, self.targets, self.predicted, self.confidence, self.true_prob]

    def grid(self, names: list[str] | None = None) -> Tensor | None:
        """Each image (rescaled to 0..1) over a caption: true, predicted, confidence."""
        if self.images is None:
            return None
        tiles = []
        for image, target, predicted, confidence in zip(
            self.images, self.targets, self.predicted, self.confidence, strict=True
        ):
            low, high = image.amin(), image.amax()
            pixels = ((image[:3] - low) / (high - low).clamp(min=1e-6) * 255).byte()
            picture = Image.fromarray(pixels.permute(1, 2, 0).numpy()).resize((64, 64))
            tile = Image.new("RGB", (96, 96), "white")
            tile.paste(picture, (16, 0))
            label = lambda index: names[index] if names and index < len(names) else str(index)  # noqa: E731
            caption = f"{label(int(target))}>{label(int(predicted))} {float(confidence):.2f}"
            ImageDraw.Draw(tile).text((2, 70), caption[:16], fill="black")
            tiles.append(as_tensor(tile))
        return make_grid(torch.stack(tiles), nrow=4, padding=2, pad_value=1.0)
