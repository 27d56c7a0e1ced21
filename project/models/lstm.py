"""LSTM sequence classifier over packed variable-length sequences, safe under DataParallel.

Two things break RNNs under nn.DataParallel, and both are handled here:
- Each replica's LSTM weights are no longer one contiguous cuDNN block after replication,
  which costs a copy per call and a warning; `flatten_parameters()` at the start of
  `forward` re-packs them.
- DataParallel splits the batch along dim 0, so each replica sees a chunk whose longest
  sequence is shorter than the batch's. `pad_packed_sequence` pads to the chunk's longest
  sequence unless told `total_length`, and the gathered outputs then have different
  lengths. Passing the input's own time dimension keeps every chunk the same length.
"""

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class LSTMClassifier(nn.Module):
    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        embedding_dim: int = 32,
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(
            embedding_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def encode(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """Per-step LSTM outputs (N, T, H), zero beyond each sequence's length, T = the
        input's padded length whatever the longest sequence in this chunk."""
        self.lstm.flatten_parameters()
        packed = pack_padded_sequence(
            self.embedding(tokens),
            lengths.cpu(),  # pack_padded_sequence wants lengths on the CPU
            batch_first=True,
            enforce_sorted=False,
        )
        outputs, _ = self.lstm(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=tokens.shape[1])
        return outputs

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        outputs = self.encode(tokens, lengths)
        # Mean over the real steps only: padding contributes zeros, divide by the length.
        pooled = outputs.sum(dim=1) / lengths.to(outputs.dtype).clamp(min=1).unsqueeze(1)
        return self.head(pooled)
