"""How ``extract.py`` fails without internet: wall time, stderr lines and the last line, each in a fresh process.

Cases: the default model (phikon) and ``--model timm:resnet18``, each with and without ``HF_HUB_OFFLINE=1``, then a
gated encoder (a fake hub on 127.0.0.1 answers "gated"), a folder that does not exist, ``--list-models``, and phikon
already in the cache without ``HF_HUB_OFFLINE`` (a one-layer random ViT-B stands in for it: the run must embed, not
wait for the network). Every run gets its own Hugging Face cache and a tiny synthetic data folder.

    PYTHONPATH=. /work/venv/bin/python -m benchmarks.bench_hub_offline [--project DIR] [--real-network]

``--project DIR`` runs another checkout's extract.py (e.g. ``git archive <old commit>`` unpacked) to compare before
and after. By default the hub endpoint is a closed port on 127.0.0.1 (connection refused, as without a network),
so the benchmark never downloads anything; ``--real-network`` uses this machine's own network instead (on a machine
without internet: DNS fails).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT, help="checkout whose extract.py runs (default: this)")
    parser.add_argument("--real-network", action="store_true", help="use this machine's network, not a closed port")
    parser.add_argument("--timeout", type=float, default=180, help="kill a run after this many seconds")
    return parser


def make_data(folder: Path) -> Path:
    """Two 64x64 training images with masks and a label file: enough for extract.py to reach the model."""
    rng = np.random.default_rng(0)
    (folder / "train_data").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"train_data/img_{i:04d}.png")
        Image.fromarray(np.full((64, 64), 255, dtype=np.uint8)).save(folder / f"train_data/mask_{i:04d}.png")
    (folder / "train_labels.csv").write_text("sample_index,label\nimg_0000.png,a\nimg_0001.png,b\n")
    return folder


def cache_fake_phikon(home: Path) -> None:
    """Save a one-layer ViT-B with random weights as owkin/phikon in the Hugging Face cache under ``home``."""
    from transformers import ViTConfig, ViTModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    snapshot = home / "hub" / "models--owkin--phikon" / "snapshots" / ("0" * 40)
    ViTModel(ViTConfig(num_hidden_layers=1), add_pooling_layer=False).save_pretrained(snapshot)
    (snapshot.parents[1] / "refs").mkdir(parents=True)
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)


def closed_port_url() -> str:
    with socket.socket() as probe:  # bound, then closed: connecting to it is refused
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def run_case(project: Path, argv: list[str], env: dict, timeout: float) -> tuple[float, int, int, str]:
    """(wall s, exit status, non-empty stderr lines, last stderr line) of one fresh ``extract.py`` process."""
    start = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, "extract.py", *argv], cwd=project, env=env, capture_output=True,
                                text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, -9, -1, f"(killed after {timeout:g} s)"
    seconds = time.perf_counter() - start
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return seconds, result.returncode, len(lines), (lines[-1] if lines else result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-hub-"))
    data = make_data(work / "data")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    base.update(PYTHONPATH=str(args.project), HF_HUB_DISABLE_PROGRESS_BARS="1")
    if not args.real_network:
        base["HF_ENDPOINT"] = closed_port_url()
    fake_hub = None
    if (ROOT / "tests" / "embed" / "fake_hub.py").is_file():
        sys.path.insert(0, str(ROOT))
        from tests.embed.fake_hub import serve_fake_hub

        fake_hub = serve_fake_hub()
    offline = {"HF_HUB_OFFLINE": "1"}
    cases = [
        ("phikon (default)", [], {}),
        ("phikon (default), HF_HUB_OFFLINE=1", [], offline),
        ("--model timm:resnet18", ["--model", "timm:resnet18"], {}),
        ("--model timm:resnet18, HF_HUB_OFFLINE=1", ["--model", "timm:resnet18"], offline),
        ("--model /a/folder/that/does/not/exist", ["--model", "/a/folder/that/does/not/exist"], offline),
        ("--list-models", ["--list-models"], {}),
        ("phikon already cached (1-layer stand-in), embeds 2 tiles",
         ["--tile-size", "64", "--no-progress", "--compile", "off"], {}),
    ]
    if fake_hub is not None:
        cases.insert(4, ("--model uni, gated, no token (fake hub)", ["--model", "uni"], {"HF_ENDPOINT": fake_hub[1]}))
    print(f"project: {args.project}; network: {'this machine' if args.real_network else 'closed local port'}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print("| case | wall s | exit | stderr lines | last stderr line |\n|---|---|---|---|---|")
    for n, (label, extra, env) in enumerate(cases):
        home = work / f"hf-home-{n}"
        if label.startswith("phikon already cached"):
            cache_fake_phikon(home)
        flags = ["--data", str(data), "--out", str(work / f"features-{n}"), "--workers", "0", *extra]
        seconds, status, count, last = run_case(args.project, flags, {**base, "HF_HOME": str(home), **env},
                                                args.timeout)
        print(f"| {label} | {seconds:.1f} | {status} | {count} | {last[:150].replace('|', '/')} |", flush=True)
    if fake_hub is not None:
        fake_hub[0].shutdown()


if __name__ == "__main__":
    main()
