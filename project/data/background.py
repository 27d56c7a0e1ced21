"""`loader.background_prefetch=N`: a thread that keeps up to N batches ready.

prefetch_generator's BackgroundGenerator pulls batches from the DataLoader in a thread
while the training step runs. It pays off when the main process itself loads the data
(`loader.num_workers=0`) with work that releases the GIL (file reads, PIL decoding);
with workers, the DataLoader already prefetches `prefetch_factor` batches per worker and
the thread adds little (benchmarks/dataloader.py measures both).

Memory: up to N + 1 batches in the queue and the thread, e.g. 1.5 MB per batch of
128 x 3 x 32 x 32 float32 images, 150 MB per batch of 256 x 3 x 224 x 224. N is bounded
by the schema (`MAX_BACKGROUND_PREFETCH`): an unbounded queue (max_prefetch <= 0 in
prefetch_generator) fills RAM when loading outpaces training.

An epoch that ends early (`trainer.limit_train_batches`, max_steps, a stop signal)
leaves the plain BackgroundGenerator blocked on a full queue forever, holding its
batches and the DataLoader iterator: one leak per epoch. `background_batches` stops and
drains the thread whenever iteration ends.
"""

import contextlib
from collections.abc import Iterator
from queue import Empty
from typing import Any

from prefetch_generator import BackgroundGenerator
from torch.utils.data import DataLoader

MAX_BACKGROUND_PREFETCH = 16


class StoppableBackgroundGenerator(BackgroundGenerator):
    """A BackgroundGenerator that `stop()` ends: the thread quits after its current item."""

    def __init__(self, generator: Iterator, max_prefetch: int):
        self.stopping = False
        super().__init__(generator, max_prefetch=max_prefetch)

    def run(self) -> None:
        try:
            for item in self.generator:
                if self.stopping:
                    break
                self.queue.put((True, item))
        except Exception as error:  # raised again in the consumer's thread by next()
            self.queue.put((False, error))
        finally:
            self.queue.put((False, StopIteration))

    def stop(self) -> None:
        self.stopping = True
        while self.is_alive():  # make room until the thread sees the flag and returns
            with contextlib.suppress(Empty):
                self.queue.get(timeout=0.05)
        self.join()


def background_batches(batches: Iterator, max_prefetch: int) -> Iterator[Any]:
    thread = StoppableBackgroundGenerator(batches, max_prefetch)
    try:
        yield from thread
    finally:  # also when the consumer breaks off and drops this generator
        thread.stop()


class BackgroundPrefetchLoader(DataLoader):
    """A DataLoader whose iterator runs in a background thread, `background_prefetch`
    batches ahead; everything else (len, sampler, batch_size) is the DataLoader's."""

    def __init__(self, *args, background_prefetch: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.background_prefetch = background_prefetch

    def __iter__(self) -> Iterator[Any]:
        return background_batches(super().__iter__(), self.background_prefetch)
