"""The settings of a classification run (the flags of ``classify.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.heads.registry import HEAD_NAMES
from pipeline.hygiene.settings import QualitySettings

# the choices of --fusion and --level, here (not beside the code that uses them) so that --help imports no model code
FUSION_MODES = ("late", "concat")  # several caches: average each cache's image probabilities, or join features
LEVELS = ("tile", "image")  # what --level offers; bag heads always get "bag"


@dataclass
class ClassificationSettings:
    """Everything that defines a classification run."""

    # a cache folder, a cache name under features/, or a root holding caches; several: caches of the same images
    # (other encoders or tile sizes) to fuse
    features: Path | Sequence[Path] = Path("features")
    fusion: str = "late"  # several caches: late (average each cache's image probabilities) or concat (image level)
    data_dir: Path | None = None  # whose cache to read under a root; None: data/'s if there is one, else the only one
    labels: Path | None = None  # default: train_labels.csv of the data folder recorded by extraction
    allow_labels: tuple[str, ...] = ()  # labels that are meant although they look like typos of a larger class
    head: str = "mlp"  # logreg, lgbm, mlp or all
    level: str = "tile"  # tile: train on tiles and vote; image: train on pooled embeddings (bag heads ignore it)
    vote: str = "mean"  # mean, majority or coverage (tile level)
    pool: tuple[str, ...] = ("mean",)  # image level: statistics of each image's tiles (mean, max, std)
    folds: int = 5  # stratified folds over images, duplicates kept together
    seed: int = 0  # folds, head initialisation and sampling
    repeats: int = 1  # cross-validations with seeds seed, seed + 1, ...; metrics.json reports their mean and sd
    class_weight: bool = True  # balanced class weights in every head
    out: Path | None = None  # run folder; default runs/<data folder>_<cache name>_<head> (next free name)
    runs_root: Path = Path("runs")
    overwrite: bool = False  # replace an existing --out folder
    keep_outliers: bool = False  # train on images flagged non_tissue or ink too (they are always validated)
    drop_flagged: bool = False  # leave flagged images out even when they are > 5% of training or > 10% of a class
    dedupe: bool = False  # train on one representative (the first) of each duplicate group
    quality: QualitySettings = field(default_factory=QualitySettings)  # hygiene thresholds
    pictures: bool = True  # plots, vote maps and report.html in the run folder
    vote_maps: tuple[str, ...] = ()  # extra images to draw vote maps of: ids, file names, stems, or 'all'

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
