"""On CUDA, copy the next batch to the GPU while the current step runs.

The copy is issued on a side stream with `non_blocking=True` (from pinned memory, see
`loader.pin_memory`), so the host-to-device transfer overlaps the step's kernels on
the default stream instead of queuing in front of them. Before a batch is used, the
default stream waits for its copy, and `record_stream` tells the caching allocator the
default stream uses that memory, so it is not handed out again while a step reads it.
"""

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor

from project.data.batches import map_tensors, move_to_device


def _record_stream(batch: Any, stream: torch.cuda.Stream) -> None:
    def record(tensor: Tensor) -> Tensor:
        tensor.record_stream(stream)
        return tensor

    map_tensors(batch, record)


def prefetch_to_device(batches: Iterable, device: torch.device) -> Iterator[Any]:
    """Yields the batches of `batches` on `device`, each copied one step ahead."""
    copy_stream = torch.cuda.Stream(device=device)
    compute_stream = torch.cuda.current_stream(device)
    iterator = iter(batches)

    def start_copy(batch: Any) -> Any:
        with torch.cuda.stream(copy_stream):
            return move_to_device(batch, device)

    pending = None
    for batch in iterator:
        copied = start_copy(batch)
        if pending is not None:
            yield pending
        compute_stream.wait_stream(copy_stream)
        _record_stream(copied, compute_stream)
        pending = copied
    if pending is not None:
        yield pending
