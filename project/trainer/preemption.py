"""Stop cleanly on SIGTERM, SIGINT and SIGUSR1: finish the step, save, exit.

Clusters send SIGTERM (SLURM: also SIGUSR1 with `--signal=USR1@90`) some time before they
kill a job; Ctrl-C sends SIGINT. The handler only raises a flag; the trainer checks it
after each optimizer step, writes a resumable `last.pt`, logs how to resume and exits
with PREEMPTED_EXIT_CODE (project/errors.py). A second Ctrl-C while that happens stops at once.
"""

import logging
import signal
import threading

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class StopSignals:
    """Context manager: while active, stop signals set `received` instead of killing."""

    def __init__(self):
        self.received: str | None = None
        self.previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the user really wants out
        self.received = name
        log.warning("%s received: stopping after the current step", name)

    def __enter__(self):
        # Signal handlers can only be installed from the main thread.
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()
