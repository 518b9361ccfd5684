"""The settings of an extraction run, as given on the command line (resolved later by :mod:`pipeline.extract.plan`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.data.images import DEFAULT_MAX_PIXELS
from pipeline.data.tiling import TilingSettings
from pipeline.embed.options import COMPILE_MODES
from pipeline.errors import ConfigError
from pipeline.extract.sharding import Shard
from pipeline.hygiene.settings import QualitySettings


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which Slurm and containers restrict), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_workers(device_type: str = "cpu", processes: int = 1) -> int:
    """Decoding workers: this process's share of the cores but one, at least one; at most 8 on a CPU, 32 on CUDA.

    On a CPU the model's own threads need the other cores; on CUDA decoding is what limits the run. ``processes``
    extractions on one node (torchrun's LOCAL_WORLD_SIZE) share its cores instead of each starting one worker per
    core.
    """
    return max(1, min(32 if device_type == "cuda" else 8, usable_cores() // max(1, processes) - 1))


@dataclass
class ExtractionSettings:
    """Everything that defines an extraction run (the command-line flags of ``extract.py``)."""

    data_dir: Path = Path("data")  # challenge layout: train_data/, test_data/, train_labels.csv
    split: str = "all"  # train, test or all
    model: str = "phikon"  # registry name, Hugging Face id or folder, timm:NAME
    out_dir: Path = Path("features")  # the cache root: <out>/<data folder key>/<model and tiling settings>/
    device: str = "auto"  # auto (CUDA when available), cpu, cuda
    precision: str = "auto"  # fp32, bf16, fp16, bf16-weights; auto: fp16 CUDA, bf16 transformers on AMX, else fp32
    compile: str = "auto"  # torch.compile the model: auto (CUDA, bf16 on CPUs with native bf16), on, off
    tiling: TilingSettings = field(default_factory=TilingSettings)
    batch_size: int | None = None  # tiles per forward pass (across images); None: 16 on CPU, 256 on CUDA
    workers: int | None = None  # decoding processes; None = default_workers(device), 0 = in the main process
    write_processes: int = 0  # HDF5 writer processes; 0: one writer thread in the main process
    strict: bool = False  # stop at the first bad image instead of skipping it
    overwrite: bool = False  # re-embed images even when their file is up to date
    max_pixels: int = DEFAULT_MAX_PIXELS  # refuse image headers above this many pixels
    quality: QualitySettings = field(default_factory=QualitySettings)  # thresholds of the hygiene report
    quality_checks: bool = True  # compute the cheap per-image checks (off only to measure their cost)
    progress: bool = True  # show a progress bar
    shard: Shard | None = None  # embed only this shard of the images; None: all (or the torchrun rank's shard)

    def validate(self) -> ExtractionSettings:
        """Raise :class:`ConfigError` on values outside their range; return self."""
        self.tiling.validate()
        if self.shard is not None:
            self.shard.validate()
        if self.batch_size is not None and self.batch_size <= 0:
            raise ConfigError(f"--batch-size must be a positive number of tiles. Got {self.batch_size} instead.")
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"--compile must be one of {', '.join(COMPILE_MODES)}. Got '{self.compile}' instead.")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"--workers must be 0 or more. Got {self.workers} instead.")
        if self.write_processes < 0:
            raise ConfigError(f"--write-processes must be 0 or more. Got {self.write_processes} instead.")
        if self.max_pixels <= 0:
            raise ConfigError(f"--max-pixels must be positive. Got {self.max_pixels} instead.")
        return self
