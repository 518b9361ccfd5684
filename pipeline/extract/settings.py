"""The settings of an extraction run, as given on the command line (resolved later by :mod:`pipeline.extract.plan`)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.data.images import DEFAULT_MAX_PIXELS
from pipeline.data.tiling import TilingSettings
from pipeline.defaults import DEFAULT_DATA_DIR, DEFAULT_FEATURES_DIR, DEFAULT_TILE_SIZE
from pipeline.embed import registry
from pipeline.embed.options import COMPILE_MODES, PRECISIONS
from pipeline.embed.registry import DEFAULT_MODEL, model_help
from pipeline.errors import ConfigError
from pipeline.extract.sharding import Shard, parse_shard
from pipeline.flags import nested, setting
from pipeline.hygiene.settings import QualitySettings

logger = logging.getLogger(__name__)

TISSUE_MODES = ("auto", "mask", "all")


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


def tile_size_for(model: str, mpp: float | None, tile_size: int | None = None) -> int:
    """``tile_size`` as given, else the size ``mpp`` implies for ``model``, else :data:`DEFAULT_TILE_SIZE`.

    Raises:
        ConfigError: Both given, or ``mpp`` with an encoder whose training scale is not in the table.
    """
    if mpp is None:
        return DEFAULT_TILE_SIZE if tile_size is None else tile_size
    if tile_size is not None:
        raise ConfigError(f"--tile-size {tile_size} and --mpp {mpp:g} both set the tile size: give one.")
    entry = registry.find(model)
    if entry is None:
        raise ConfigError(f"--mpp needs an encoder of the table, whose training magnification is known; "
                          f"'{model}' is not one. Give --tile-size instead (see docs/encoders.md).")
    try:
        size = registry.tile_size_for_mpp(entry, mpp)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    logger.info("--mpp %g with %s (trained at %s, %d-px input): --tile-size %d.", mpp, entry.name,
                entry.magnification, entry.input_size, size)
    return size


def slide_target_mpp(model: str, target_mpp: float | None) -> float | None:
    """The MPP of slide tiles: ``target_mpp`` as given, else the encoder's training scale from the registry.

    0.5 (20x) for encoders trained at several; None outside the registry (slides are then tiled at ``--tile-size``
    level-0 pixels).
    """
    if target_mpp is not None:
        return target_mpp
    entry = registry.find(model)
    if entry is None or not entry.mpp:
        return None
    return 0.5 if 0.5 in entry.mpp else entry.mpp[0]


@dataclass
class ExtractionSettings:
    """Everything that defines an extraction run; each field with a flag is one flag of ``extract.py``."""

    data_dir: Path = setting(
        DEFAULT_DATA_DIR, name="--data", help="data folder with train_data/, test_data/ and train_labels.csv"
    )
    split: str = setting("all", choices=("train", "test", "all"), help="which split to embed")
    model: str = setting(DEFAULT_MODEL, help=model_help())
    out_dir: Path = setting(
        DEFAULT_FEATURES_DIR, name="--out",
        help="cache root: each data folder gets its own sub-folder (<name>-<hash of its path>)",
    )
    device: str = setting("auto", choices=("auto", "cpu", "cuda"), help="auto uses CUDA when available")
    precision: str = setting(
        "auto", choices=PRECISIONS,
        help="auto: fp16 on CUDA, bf16 for transformer models on CPUs with AMX/AVX512-BF16, fp32 elsewhere; "
        "bf16-weights casts the weights themselves",
    )
    compile: str = setting(
        "auto", choices=COMPILE_MODES,
        help="torch.compile the model (runs uncompiled if that fails); auto: only for bf16 on AMX CPUs (slower on GPU)",
    )
    tiling: TilingSettings = nested(TilingSettings)
    # resolved into tiling.tile_size by resolved(): a library caller gets the same tiles as the command line
    mpp: float | None = setting(
        None, type=float,
        help="micrometres per pixel of your images: sets --tile-size so that tiles match the magnification the "
        "encoder was trained at, e.g. 0.25 with a 0.5 um/px encoder of 224 px input gives 448 (docs/encoders.md)",
    )
    tissue: str = setting(
        "auto", choices=TISSUE_MODES,
        help="where tiles go: auto: the mask files where they exist, tissue found automatically elsewhere (slides, "
        "images without a mask); mask: mask files only (an image without one is skipped); all: the whole image",
    )
    target_mpp: float | None = setting(
        None, metavar="UM", type=float,
        help="micrometres per pixel of slide tiles (default: the encoder's training scale from the registry; a model "
        "outside it tiles slides at --tile-size level-0 pixels); see docs/slides.md",
    )
    # --mpp as given, kept by resolved() for slides (whose own metadata it overrides); no flag of its own
    input_mpp: float | None = None
    batch_size: int | None = setting(
        None, type=int, help="tiles per forward pass (default: 16 on CPU, 256 on CUDA)"
    )
    workers: int | None = setting(
        None, type=int,
        help=f"decoding worker processes (default: cores - 1, at most 8 on CPU and 32 on CUDA; here "
        f"{default_workers()} on CPU; 0: none)",
    )
    write_processes: int = setting(
        0,
        help="processes that encode and write the HDF5 files (0: one thread beside the model, as fast on the hosts "
        "measured; more where encoding, not the disk, is the limit)",
    )
    strict: bool = setting(False, help="stop with an error at the first bad image")
    overwrite: bool = setting(False, help="re-embed images whose files are up to date")
    max_pixels: int = setting(
        DEFAULT_MAX_PIXELS, help="refuse images whose header claims more pixels (decompression-bomb guard)"
    )
    quality: QualitySettings = nested(QualitySettings)  # thresholds of the hygiene report
    quality_checks: bool = True  # compute the cheap per-image checks (off only to measure their cost; no flag)
    progress: bool = setting(True, help="hide the progress bar")
    shard: Shard | None = setting(
        None, metavar="I/N", parse=parse_shard,
        help="embed only shard I of N (0-based, like torchrun's RANK), balanced by pixel count; N processes, e.g. a "
        "Slurm array, fill one cache together, then --finalize writes its report. Under torchrun the default is "
        "RANK/WORLD_SIZE (see docs/scale-out.md)",
    )

    def resolved(self) -> ExtractionSettings:
        """These settings validated, with ``mpp`` turned into the tile size (:func:`tile_size_for`); idempotent.

        Raises:
            ConfigError: A value out of range, or ``mpp`` with a tile size of its own or an encoder whose training
                magnification is unknown.
        """
        self.validate()
        if self.mpp is None:
            return self
        given = None if self.tiling.tile_size == DEFAULT_TILE_SIZE else self.tiling.tile_size
        tiling = replace(self.tiling, tile_size=tile_size_for(self.model, self.mpp, given))
        return replace(self, tiling=tiling, mpp=None, input_mpp=self.mpp)

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
        if self.tissue not in TISSUE_MODES:
            raise ConfigError(f"--tissue must be one of {', '.join(TISSUE_MODES)}. Got '{self.tissue}' instead.")
        if self.target_mpp is not None and not 0.01 <= self.target_mpp <= 20:
            raise ConfigError(f"--target-mpp must be micrometres per pixel between 0.01 and 20 (0.5 for 20x). Got "
                              f"{self.target_mpp} instead.")
        if self.max_pixels <= 0:
            raise ConfigError(f"--max-pixels must be positive. Got {self.max_pixels} instead.")
        return self
