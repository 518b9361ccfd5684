"""The settings of a classification run (the flags of ``classify.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.cache.pooling import POOL_STATS, parse_pool
from pipeline.classify.votes import VOTES
from pipeline.defaults import DEFAULT_DATA_DIR, DEFAULT_FEATURES_DIR
from pipeline.errors import ConfigError
from pipeline.flags import comma_separated, nested, setting
from pipeline.heads.registry import HEAD_NAMES, heads_help
from pipeline.hygiene.settings import QualitySettings

# the choices of --fusion and --level, here (not beside the code that uses them) so that --help imports no model code
FUSION_MODES = ("late", "concat")  # several caches: average each cache's image probabilities, or join features
LEVELS = ("tile", "image")  # what --level offers; bag heads always get "bag"


@dataclass
class ClassificationSettings:
    """Everything that defines a classification run; each field with a flag is one flag of ``classify.py``."""

    # a cache folder, a cache name under features/, or a root holding caches; several: caches of the same images
    # (other encoders or tile sizes) to fuse
    features: Path | Sequence[Path] = setting(
        DEFAULT_FEATURES_DIR, nargs="+", metavar="CACHE", type=Path,
        help="a cache folder written by extract.py, a cache's name, or the root holding them; several caches of the "
        "same images (other encoders or tile sizes) are fused (--fusion)",
    )
    fusion: str = setting(
        "late", choices=FUSION_MODES,
        help="with several --features: late fits the head on each cache in the same folds and averages the image "
        "probabilities; concat fits one head on the caches' pooled image features side by side (needs --level image)",
    )
    data_dir: Path | None = setting(
        None, name="--data", type=Path,
        help=f"the data folder whose cache to use under a root (default: {DEFAULT_DATA_DIR}/'s, else the only one)",
    )
    labels: Path | None = setting(
        None, type=Path,
        help="sample_index,label CSV (default: train_labels.csv of the data folder the cache records)",
    )
    allow_labels: tuple[str, ...] = setting(
        (), nargs="+", metavar="LABEL",
        help="labels that are meant although they are one or two edits (or case, spaces, - or _) from a much larger "
        "class; without it such a label is refused as a likely typo",
    )
    head: str = setting(
        "mlp", choices=(*HEAD_NAMES, "all"), help=f"classifier head ({heads_help()}); all compares them"
    )
    level: str = setting(
        "tile", choices=LEVELS,
        help="tile: train on tiles and vote per image; image: train on pooled tile embeddings (--pool); abmil always "
        "takes each image's tiles as a bag",
    )
    vote: str = setting("mean", choices=VOTES, help="how tile probabilities become one per image")
    pool: tuple[str, ...] = setting(
        ("mean",), metavar="STATS", parse=parse_pool, show=",".join,
        help=f"--level image: per-image statistics of the tiles, comma-separated from {', '.join(POOL_STATS)} "
        "(e.g. mean,max)",
    )
    folds: int = setting(5, help="cross-validation folds over images (stratified, duplicates kept together)")
    seed: int = setting(0, help="seed of folds, head initialisation and sampling")
    repeats: int = setting(
        1, help="repeat the whole cross-validation with seeds seed, seed+1, ... and report the mean and sd of "
        "weighted F1",
    )
    class_weight: bool = setting(True, help="turn off balanced class weights")
    out: Path | None = setting(
        None, type=Path,
        help="run folder (default: runs/<data folder>_<cache name>_<head>, or the next free _2 ...; fused: "
        "runs/<data folder>_fused-<mode>_<head>_<what differs between the caches>)",
    )
    runs_root: Path = Path("runs")  # where default run folders go (no flag)
    overwrite: bool = setting(False, help="replace an existing --out folder")
    keep_outliers: bool = setting(
        False,
        help="also train on images flagged non_tissue or ink (by default they are left out while they are at most "
        "5% of the training images and 10% of each class; above that all are kept and a warning says so)",
    )
    drop_flagged: bool = setting(
        False, help="leave images flagged non_tissue or ink out of training even above those limits"
    )
    dedupe: bool = setting(False, help="train on one image per duplicate group (groups always stay in one fold)")
    quality: QualitySettings = nested(QualitySettings)  # hygiene thresholds
    pictures: bool = setting(True, help="skip the plots, vote maps and report.html")
    vote_maps: tuple[str, ...] = setting(
        (), metavar="IDS", parse=comma_separated,
        help="also draw vote maps of these images: comma-separated ids (train/img_0003, test/img_0001), training "
        "file names (img_0003.png) or stems, or 'all' training images",
    )

    def feature_paths(self) -> list[Path]:
        """The ``--features`` values, one per cache (a single path gives one)."""
        if isinstance(self.features, (str, Path)):
            return [Path(self.features)]
        return [Path(value) for value in self.features]

    def check_repeats(self) -> None:
        """Raise :class:`ConfigError` unless ``repeats`` is an int >= 1."""
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or self.repeats < 1:
            raise ConfigError(f"--repeats must be an int of at least 1. Got {self.repeats!r} instead.")

    def heads(self) -> list[str]:
        """The heads to run.

        Raises:
            ConfigError: Unknown head.
        """
        if self.head == "all":
            return list(HEAD_NAMES)
        if self.head not in HEAD_NAMES:
            raise ConfigError(f"--head must be one of {', '.join(HEAD_NAMES)}, all. Got '{self.head}' instead.")
        return [self.head]
