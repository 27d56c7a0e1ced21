"""`make gpu-check`: every CUDA check and figure in one command, for the day a GPU is at hand.

On a machine without CUDA it says so in one line and exits 0. With CUDA it runs, each
under its own time limit (about 8 minutes in all on one GPU), and writes one markdown
report to `logs/gpu-check/<time>/report.md` (or to `$GPU_CHECK_OUT`):

1. the GPU tests (`pytest -m gpu`): one-GPU training at every precision, device prefetch,
   the no-sync test under `torch.cuda.set_sync_debug_mode("error")`, and the two-GPU
   tests (SyncBN numerics, DataParallel LSTM), which skip with fewer than 2 GPUs;
2. the throughput table of benchmarks/throughput.py at 224x224, batch 64 (fp32, bf16,
   +channels_last, +compile) with peak memory;
3. the default run on the GPU (`trainer=gpu`, 3 epochs), with its dataset on the GPU
   (loader.in_memory): samples/s, data-wait fraction, validation accuracy;
4. DDP with one process on NCCL (world size 1): the project's DDP wrapper trains a few
   steps of the default model and its weights match the bare model's within 1e-5.

Exit code 0 when every part passed, 1 otherwise (the report says which).
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DDP_ONE_PROCESS = r"""
import copy, os, torch, torch.distributed as dist
from project.distributed import wrap_model
from project.models.cnn import SmallCNN
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["PORT"])
dist.init_process_group("nccl", rank=0, world_size=1)
device = torch.device("cuda", 0)
torch.manual_seed(0)
bare = SmallCNN(num_classes=5).to(device)
wrapped = wrap_model(copy.deepcopy(bare), "ddp", device, [])
optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (bare, wrapped)]
for step in range(5):
    images = torch.randn(32, 3, 32, 32, device=device)
    labels = torch.randint(0, 5, (32,), device=device)
    for model, optimizer in zip((bare, wrapped), optimizers):
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step(); optimizer.zero_grad()
difference = max((a - b).abs().max().item() for a, b in
                 zip(bare.parameters(), wrapped.module.parameters()))
print(f"ddp world_size=1 backend={dist.get_backend()} max_weight_difference={difference:.2e}")
dist.destroy_process_group()
assert difference < 1e-5
"""


def run(command: list[str], timeout: float, env: dict | None = None) -> tuple[bool, str, float]:
    start = time.monotonic()
    try:
        result = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
        ok, output = result.returncode == 0, result.stdout + result.stderr
    except subprocess.TimeoutExpired as expired:
        ok = False
        output = f"timed out after {timeout:.0f} s\n{(expired.stdout or b'')[-4000:]!r}"
    return ok, output.strip(), time.monotonic() - start


def default_run_figures(run_dir: Path) -> str:
    log = (run_dir / "train.log").read_text() if (run_dir / "train.log").is_file() else ""
    lines = re.findall(r"epoch \d+/\d+ .*", log)
    return "\n".join(lines) or "(no epoch line)"


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device on this machine; nothing to check")
        return 0
    out = Path(
        os.environ.get("GPU_CHECK_OUT")
        or ROOT / "logs" / "gpu-check" / time.strftime("%Y-%m-%d_%H-%M-%S")
    )
    out.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    parts = [
        ("GPU tests (pytest -m gpu)",
         [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "tests"], 180, None),
        ("Throughput table, 224x224, batch 64",
         [python, "benchmarks/throughput.py", "--repeats", "1", "--steps", "30"], 200, None),
        ("Default run on the GPU, data on the GPU (3 epochs)",
         [python, "train.py", "trainer=gpu", "trainer.max_epochs=3", "logger.progress_bar=false",
          f"hydra.run.dir={out / 'default_run'}"], 120, None),
        ("DDP, one process, NCCL", [python, "-c", DDP_ONE_PROCESS], 60, {"PORT": port}),
    ]  # fmt: skip
    report = [
        "# gpu-check",
        "",
        f"{torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU(s), "
        f"torch {torch.__version__}, CUDA {torch.version.cuda}",
        "",
    ]
    passed = True
    for title, command, limit, env in parts:
        ok, output, seconds = run(command, limit, env)
        passed &= ok
        if title.startswith("Default run"):
            output = default_run_figures(out / "default_run") + "\n\n" + output[-2000:]
        report += [f"## {title}: {'passed' if ok else 'FAILED'} ({seconds:.0f} s)", "",
                   "```", output[-6000:], "```", ""]  # fmt: skip
        print(f"gpu-check: {title}: {'passed' if ok else 'FAILED'} ({seconds:.0f} s)", flush=True)
    (out / "report.md").write_text("\n".join(report) + "\n")
    print(f"gpu-check: report in {out / 'report.md'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
