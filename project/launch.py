"""How the training processes start: one process, spawned DDP workers, torchrun or SLURM.

Hydra composes the config once, in the process the user started. For several processes
on one machine (`trainer.gpus=N`, or `trainer.num_processes=K` on the CPU) that process
spawns the workers with the resolved config; it never re-runs the command line per rank,
which under Hydra would create one output folder per rank and, under `-m`, one sweep per
rank. Each worker restores HydraConfig and logging, then joins a process group through a
TCPStore the parent holds on a port the OS picked (port 0): two jobs, or two sweeps at
once, can never collide on a fixed MASTER_PORT.

torchrun and SLURM start the processes themselves; then RANK and WORLD_SIZE are set, and
nothing is spawned. Under torchrun every rank runs Hydra, so before Hydra starts rank 0
composes the run folder name and broadcasts it (`agree_on_run_folder`).
"""

import json
import logging
import logging.config
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from project.distributed import ProcessContext, check_gpus
from project.errors import (
    PREEMPTED_EXIT_CODE,
    USER_ERROR_EXIT_CODE,
    Preempted,
    UserError,
    exit_on_user_error,
)
from project.trainer.preemption import STOP_SIGNALS

log = logging.getLogger(__name__)

RESULT_KEY = "rank0_result"
RENDEZVOUS_TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class LaunchPlan:
    """`spawn` processes to start here (0: run in this process), and the model wrapper."""

    spawn: int
    strategy: str | None  # "ddp", "dp" or None (one device, no wrapper)
    sync_bn: bool


def launched_externally() -> bool:
    """torchrun, or SLURM through submitit, started every rank already."""
    return int(os.environ.get("WORLD_SIZE", 1)) > 1


def plan_launch(trainer_cfg: Any) -> LaunchPlan:
    """Decide how to run from `trainer.gpus`, `strategy`, `num_processes`, `sync_bn` and the
    environment; every impossible combination is refused here, before any work."""
    gpus, strategy = trainer_cfg.gpus, trainer_cfg.strategy
    processes, sync_bn = trainer_cfg.num_processes, trainer_cfg.sync_bn
    if sync_bn and gpus == 0:
        raise UserError(
            "trainer.sync_bn=true needs CUDA GPUs (PyTorch's SyncBatchNorm does not run on the CPU); set trainer.sync_bn=false or trainer.gpus>=1"
        )
    if launched_externally():
        if strategy == "dp":
            raise UserError(
                "trainer.strategy=dp under torchrun/SLURM: those start one process per GPU, which is DDP; use trainer.strategy=auto"
            )
        return LaunchPlan(spawn=0, strategy="ddp", sync_bn=sync_bn)
    if gpus > 0 and processes > 1:
        raise UserError(
            f"trainer.num_processes={processes} is for DDP on the CPU (trainer.gpus=0); with GPUs there is one process per GPU: set trainer.gpus={processes}"
        )
    check_gpus(gpus)
    if gpus > 1 and strategy == "dp":
        if sync_bn:
            raise UserError(
                "trainer.sync_bn=true works under DDP only; use trainer.strategy=auto (DDP) with it"
            )
        return LaunchPlan(spawn=0, strategy="dp", sync_bn=False)
    if strategy == "dp":
        raise UserError(
            f"trainer.strategy=dp needs trainer.gpus>=2 (got {gpus}); DataParallel splits each batch over GPUs"
        )
    workers = gpus if gpus > 1 else processes
    if workers > 1:
        return LaunchPlan(spawn=workers, strategy="ddp", sync_bn=sync_bn)
    if sync_bn:
        log.info("trainer.sync_bn=true has no effect in a single process")
    return LaunchPlan(spawn=0, strategy=None, sync_bn=False)


# ---- spawning workers on this machine -------------------------------------------------


def spawn(fn: Callable[..., Any], args: tuple, processes: int) -> Any:
    """Run `fn(process_context, *args)` in `processes` new processes joined in one process
    group; return rank 0's result (JSON-serializable). A worker's UserError or stop signal
    comes back as the same exit code; any other failure raises with the worker's traceback.
    """
    # The parent hosts the rendezvous on a port the OS picks: race-free under multirun.
    store = dist.TCPStore(
        "127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=RENDEZVOUS_TIMEOUT
    )
    hydra_config = _hydra_config()
    log.info("starting %d DDP worker processes (rendezvous on 127.0.0.1:%d)", processes, store.port)
    workers: list = []
    forwarded: list[str] = []

    def forward(signum, frame):
        # The workers run in their own process group (see _worker), so a Ctrl-C in the
        # terminal reaches them once, through here, like a SIGTERM from a scheduler.
        forwarded.append(signal.Signals(signum).name)
        for worker in workers:
            if worker.is_alive():
                os.kill(worker.pid, signum)

    # Signal handlers can only be installed from the main thread.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS} if in_main_thread else {}
    try:
        context = mp.start_processes(
            _worker,
            args=(fn, args, processes, store.port, hydra_config),
            nprocs=processes,
            join=False,
            start_method="spawn",  # fork would copy a process that already imported torch
        )
        workers.extend(context.processes)
        # When one worker fails, join terminates the others (SIGTERM, SIGKILL 30 s later).
        # After a stop signal rank 0 may still be writing last.pt then: its stop handler
        # absorbs that SIGTERM, and the write is atomic anyway.
        while not context.join():
            pass
    except mp.ProcessExitedException as failure:
        if failure.exit_code == PREEMPTED_EXIT_CODE:
            raise Preempted(forwarded[0] if forwarded else "a stop signal") from None
        if failure.exit_code == USER_ERROR_EXIT_CODE:  # rank 0 printed the message
            sys.exit(USER_ERROR_EXIT_CODE)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    result = store.get(RESULT_KEY) if store.check([RESULT_KEY]) else b"null"
    return json.loads(result)


def _hydra_config() -> tuple[DictConfig, dict] | None:
    """Hydra's config of this job (pickled as it is: typed, with its interpolations) and its
    resolved logging config, for the workers to restore."""
    if not HydraConfig.initialized():
        return None  # called outside a Hydra app (tests, notebooks)
    logging_config = OmegaConf.to_container(HydraConfig.get().job_logging, resolve=True)
    return HydraConfig.instance().cfg, logging_config


def _worker(
    local_rank: int,
    fn: Callable[..., Any],
    args: tuple,
    world_size: int,
    port: int,
    hydra_config: tuple[DictConfig, dict] | None,
) -> None:
    # Own process group: the parent forwards stop signals, so a terminal's Ctrl-C is not
    # delivered twice (a second SIGINT means "stop now" to the trainer).
    os.setpgid(0, 0)
    process = ProcessContext(rank=local_rank, local_rank=local_rank, world_size=world_size)
    logging_config = None
    if hydra_config is not None:
        HydraConfig.instance().cfg, logging_config = hydra_config
    configure_logging(process, logging_config)
    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=RENDEZVOUS_TIMEOUT)
    try:
        if process.is_main:  # the one-line message on stderr and in train.log, exit code 2
            with exit_on_user_error():
                result = fn(process, *args, store=store)
        else:
            result = fn(process, *args, store=store)
    except UserError as error:  # another rank: a console line tagged with its rank
        log.error("%s", error)
        sys.exit(USER_ERROR_EXIT_CODE)
    except Preempted:
        sys.exit(PREEMPTED_EXIT_CODE)
    if process.is_main:
        store.set(RESULT_KEY, json.dumps(result))


def configure_logging(process: ProcessContext, logging_config: dict | None) -> None:
    """Rank 0 logs as Hydra configured it (console and train.log, `logging_config` in a
    spawned worker); the other ranks only print warnings and errors to the console,
    tagged with their rank."""
    if process.is_main:
        if logging_config is not None:
            logging.config.dictConfig(logging_config)
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    logging.basicConfig(
        level=logging.WARNING,
        format=f"[%(asctime)s][rank {process.rank}][%(levelname)s] %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stdout,
        force=True,
    )


# ---- processes started by torchrun or SLURM --------------------------------------------


def refuse_deprecated_launcher(argv: list[str]) -> None:
    """`python -m torch.distributed.launch` appends --local-rank, which Hydra rejects with
    an unhelpful message; say what to use instead."""
    if any(arg.startswith(("--local-rank", "--local_rank")) for arg in argv[1:]):
        print(
            "error: torch.distributed.launch is deprecated and passes --local-rank, which this "
            "script does not take; use torchrun, e.g. "
            "torchrun --nproc-per-node=2 train.py trainer.gpus=1",
            file=sys.stderr,
        )
        sys.exit(USER_ERROR_EXIT_CODE)


def export_slurm_environment() -> None:
    """Under SLURM with several tasks (hydra/launcher=submitit_slurm), every task runs the
    Hydra job; submitit derives RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT from
    SLURM's variables, after which the job proceeds as under torchrun."""
    if "RANK" in os.environ or "SUBMITIT_EXECUTOR" not in os.environ:
        return
    import submitit  # only under submitit, which installs it

    if submitit.JobEnvironment().num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def agree_on_run_folder(argv: list[str], config_dir: Path, config_name: str) -> list[str]:
    """Under torchrun every rank runs Hydra, and each would name its own run folder after
    its own clock. Rank 0 composes the folder name and sends it to all ranks; only rank 0
    writes `.hydra/`. Returns the command line with `hydra.run.dir` set."""
    if not launched_externally() or "RANK" not in os.environ:
        return argv
    if "-m" in argv or "--multirun" in argv:
        print(
            "error: -m under torchrun would start one sweep per rank; sweep with "
            "trainer.num_processes / trainer.gpus, or hydra/launcher=submitit_slurm",
            file=sys.stderr,
        )
        sys.exit(USER_ERROR_EXIT_CODE)
    # One group for CPU and CUDA tensors: the trainer keeps using it after Hydra starts.
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, timeout=RENDEZVOUS_TIMEOUT)
    run_dir = [None]
    if dist.get_rank() == 0:
        run_dir[0] = _compose_run_dir(argv[1:], config_dir, config_name)
    dist.broadcast_object_list(run_dir, src=0)
    if dist.get_rank() == 0:
        given = any(arg.startswith("hydra.run.dir=") for arg in argv)
        return argv if given else [*argv, f"hydra.run.dir={run_dir[0]}"]
    # The other ranks write nothing, on any node: Hydra's job runs in the current folder
    # (which exists: no mkdir), without a log file or `.hydra/`, and the run's folder
    # reaches the trainer as paths.output_dir (to find a checkpoint to resume).
    own = ("hydra.run.dir=", "hydra.output_subdir=", "paths.output_dir=")
    return [arg for arg in argv if not arg.startswith(own)] + [
        f"hydra.run.dir={Path.cwd()}",
        "hydra.output_subdir=null",
        f"paths.output_dir={run_dir[0]}",
        "hydra.job_logging.root.handlers=[console]",
        "~hydra.job_logging.handlers.file",
    ]


def _compose_run_dir(overrides: list[str], config_dir: Path, config_name: str) -> str:
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        cfg: DictConfig = compose(config_name, overrides=overrides, return_hydra_config=True)
        return str(cfg.hydra.run.dir)


def prepare_command_line(argv: list[str], config_dir: Path, config_name: str) -> list[str]:
    """Every rewrite of the command line, once, before Hydra starts: refuse
    torch.distributed.launch's --local-rank; point `resume=<run>` at that run's folder
    (project/resume.py); under torchrun, give every rank rank 0's run folder."""
    from project.resume import redirect_to_run_folder  # resume imports the checkpoint code

    refuse_deprecated_launcher(argv)
    argv = redirect_to_run_folder(argv)
    return agree_on_run_folder(argv, config_dir, config_name)
