"""abmil on slide-sized bags: peak memory and time of a fit and a prediction, every tile against sampled training.

``python -m benchmarks.bench_abmil_bags [--tiles 20000] [--dim 768] [--bags 8] [--epochs 2] [--max-train-tiles 512]``

Each mode runs in a fresh process on the same seeded random bags (``--bags`` bags of ``--tiles`` tiles x ``--dim``,
two classes): ``all`` trains on every tile of every bag (``max_train_tiles=None``: what abmil did before sampling),
``sampled`` on at most ``--max-train-tiles`` tiles of a bag per step. Both predict on every tile. Printed per mode
and phase: wall seconds, CPU seconds and the peak resident memory above what the process held before the phase (the
bags themselves and torch's own pools, warmed up first), read from Linux's ``VmHWM`` after resetting it
(``/proc/self/clear_refs``). One member, one thread, ``--epochs`` epochs, early stopping as by default. ``step``:
one training step (forward and backward) on a full batch of 16 bags, which a cohort of 160 or more slides has (with
fewer bags, batches shrink to keep 10 steps an epoch, so ``fit`` above trains on one bag a step).
``--before DIR`` adds the ``all`` mode run by the ``pipeline`` package of another checkout (abmil before sampling).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MIB = 2**20


def _memory(field: str) -> int:
    """A field of /proc/self/status in bytes (VmRSS: now; VmHWM: peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}: this benchmark needs Linux.")


def _phase(run: object) -> dict:
    """Wall s, CPU s and peak RSS above the start (MiB) of ``run()``."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _memory("VmRSS")
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
            "peak_mib": (_memory("VmHWM") - before) / MIB}


def measure(tiles: int, dim: int, n_bags: int, epochs: int, max_train_tiles: int | str | None) -> dict:
    """Fit and predict once in this process; the phases' numbers (``max_train_tiles="absent"``: not passed)."""
    import pipeline
    from pipeline.heads.abmil import ABMILHead

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_bags * tiles, dim)).astype(np.float32)
    y = np.arange(n_bags) % 2
    bag_index = np.repeat(np.arange(n_bags), tiles)
    X[bag_index % 2 == 1, 0] += 0.5  # some signal, so that training is training
    # torch's first operations allocate its own pools (~160 MiB): pay for them before measuring
    warm = np.repeat(np.arange(4), 10)
    ABMILHead(n_models=1, max_epochs=1).fit(X[:40], y[:4], warm).predict(X[:40], warm)
    options = {} if max_train_tiles == "absent" else {"max_train_tiles": max_train_tiles}  # an older pipeline's
    head = ABMILHead(n_models=1, max_epochs=epochs, patience=epochs, **options)
    fit = _phase(lambda: head.fit(X, y, bag_index))
    predict = _phase(lambda: head.predict_bags(X, bag_index))
    step = _phase(lambda: _training_step(head, X, bag_index, n_bags, max_train_tiles))
    package = str(Path(pipeline.__file__).parent)
    return {"fit": fit, "predict": predict, "step": step, "data_mib": X.nbytes / MIB, "package": package}


def _training_step(head: object, X: np.ndarray, bag_index: np.ndarray, n_bags: int,
                   max_train_tiles: int | str | None) -> None:
    """One forward and backward pass of a full batch (``batch_size`` bags, as a cohort of 160+ slides has)."""
    from pipeline.heads.bags import Bags

    bags = Bags(X, bag_index, n_bags)
    network = head.networks_[0].train()
    batch = np.resize(np.arange(n_bags), head.batch_size)
    limited = () if max_train_tiles in (None, "absent") else (max_train_tiles, np.random.default_rng(0))
    network(*bags.batch(batch, *limited))[0].sum().backward()


def main(argv: list[str] | None = None) -> int:
    """Measure both modes, each in a fresh process; print one line per mode and phase."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiles", type=int, default=20_000, help="tiles per bag")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--bags", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-train-tiles", type=int, default=512)
    parser.add_argument("--before", type=Path, help="also run the 'all' mode with the pipeline package of this "
                        "checkout (e.g. one from before sampling), whose abmil has no max_train_tiles")
    parser.add_argument("--child", choices=("all", "sampled", "before"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        limit = {"all": None, "sampled": args.max_train_tiles, "before": "absent"}[args.child]
        if args.child == "before":  # first on the path: python -m put this checkout's folder there
            sys.path.insert(0, str(args.before))
        print(json.dumps(measure(args.tiles, args.dim, args.bags, args.epochs, limit)))
        return 0
    print(f"abmil, {args.bags} bags x {args.tiles} tiles x {args.dim} dims, {args.epochs} epochs, one member, "
          f"one thread")
    for mode in ("before", "all", "sampled") if args.before else ("all", "sampled"):
        flags = [f"--{key.replace('_', '-')}={value}" for key, value in vars(args).items()
                 if key not in ("child", "before")]
        if mode == "before":
            flags.append(f"--before={args.before.resolve()}")
        command = [sys.executable, "-m", "benchmarks.bench_abmil_bags", "--child", mode, *flags]
        result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        label = f"<= {args.max_train_tiles} tiles/bag" if mode == "sampled" else "every tile"
        for phase in ("fit", "predict", "step"):
            numbers = result[phase]
            print(f"{mode:8s} train on {label:20s} {phase:8s} wall {numbers['wall_s']:7.2f} s  cpu "
                  f"{numbers['cpu_s']:7.2f} s  peak +{numbers['peak_mib']:7.1f} MiB (bags: {result['data_mib']:.0f} "
                  f"MiB; {result['package']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
