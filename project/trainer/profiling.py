"""`trainer.profile=true`: torch.profiler over a few training steps after a warm-up.

The trace goes to `<run>/profiler/` in the Chrome trace format that TensorBoard's profiler
plugin (torch-tb-profiler), Perfetto (ui.perfetto.dev) and chrome://tracing open. The log
gets the table of the operators that took the most time.
"""

import logging
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

log = logging.getLogger(__name__)

# Steps skipped (start-up, cuDNN autotuning, torch.compile), warmed up, then recorded.
WAIT_STEPS, WARMUP_STEPS, ACTIVE_STEPS = 5, 2, 5
TOP_OPERATORS = 15


class StepProfiler:
    """Call `step()` after every training batch; the recording ends by itself."""

    def __init__(self, run_dir: Path | None, device: torch.device):
        self.trace_dir = (run_dir or Path(".")) / "profiler"
        activities = [ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        self.sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        self.writer = tensorboard_trace_handler(str(self.trace_dir))
        self.profiler = profile(
            activities=activities,
            schedule=schedule(wait=WAIT_STEPS, warmup=WARMUP_STEPS, active=ACTIVE_STEPS, repeat=1),
            on_trace_ready=self._report,
        )
        self.profiler.start()
        self.running = True

    def _report(self, profiler) -> None:
        self.writer(profiler)
        table = profiler.key_averages().table(sort_by=self.sort_by, row_limit=TOP_OPERATORS)
        log.info(
            "profile of %d training steps (after %d skipped and %d warm-up), trace in %s:\n%s",
            ACTIVE_STEPS, WAIT_STEPS, WARMUP_STEPS, self.trace_dir, table,
        )  # fmt: skip

    def step(self) -> None:
        if not self.running:
            return
        self.profiler.step()
        if self.profiler.step_num >= WAIT_STEPS + WARMUP_STEPS + ACTIVE_STEPS:
            self.stop()

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.profiler.stop()
