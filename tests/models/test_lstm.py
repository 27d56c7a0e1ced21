"""The LSTM classifier and its data: packing, and DataParallel's scatter/gather on a CPU."""

import torch
from torch import nn

from project.data.sequences import SequencesDataset
from project.models.lstm import LSTMClassifier


def padded_batch(lengths: list[int], total_length: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(len(lengths), total_length, dtype=torch.long)
    for row, length in enumerate(lengths):
        tokens[row, :length] = torch.randint(1, 32, (length,), generator=generator)
    return tokens, torch.tensor(lengths)


def test_dataparallel_style_chunks_give_the_whole_batch_output():
    """nn.DataParallel scatters dim 0 into chunks, one per GPU; here the chunks' longest
    sequences are 9, 30 and 4 steps while the batch is padded to 30. Each chunk runs
    separately, as on its own replica, and the outputs are concatenated like gather does."""
    torch.manual_seed(0)
    model = LSTMClassifier(num_classes=4, vocab_size=32).eval()
    tokens, lengths = padded_batch([9, 3, 30, 12, 4, 2], total_length=30)
    with torch.no_grad():
        whole_logits = model(tokens, lengths)
        whole_steps = model.encode(tokens, lengths)
        chunk_logits, chunk_steps = [], []
        for rows in (slice(0, 2), slice(2, 4), slice(4, 6)):
            chunk_logits.append(model(tokens[rows], lengths[rows]))
            chunk_steps.append(model.encode(tokens[rows], lengths[rows]))
    # Without total_length the chunks' step outputs would be 9, 30 and 4 long and
    # torch.cat (DataParallel's gather) would fail.
    assert [steps.shape[1] for steps in chunk_steps] == [30, 30, 30]
    assert torch.allclose(torch.cat(chunk_steps), whole_steps, atol=1e-6)
    assert torch.allclose(torch.cat(chunk_logits), whole_logits, atol=1e-6)
    assert torch.all(whole_steps[1, 3:] == 0)  # nothing beyond a sequence's end


def test_padding_does_not_change_a_sequence_output():
    torch.manual_seed(0)
    model = LSTMClassifier(num_classes=4, vocab_size=32).eval()
    tokens, lengths = padded_batch([7], total_length=7)
    longer = torch.nn.functional.pad(tokens, (0, 20))
    with torch.no_grad():
        assert torch.allclose(model(tokens, lengths), model(longer, lengths), atol=1e-6)


def test_forward_runs_under_nn_dataparallel_wrapper():
    # Without GPUs DataParallel calls the module directly; this checks the wrapper accepts
    # the (tokens, lengths) signature and that flatten_parameters is harmless on a CPU.
    model = nn.DataParallel(LSTMClassifier(num_classes=4, vocab_size=32))
    tokens, lengths = padded_batch([5, 3], total_length=6)
    assert model(tokens, lengths).shape == (2, 4)


def test_sequences_are_variable_length_and_labelled_by_their_most_frequent_marker():
    data = SequencesDataset("train", num_classes=4, train_size=300, min_length=16, max_length=40)
    lengths = {len(tokens) for tokens, _ in (data[i] for i in range(len(data)))}
    assert min(lengths) >= 16 and max(lengths) <= 40 and len(lengths) > 10
    for index in range(len(data)):
        tokens, label = data[index]
        counts = torch.bincount(tokens, minlength=5)[1:5]
        assert counts.argmax() == label and (counts == counts.max()).sum() == 1
    tokens, lengths, labels = SequencesDataset.collate_fn([data[0], data[1]])
    assert tokens.shape == (2, int(lengths.max())) and labels.shape == (2,)
    again = SequencesDataset("train", num_classes=4, train_size=300, min_length=16, max_length=40)
    assert all(torch.equal(a, b) for a, b in zip(data.sequences, again.sequences, strict=True))
