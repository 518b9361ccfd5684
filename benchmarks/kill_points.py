"""Kill ``extract.py`` with SIGKILL at random moments; every restart must finish with the uninterrupted run's cache.

A seeded generator picks each kill moment in one of three ways: a random time after the start (often while Python
imports torch or hashes the images), right after the run claimed its shard (settings and temporary-file clean-up),
or right after a random number of feature files was finished (mid-embedding, while the writer thread works). After
each kill every file with a final name must be complete and trustworthy. Kills come in rounds of 1 to 3 on one cache;
each round ends with a restart that must finish (exit 0), leave no temporary file, and give a cache equal to an
uninterrupted run's: same files, same coords and coverage, same attributes, features within 1e-5, same
settings.json and skipped.json. The data hold one unreadable image and one test image with an empty mask, so the
skip list and the fallback tile are checked too.

    python -m benchmarks.kill_points [--kills 20] [--seed 0] [--images 16] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.cache import store
from pipeline.errors import CacheError

ROOT = Path(__file__).resolve().parents[1]
TILE = 32
SIZE = 192  # 6 x 6 grid of 32 px tiles; the mask keeps the left two thirds: 24 tiles per image


@dataclass
class KillResult:
    """What the kill-point run found."""

    kill_points: int = 0  # kills that landed while extract.py was running
    missed: int = 0  # processes that had finished before their kill moment (not counted)
    rounds: int = 0
    restarts: int = 0  # starts after a kill
    equal_rounds: int = 0  # rounds whose final cache equals the uninterrupted run's
    max_feature_diff: float = 0.0
    n_files: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every round ended equal to the reference, with no problem."""
        return not self.problems and self.equal_rounds == self.rounds > 0


def save_tiny_vit(folder: Path) -> Path:
    """A random-weight ViT (32 px input, 32-d) saved with ``save_pretrained``: a real HF model folder, no network."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=TILE, patch_size=16)
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessor(size={"height": TILE, "width": TILE}, image_mean=[0.5] * 3, image_std=[0.25] * 3,
                      resample=2).save_pretrained(folder)
    return folder


def make_data(root: Path, n_images: int, seed: int) -> Path:
    """Train and test images with masks, plus one empty train image file and one test image with an empty mask."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    inside = np.zeros((SIZE, SIZE), np.uint8)
    inside[:, : SIZE * 2 // 3] = 255
    n_test = max(2, n_images // 4)
    for split, count in (("train", n_images - n_test), ("test", n_test)):
        folder = root / f"{split}_data"
        folder.mkdir(parents=True)
        for i in range(count):
            pixels = np.clip(np.array([200, 120, 170]) + rng.integers(-50, 50, (SIZE, SIZE, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"img_{i:04d}.png")
            mask = inside if not (split == "test" and i == 0) else np.zeros_like(inside)
            Image.fromarray(mask).save(folder / f"mask_{i:04d}.png")
    (root / "train_data" / f"img_{n_images - n_test:04d}.png").write_bytes(b"")  # unreadable: skipped
    Image.fromarray(inside).save(root / "train_data" / f"mask_{n_images - n_test:04d}.png")
    return root


def command(data: Path, model: Path, out: Path) -> list[str]:
    return [sys.executable, str(ROOT / "extract.py"), "--data", str(data), "--model", str(model), "--out", str(out),
            "--tile-size", str(TILE), "--batch-size", "2", "--workers", "1", "--no-progress", "-q"]


def environment() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def finished_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*.h5") if not p.name.startswith(".")]


def snapshot(out: Path) -> dict[str, object]:
    """Everything a later run or classify.py reads from a cache root, by relative path."""
    found: dict[str, object] = {}
    for path in finished_files(out):
        item = store.read_image_features(path)
        found[str(path.relative_to(out))] = item
    for name in ("settings.json", "skipped.json"):
        for path in out.rglob(name):
            found[str(path.relative_to(out))] = json.loads(path.read_text())
    return found


def compare(reference: dict, got: dict) -> tuple[list[str], float]:
    """Differences between two snapshots, and the largest absolute feature difference."""
    problems, worst = [], 0.0
    if sorted(reference) != sorted(got):
        missing, extra = sorted(set(reference) - set(got)), sorted(set(got) - set(reference))
        problems.append(f"files differ: missing {missing}, extra {extra}")
    for name in sorted(set(reference) & set(got)):
        ref, new = reference[name], got[name]
        if isinstance(ref, store.ImageFeatures):
            if not (np.array_equal(ref.coords, new.coords) and np.array_equal(ref.coverage, new.coverage)):
                problems.append(f"{name}: coords or coverage differ")
            if ref.attrs != new.attrs:
                keys = sorted(k for k in set(ref.attrs) | set(new.attrs) if ref.attrs.get(k) != new.attrs.get(k))
                problems.append(f"{name}: attributes differ ({', '.join(keys)})")
            if ref.features.shape != new.features.shape:
                problems.append(f"{name}: features {new.features.shape}, expected {ref.features.shape}")
                continue
            diff = float(np.abs(ref.features - new.features).max()) if ref.features.size else 0.0
            worst = max(worst, diff)
            if diff > 1e-5:
                problems.append(f"{name}: features differ by {diff:.2e}")
        elif ref != new:
            problems.append(f"{name} differs")
    return problems, worst


def check_trustworthy(out: Path) -> list[str]:
    """Every file with a final name must be complete: readable, consistent and finite."""
    problems = []
    for path in finished_files(out):
        try:
            problem = store.value_problem(store.read_image_features(path))
        except CacheError as exc:
            problem = str(exc)
        if problem:
            problems.append(f"{path.name} after a kill: {problem}")
    return problems


def _claim_pid(path: Path) -> int | None:
    try:
        return json.loads(path.read_text()).get("pid")
    except (OSError, ValueError):
        return None


def kill_once(cmd: list[str], out: Path, rng: np.random.Generator, full_seconds: float, total: int,
              modes: tuple[str, ...] = ("time", "lock", "progress")) -> dict:
    """Start extract.py, kill it at a random moment chosen by ``rng``; return what happened."""
    mode = modes[int(rng.integers(0, len(modes)))]
    done_before = len(finished_files(out))
    target = int(rng.integers(done_before, total)) if done_before < total else total
    delay = float(rng.uniform(0, full_seconds)) if mode == "time" else float(rng.uniform(0, 0.3))
    process = subprocess.Popen(cmd, env=environment(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    started = time.monotonic()
    deadline = started + 4 * full_seconds + 30
    if mode == "lock":  # wait until this process holds its shard's claim (it writes its pid into the claim file)
        while process.poll() is None and time.monotonic() < deadline:
            if any(_claim_pid(path) == process.pid for path in out.rglob(".claims/*.json")):
                break
            time.sleep(0.002)
    elif mode == "progress":
        while process.poll() is None and time.monotonic() < deadline and len(finished_files(out)) < target:
            time.sleep(0.002)
    time.sleep(delay)
    alive = process.poll() is None
    if alive:
        process.send_signal(signal.SIGKILL)
    process.wait()
    stderr = process.stderr.read().decode(errors="replace")
    return {"mode": mode, "at": time.monotonic() - started, "alive": alive, "rc": process.returncode,
            "files": len(finished_files(out)), "stderr": stderr}


def run_to_end(cmd: list[str], timeout: float) -> tuple[int, str, float]:
    started = time.monotonic()
    process = subprocess.run(cmd, env=environment(), cwd=ROOT, capture_output=True, timeout=timeout)
    return process.returncode, process.stderr.decode(errors="replace"), time.monotonic() - started


def run(n_kills: int = 20, seed: int = 0, n_images: int = 16, workdir: Path | None = None,
        kills_per_round: tuple[int, int] = (1, 3), modes: tuple[str, ...] = ("time", "lock", "progress"),
        in_process_reference: bool = False, log=print) -> KillResult:
    """Kill extraction at ``n_kills`` random moments (seeded) and check every round's final cache; see the module.

    ``in_process_reference`` runs the uninterrupted reference in this process (saves a slow process start in tests;
    then ``full_seconds``, used by the "time" mode, does not include the start).
    """
    rng = np.random.default_rng(seed)
    work = Path(workdir or tempfile.mkdtemp(prefix="kill-points-"))
    data = make_data(work / "data", n_images, seed)
    model = save_tiny_vit(work / "model")
    result = KillResult()
    if in_process_reference:
        from pipeline.cli.extract import main as extract_main

        started = time.monotonic()
        rc, err = extract_main(command(data, model, work / "reference")[2:]), ""
        full_seconds = time.monotonic() - started
    else:
        rc, err, full_seconds = run_to_end(command(data, model, work / "reference"), timeout=600)
    if rc != 0:
        result.problems.append(f"the uninterrupted run failed ({rc}): {err[-500:]}")
        return result
    reference = snapshot(work / "reference")
    total = len(finished_files(work / "reference"))
    result.n_files = total
    log(f"uninterrupted run: {total} feature files in {full_seconds:.1f} s (process start included)")
    while result.kill_points < n_kills:
        result.rounds += 1
        out = work / f"round{result.rounds}"
        wanted = min(int(rng.integers(kills_per_round[0], kills_per_round[1] + 1)), n_kills - result.kill_points)
        landed = 0
        while landed < wanted:
            info = kill_once(command(data, model, out), out, rng, full_seconds, total, modes)
            if info["alive"]:
                landed += 1
                result.kill_points += 1
                result.restarts += 1
                log(f"kill {result.kill_points:2d} (round {result.rounds}): {info['mode']:8s} at {info['at']:5.2f} s, "
                    f"{info['files']}/{total} files finished")
                result.problems += check_trustworthy(out)
            else:
                result.missed += 1
                if info["rc"] != 0:
                    result.problems.append(f"round {result.rounds}: a run exited {info['rc']}: {info['stderr'][-300:]}")
        rc, err, seconds = run_to_end(command(data, model, out), timeout=600)
        if rc != 0:
            result.problems.append(f"round {result.rounds}: the restart exited {rc}: {err[-500:]}")
            continue
        leftovers = [p for p in out.rglob("*") if store.TEMP_MARKER in p.name]
        if leftovers:
            result.problems.append(f"round {result.rounds}: temporary files left: {leftovers}")
        problems, worst = compare(reference, snapshot(out))
        result.max_feature_diff = max(result.max_feature_diff, worst)
        result.problems += [f"round {result.rounds}: {p}" for p in problems]
        result.equal_rounds += not problems and not leftovers
        log(f"round {result.rounds}: restart finished in {seconds:.1f} s, cache "
            f"{'equal to' if not problems else 'DIFFERENT from'} the uninterrupted run (max |diff| {worst:.1e})")
        shutil.rmtree(out, ignore_errors=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kill points that must land during a run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=16, help="images in the synthetic data folder")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the data and caches here")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kill-points-") as scratch:
        result = run(args.kills, args.seed, args.images, args.workdir or Path(scratch))
    for problem in result.problems:
        print(f"PROBLEM: {problem}")
    print(
        f"kill points: {result.kill_points} (plus {result.missed} runs that finished before their kill moment); "
        f"restarts: {result.restarts} in {result.rounds} rounds; rounds whose final cache equals the uninterrupted "
        f"run: {result.equal_rounds}/{result.rounds} ({result.n_files} feature files each, max |feature diff| "
        f"{result.max_feature_diff:.1e}); {time.monotonic() - started:.0f} s"
    )
    print(f"RESULT: {'PASS, nothing lost' if result.passed else 'FAIL'}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
