"""The extraction benchmark's report (:mod:`benchmarks.bench_extraction`) as a plain-text table."""

from __future__ import annotations


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top is not None and bottom else None


def ceiling_tiles_per_s(machine: dict, gflop_per_tile: float | None, precision: str) -> float | None:
    """Tiles/s a model would reach if every FLOP ran at the machine's large-matmul rate (CPU only).

    Uses the bf16 matmul rate for bf16 precisions on CPUs with native bf16, the fp32 rate otherwise.
    """
    if not gflop_per_tile or machine.get("device", "cpu") != "cpu":
        return None
    rates = machine.get("matmul_gflops", {})
    rate = rates.get("bf16") if precision.startswith("bf16") and "bf16" in rates else rates.get("fp32")
    return rate / gflop_per_tile if rate else None


def _cosine(row: dict) -> str:
    if "centred_cosine_mean" not in row:
        return "-"
    return f"{row['centred_cosine_mean']:.6f} / {row['centred_cosine_min']:.6f} ({row['drift_tiles']})"


def model_only_rate(row: dict) -> float | None:
    """Model-only tiles/s of a speed row: the mean of the passes before and after its end-to-end run."""
    rates = [row[key] for key in ("model_only_tiles_per_s", "model_only_after_tiles_per_s") if row.get(key)]
    return sum(rates) / len(rates) if rates else None


def sustained_rate(row: dict) -> float | None:
    """End-to-end tiles/s as a long extraction sustains it, the figure compared with model-only.

    The marginal rate when the row has it (all images minus the first few, each an extraction of its own: start-up,
    compile and the first batches' warm-up cancel, as model-only leaves out its warm-up batches); else the whole
    run without the one-time compile, timed as the first batch's forward pass (that batch's tiles are left out).
    """
    if row.get("end_to_end_marginal_tiles_per_s"):
        return row["end_to_end_marginal_tiles_per_s"]
    compiling = row.get("timings", {}).get("compiling", 0.0)
    if not compiling or row.get("end_to_end_seconds") is None:
        return row.get("end_to_end_tiles_per_s")
    tiles = row["end_to_end_tiles"] - min(row.get("batch_size", 0), row["end_to_end_tiles"])
    seconds = row["end_to_end_seconds"] - compiling
    return tiles / seconds if seconds > 0 and tiles > 0 else None


def _phases(timings: dict) -> str:
    return ", ".join(f"{name.replace('_', ' ')} {seconds:.1f} s" for name, seconds in timings.items())


def format_report(report: dict) -> str:
    """Machine line, then one table row per model and precision, then naive, compile, memory and F1 lines."""
    machine = report["machine"]
    rates = machine["matmul_gflops"]
    lines = [
        f"machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, {machine['torch_threads']} torch threads, "
        f"{machine['cpu_capability']}, native bf16: {'yes' if machine['cpu_native_bf16'] else 'no'}, "
        f"torch {machine['torch']}, device {machine['device']}{', ' + machine['gpu'] if 'gpu' in machine else ''}",
        "load average before: " + " ".join(f"{v:.2f}" for v in machine["load_average_before"])
        + ", after: " + " ".join(f"{v:.2f}" for v in machine.get("load_average_after", ()))
        + "; matmul ceiling: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in rates.items()),
        "",
    ]  # fmt: skip
    naive = {row["model"]: row for row in report["naive"]}
    flops = {row["model"]: row["gflop_per_tile"] for row in report["speed"] if "gflop_per_tile" in row}
    header = (
        f"{'model':<18} {'precision':<18} {'tiles':>5} {'model-only':>10} {'end-to-end':>10} {'e2e/model':>9} "
        f"{'x naive':>7} {'ceiling':>7} {'of ceil':>7} {'peak RSS':>8}  centred cosine vs fp32 mean / min (tiles)"
    )
    lines += [header, f"{'':<18} {'':<18} {'':>5} {'tiles/s':>10} {'tiles/s':>10} {'':>9} {'':>7} {'tiles/s':>7} "
              f"{'':>7} {'MiB':>8}"]  # fmt: skip
    for row in report["speed"]:
        on_cpu = str(row.get("device", "cpu")).startswith("cpu")  # the ceiling is the CPU's matmul rate
        ceiling = ceiling_tiles_per_s(machine, flops.get(row["model"]), row["precision"]) if on_cpu else None
        model_rate, e2e = model_only_rate(row), sustained_rate(row)
        naive_rate = naive.get(row["model"], {}).get("naive_tiles_per_s")
        ratio = _ratio(e2e, model_rate)
        precision = row["precision"] + (" (auto)" if "auto" in row.get("asked_as", ()) else "")
        precision += " compiled" if row.get("compiled") else ""
        lines.append(
            f"{row['model']:<18} {precision:<18} {row['tiles']:>5} {_num(model_rate):>10} {_num(e2e):>10} "
            f"{'-' if ratio is None else f'{ratio:.0%}':>9} {_num(_ratio(e2e, naive_rate), 1) + 'x':>7} "
            f"{_num(ceiling, 1):>7} {'-' if not ceiling else f'{model_rate / ceiling:.0%}':>7} "
            f"{_num(row.get('peak_rss_mib'), 0):>8}  {_cosine(row)}"
        )
    lines.append("")
    for row in report["speed"]:
        if row.get("bare_tiles_per_s") and row.get("paired_tiles_per_s"):
            lines.append(
                f"{row['model']} {row['precision']}: model-only {row['model_only_tiles_per_s']:.2f} tiles/s; batch by "
                f"batch in turn with a bare {'compiled ' if row.get('compiled') else ''}loop over the module: "
                f"{row['paired_tiles_per_s']:.2f} against {row['bare_tiles_per_s']:.2f} "
                f"({row['paired_tiles_per_s'] / row['bare_tiles_per_s']:.0%}); medians of full batches"
            )
    for row in report["speed"]:
        if row.get("model_only_after_tiles_per_s") and row.get("end_to_end_tiles_per_s"):
            compiling = row.get("timings", {}).get("compiling", 0.0)
            lines.append(
                f"{row['model']} {row['precision']}: model-only {row['model_only_tiles_per_s']:.2f} tiles/s before "
                f"and {row['model_only_after_tiles_per_s']:.2f} after the end-to-end run (the table has their mean); "
                f"end to end {row['end_to_end_tiles_per_s']:.2f} tiles/s with its {compiling:.1f} s compile"
                + (f", marginal {row['end_to_end_marginal_tiles_per_s']:.2f} ({row['end_to_end_marginal_tiles'][1]} "
                   f"vs its first {row['end_to_end_marginal_tiles'][0]} tiles, the table's)"
                   if row.get("end_to_end_marginal_tiles_per_s") else
                   f", {_num(sustained_rate(row))} without it and its first batch (the table's)")
            )
    for row in [*report["speed"], *([report["data_side"]] if "data_side" in report else [])]:
        if row.get("timings"):
            lines.append(f"phases {row['model']} {row['precision']}: " + _phases(row["timings"]))
    for model, row in naive.items():
        lines.append(
            f"naive loop {model}: {row['tiles']} tiles one at a time (image processor + fp32 model, batch 1): "
            f"{row['naive_tiles_per_s']:.2f} tiles/s; centred cosine vs the pipeline's fp32: {_cosine(row)}"
        )
    for model, gflop in flops.items():
        lines.append(f"{model}: {gflop:.2f} GFLOP per tile (matmuls and convolutions)")
    eager = {(r["model"], r["precision"]): r["model_only_tiles_per_s"] for r in report["speed"] if not r["compiled"]}
    for row in report["compile"]:
        speedup = _ratio(row["model_only_tiles_per_s"], eager.get((row["model"], row["precision"])))
        state = f"compiled in {row['compile_seconds']:.1f} s" if row["compiled"] else "compile FAILED, ran eagerly"
        lines.append(
            f"torch.compile {row['model']} {row['precision']}: {row['model_only_tiles_per_s']:.2f} tiles/s model-only "
            f"({_num(speedup)}x eager), {state}"
        )
    memory = report["memory"]
    for row in memory:
        lines.append(
            f"memory {row['model']} {row['precision']}: {row['images']} images, {row['end_to_end_tiles']} tiles, "
            f"{row['end_to_end_tiles_per_s']:.1f} tiles/s end to end, peak RSS {row['peak_rss_mib']:.0f} MiB "
            f"(+ decoding workers {row['workers_peak_rss_mib']:.0f} MiB)"
        )
    if len(memory) >= 2:
        lines.append(
            f"peak RSS {memory[-1]['images']} vs {memory[0]['images']} images: "
            f"{memory[-1]['peak_rss_mib'] / memory[0]['peak_rss_mib'] - 1:+.1%} (main process), "
            f"{memory[-1]['workers_peak_rss_mib'] / max(memory[0]['workers_peak_rss_mib'], 1e-9) - 1:+.1%} (workers)"
        )
    side = report.get("data_side")
    if side:
        lines.append(
            f"data side alone (a model that costs nothing): {side['images']} images, "
            f"{side['end_to_end_tiles_per_s']:.1f} tiles/s end to end (decoding, tiling, HDF5 files)"
        )
    for row in report["f1"]:
        lines.append(
            f"F1 {row['model']} {row['precision']} ({'/'.join(row['asked_as'])}): weighted F1 {row['weighted_f1']:.4f} "
            f"on {row['images']} images (logistic regression, cross-validated); centred cosine vs fp32 {_cosine(row)}"
        )
    return "\n".join(lines)
