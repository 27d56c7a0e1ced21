"""Generated variable-length token sequences for the LSTM task (`dataset=sequences`).

Tokens 1..num_classes are markers, the rest noise (0 is padding). Each sequence holds
noise plus a few markers; its class is the marker that occurs most often. So the label
depends on the content, not on the length, and a model must read the whole sequence.
"""

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

SPLITS = ("train", "val", "test")


class SequencesDataset(Dataset):
    def __init__(
        self,
        split: str,
        num_classes: int = 4,
        vocab_size: int = 32,
        min_length: int = 8,
        max_length: int = 48,
        train_size: int = 4000,
        val_size: int = 1000,
        test_size: int = 1000,
        seed: int = 0,
        transform=None,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if vocab_size <= num_classes + 1:
            raise ValueError(
                f"dataset.vocab_size={vocab_size} leaves no noise tokens; "
                f"it must exceed num_classes + 1 = {num_classes + 1}"
            )
        # The winning marker occurs up to 4 times and every other marker fewer times.
        if min_length < 4 * num_classes:
            raise ValueError(
                f"dataset.min_length={min_length} is too short for {num_classes} classes; "
                f"use at least {4 * num_classes}"
            )
        sizes = {"train": train_size, "val": val_size, "test": test_size}
        generator = torch.Generator().manual_seed(seed * len(SPLITS) + SPLITS.index(split))
        self.sequences: list[Tensor] = []
        self.labels = torch.randint(0, num_classes, (sizes[split],), generator=generator)
        for label in self.labels.tolist():
            length = int(torch.randint(min_length, max_length + 1, (), generator=generator))
            tokens = torch.randint(num_classes + 1, vocab_size, (length,), generator=generator)
            winner_count = int(torch.randint(2, 5, (), generator=generator))
            counts = torch.randint(0, winner_count, (num_classes,), generator=generator)
            counts[label] = winner_count
            markers = torch.repeat_interleave(torch.arange(1, num_classes + 1), counts)
            positions = torch.randperm(length, generator=generator)[: len(markers)]
            tokens[positions] = markers
            self.sequences.append(tokens)
        self.num_classes = num_classes
        self.transform = transform

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        tokens = self.sequences[index]
        if self.transform is not None:
            tokens = self.transform(tokens)
        return tokens, self.labels[index]

    @staticmethod
    def collate_fn(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
        """Pad to the longest sequence of the batch: (tokens (N, T), lengths (N,), labels (N,))."""
        sequences, labels = zip(*batch, strict=True)
        lengths = torch.tensor([len(sequence) for sequence in sequences])
        return (
            pad_sequence(sequences, batch_first=True, padding_value=0),
            lengths,
            torch.stack(labels),
        )
