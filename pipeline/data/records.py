"""Find image/mask pairs (and, when asked, whole-slide images) in the users' folder layout. No pixels are decoded.

The challenge layout::

    DIR/train_data/img_0000.png  mask_0000.png ...
    DIR/test_data/img_0000.png   mask_0000.png ...   (numbering restarts, so ids carry the split)
    DIR/train_labels.csv         sample_index,label

Each record has a *kind*: ``"image"`` (with its mask file), ``"unmasked_image"`` (an ``img_*`` file without one)
or ``"slide"``; and a *mask source*: ``"mask_file"`` or ``"tissue_detection"`` (no mask file: the mask must come
from the pixels, :mod:`pipeline.data.tissue`; today's extraction skips such images). With ``slides=True`` a split
folder may also hold whole-slide images under their own names (no ``img_`` prefix): any extension of
``slide_backends.SLIDE_EXTENSIONS`` that :func:`slide_backends.reads_as_slide` accepts (``.tif``/``.tiff`` only
when tiled or pyramidal; a small stripped TIFF stays an image, and needs the ``img_`` prefix as before).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pipeline.data.images import file_sha256
from pipeline.data.slide_backends import SLIDE_EXTENSIONS, reads_as_slide
from pipeline.errors import DataLayoutError

logger = logging.getLogger(__name__)

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")
# When several mask files share a stem, the lossless formats win: a JPEG mask has blurred edges.
MASK_EXTENSION_PRIORITY = (".png", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".jpg", ".jpeg")
KINDS = ("image", "unmasked_image", "slide")
MASK_SOURCES = ("mask_file", "tissue_detection")


@dataclass(frozen=True)
class ImageRecord:
    """One image of the data folder and the mask that goes with it.

    Attributes:
        image_id: Split and stem, unique across splits, e.g. ``"train/img_0000"``.
        split: ``"train"`` or ``"test"``.
        sample_index: The file name as written in ``train_labels.csv`` and submissions, e.g. ``"img_0000.png"``.
        image_path: The image file.
        mask_path: The mask file, or None when no mask was found (extraction then skips the image).
        kind: ``"image"``, ``"unmasked_image"`` or ``"slide"``; by default from ``mask_path``.
        mask_source: ``"mask_file"`` or ``"tissue_detection"``; by default from ``mask_path``.
    """

    image_id: str
    split: str
    sample_index: str
    image_path: Path
    mask_path: Path | None
    kind: str = ""
    mask_source: str = ""

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", "image" if self.mask_path is not None else "unmasked_image")
        if not self.mask_source:
            object.__setattr__(self, "mask_source", "mask_file" if self.mask_path is not None else "tissue_detection")
        if self.kind not in KINDS or self.mask_source not in MASK_SOURCES:
            raise ValueError(f"An ImageRecord's kind must be one of {KINDS} and its mask source one of "
                             f"{MASK_SOURCES}. Got {self.kind!r}, {self.mask_source!r} instead.")
        if (self.mask_source == "mask_file") != (self.mask_path is not None):
            raise ValueError(f"{self.image_path}: mask source {self.mask_source!r} does not match mask file "
                             f"{self.mask_path}.")


def split_folder(data_dir: Path, split: str) -> Path:
    """Return the folder that holds one split, e.g. ``DIR/train_data``."""
    return Path(data_dir) / f"{split}_data"


def resolve_splits(split: str) -> tuple[str, ...]:
    """Turn ``train``, ``test`` or ``all`` into the tuple of splits to process."""
    if split == "all":
        return SPLITS
    if split in SPLITS:
        return (split,)
    raise DataLayoutError(f"The split must be one of train, test, all. Got '{split}' instead.")


def find_records(
    data_dir: Path | str,
    split: str = "all",
    image_prefix: str = "img_",
    mask_prefix: str = "mask_",
    slides: bool | str = False,
) -> list[ImageRecord]:
    """List the images of the requested splits with their masks, sorted by split then file name.

    Args:
        data_dir: The data folder (holds ``train_data/`` and/or ``test_data/``).
        split: ``"train"``, ``"test"`` or ``"all"``; with ``"all"`` a missing split folder is skipped.
        image_prefix: Prefix of image file names; the mask name replaces it with ``mask_prefix``.
        mask_prefix: Prefix of mask file names.
        slides: Also list whole-slide images, under any name (see the module docstring); their records come after
            the split's images, sorted by file name. ``"masked"``: only the slides with a mask file beside them
            (:func:`slide_listing`). False lists exactly what it always did.

    Returns:
        One record per image file. An image without a mask gets ``mask_path=None``.

    Raises:
        DataLayoutError: The folder does not exist, holds no split folder, a requested split folder is missing,
            or (with ``slides``) two files of one split share a stem.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataLayoutError(
            f"--data folder '{data_dir}' does not exist. Point --data at the folder that holds train_data/ and "
            "test_data/ (the challenge layout, see the README)."
        )
    splits = resolve_splits(split)
    present = [s for s in SPLITS if split_folder(data_dir, s).is_dir()]
    if not present:
        raise DataLayoutError(
            f"--data folder '{data_dir}' has neither train_data/ nor test_data/. Point --data at the challenge "
            "folder (it holds train_data/, test_data/ and train_labels.csv)."
        )
    if split != "all" and split not in present:
        raise DataLayoutError(
            f"--split {split} was asked for but '{split_folder(data_dir, split)}' does not exist. "
            f"Use --split {' or '.join(present)} or --split all."
        )
    records: list[ImageRecord] = []
    for name in splits:
        folder = split_folder(data_dir, name)
        if folder.is_dir():
            found = list(_records_in(folder, name, image_prefix, mask_prefix, slides))
            if slides:
                _check_unique(found)
            records.extend(found)
    return records


def slide_listing(tissue: str) -> bool | str:
    """``find_records``' ``slides`` for ``--tissue``: every slide, or under ``mask`` only those with a mask file."""
    return "masked" if tissue == "mask" else True


def _check_unique(records: list[ImageRecord]) -> None:
    """Raise :class:`DataLayoutError` when two files of one split share a stem (and so an image id and cache file)."""
    seen: dict[str, Path] = {}
    for record in records:
        if record.image_id in seen:
            raise DataLayoutError(
                f"'{seen[record.image_id]}' and '{record.image_path}' share the name {record.image_path.stem}, so "
                "their features would share one cache file. Rename or remove one of them."
            )
        seen[record.image_id] = record.image_path


def _slide_records(
    folder: Path, split: str, image_prefix: str, mask_prefix: str, masks: dict[str, list[Path]]
) -> Iterable[ImageRecord]:
    """Records of the whole-slide images of one split folder (mask files never are).

    A slide ``X.svs`` (or ``img_X.tif``) with a ``mask_X.png`` (any image extension) beside it gets that mask file,
    at any downsample of its level 0; the others get tissue detection.
    """
    candidates = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SLIDE_EXTENSIONS)
    for path in candidates:
        if path.name.startswith(mask_prefix) or not reads_as_slide(path):
            continue
        stem = path.stem[len(image_prefix) :] if path.stem.startswith(image_prefix) else path.stem
        mask = _pick_mask([m for m in masks.get(mask_prefix + stem, []) if m != path])
        source = "tissue_detection" if mask is None else "mask_file"
        yield ImageRecord(f"{split}/{path.stem}", split, path.name, path, mask, "slide", source)


def _records_in(
    folder: Path, split: str, image_prefix: str, mask_prefix: str, slides: bool = False
) -> Iterable[ImageRecord]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    masks: dict[str, list[Path]] = {}
    for path in files:
        if path.name.startswith(mask_prefix):
            masks.setdefault(path.stem, []).append(path)
    slide_paths = list(_slide_records(folder, split, image_prefix, mask_prefix, masks)) if slides else []
    if slides == "masked":  # --tissue mask: mask files only, so only the slides that have one
        slide_paths = [record for record in slide_paths if record.mask_path is not None]
    as_slides = {record.image_path for record in slide_paths}
    n_images = 0
    for path in files:
        if not path.name.startswith(image_prefix) or path in as_slides:
            continue
        n_images += 1
        mask_stem = mask_prefix + path.stem[len(image_prefix) :]
        yield ImageRecord(
            image_id=f"{split}/{path.stem}",
            split=split,
            sample_index=path.name,
            image_path=path,
            mask_path=_pick_mask(masks.get(mask_stem, [])),
        )
    yield from slide_paths
    if n_images == 0 and not slide_paths:
        logger.warning("%s holds no image named %s*", folder, image_prefix)


def _pick_mask(candidates: list[Path]) -> Path | None:
    if not candidates:
        return None

    def rank(path: Path) -> int:
        suffix = path.suffix.lower()
        return (
            MASK_EXTENSION_PRIORITY.index(suffix) if suffix in MASK_EXTENSION_PRIORITY else len(MASK_EXTENSION_PRIORITY)
        )

    return sorted(candidates, key=lambda p: (rank(p), p.name))[0]


def file_checksums(records: list[ImageRecord]) -> list[tuple[str | None, str | None]]:
    """(image SHA-256, mask SHA-256) of every record's files; None for a file that is missing or unreadable.

    A record without a mask file (tissue found automatically) gets "" for its mask, as its feature file records.
    """
    # hashlib releases the GIL on large buffers, so threads hash files in parallel.
    with ThreadPoolExecutor(max_workers=4) as pool:
        images = list(pool.map(file_sha256, [r.image_path for r in records]))
        masks = list(pool.map(lambda r: file_sha256(r.mask_path) if r.mask_path else "", records))
    return list(zip(images, masks, strict=True))
