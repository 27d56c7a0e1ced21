"""Make docs/images/tensorboard.png: a real TensorBoard page, screenshot by a script.

    python docs/tools/tensorboard_screenshot.py [--run <run folder>] [--out <png>]

Without --run it trains the default config first (`python train.py`, about 20 s on a
laptop CPU) into a temporary folder. It then serves the run with TensorBoard on a free
local port and has a headless Chromium load the page and save a screenshot. Chromium is
not a dependency of the project: install it from your system's packages (Debian:
`apt-get install chromium`) or point CHROMIUM at a Chrome binary.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "docs" / "images" / "tensorboard.png"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
# What the page shows: the SCALARS tab, unsmoothed, with the validation and training curves.
PAGE = "?darkMode=false#scalars&_smoothingWeight=0&tagFilter=" + urllib.parse.quote(
    "^val/(acc|loss)$|^train/loss$|^lr$", safe=""
)


def find_browser() -> str:
    for name in ([os.environ["CHROMIUM"]] if os.environ.get("CHROMIUM") else []) + list(BROWSERS):
        found = shutil.which(name)
        if found:
            return found
    sys.exit(
        "tensorboard_screenshot: no Chromium found (tried CHROMIUM and "
        + ", ".join(BROWSERS)
        + "); install it, e.g. apt-get install chromium"
    )


def train_default_run(folder: Path) -> Path:
    command = [sys.executable, "train.py", f"hydra.run.dir={folder}", "logger.progress_bar=false"]
    subprocess.run(command, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(run: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir_spec", f"default:{run}",
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=2):
                return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                sys.exit("tensorboard_screenshot: TensorBoard did not start")
            time.sleep(0.5)


def screenshot(browser: str, url: str, out: Path, profile: Path) -> None:
    """Chromium's own --screenshot, after letting the page's scripts run for 20 s of
    virtual time (they fetch the scalars and draw the charts)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--window-size=1400,1000",
        "--virtual-time-budget=20000", f"--screenshot={out}", url,
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    if not out.is_file() or out.stat().st_size == 0:
        sys.exit(f"tensorboard_screenshot: Chromium wrote no {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run folder (default: train one now)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    browser = find_browser()  # before minutes of training, not after
    with tempfile.TemporaryDirectory() as scratch:
        run = args.run or train_default_run(Path(scratch) / "run")
        port = free_port()
        server = serve(run, port)
        try:
            screenshot(
                browser, f"http://127.0.0.1:{port}/{PAGE}", args.out, Path(scratch) / "profile"
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
