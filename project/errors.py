"""Errors a user can fix, how entry points report them, and every exit code the
entry points use: 0 done, 2 bad input (USER_ERROR_EXIT_CODE), 75 stopped by a signal
after saving a resumable checkpoint (PREEMPTED_EXIT_CODE); anything else is a bug.

A `UserError` means bad input (a config value, a missing or corrupt file). Entry points
turn it into one line on stderr and exit code 2, never a traceback: the message is the
whole story, and nothing already written is touched.
"""

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

USER_ERROR_EXIT_CODE = 2
# EX_TEMPFAIL from sysexits.h: "temporary failure, the user is invited to retry", which
# is what a preempted run is. Requeue scripts can test for it.
PREEMPTED_EXIT_CODE = 75


class UserError(Exception):
    """Bad input; the message names the key, file or value and what would be valid."""


class Preempted(Exception):
    """Raised by the trainer after it saved its state because a stop signal arrived."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name


def _record_in_log_files(message: str) -> None:
    # The console gets the message from stderr below; the run's log file gets it too,
    # so train.log says why the run stopped, without printing the line twice.
    record = logging.LogRecord("project", logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _without_worker_traceback(message: str) -> str:
    """A DataLoader re-raises a worker's exception as the same class, its message being
    "Caught UserError in DataLoader worker process 0.\nOriginal Traceback ...": keep the
    worker's own one-line message and say where it came from."""
    if "\nOriginal Traceback" not in message:
        return message
    where = message.split(".\n", 1)[0].removeprefix(f"Caught {UserError.__name__} ")
    original = message.rstrip().splitlines()[-1].partition(f"{UserError.__name__}: ")[2]
    return f"{original} ({where})"


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    try:
        yield
    except UserError as error:
        message = f"error: {_without_worker_traceback(str(error))}"
        _record_in_log_files(message)
        print(message, file=sys.stderr, flush=True)
        sys.exit(USER_ERROR_EXIT_CODE)
