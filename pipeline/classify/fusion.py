"""Several caches of the same images in one run (``classify.py --features A B ...``): the checks and the fusion.

The caches differ in encoder or tiling, never in images: every cache must hold the same train and test images with
the same checksums, so the labels, hygiene flags, duplicate groups and folds (taken from the first cache) hold for
all of them. ``late`` fusion fits the head on each cache in the same folds and averages the image probabilities;
``concat`` fits one image-level head on each image's pooled statistics of every cache side by side. Each cache
alone is kept as a member of the result, scored on the same folds, so the report compares like with like.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline import cache
from pipeline.cache.featureset import FeatureSet
from pipeline.cache.schema import PIXEL_CHECKSUMS
from pipeline.classify.classifier import FUSION_MODES, FusedClassifier, average_proba
from pipeline.classify.evaluation import Scheme
from pipeline.classify.metrics import fold_weighted_f1, score_predictions
from pipeline.classify.results import HeadResult
from pipeline.errors import CacheError, ConfigError
from pipeline.heads.registry import head_entry

logger = logging.getLogger(__name__)

# what makes two cached images the same image; each compared where both files carry it (PIXEL_CHECKSUMS: a cache
# written before pixels_xxh3 has the older kind)
CHECKSUMS = ("image_sha256", *PIXEL_CHECKSUMS)


def check_fusion(mode: str, heads: Sequence[str], scheme: Scheme) -> list[str]:
    """The heads a fused run can run: all of them for late fusion; concat leaves bag heads out of ``--head all``.

    Raises:
        ConfigError: The mode is unknown, or concat meets ``--level tile`` or is asked for a bag head alone.
    """
    if mode not in FUSION_MODES:
        raise ConfigError(f"--fusion must be one of {', '.join(FUSION_MODES)}. Got '{mode}' instead.")
    if mode != "concat":
        return list(heads)
    kept = [name for name in heads if not head_entry(name).bags]
    if not kept:
        raise ConfigError(f"--fusion concat joins image-level features, but --head {' '.join(heads)} takes each image "
                          "as a bag of tiles. Use --fusion late, or --head logreg, lgbm or mlp.")
    if scheme.level != "image":
        raise ConfigError(f"--fusion concat joins image-level features (each cache's tiles pooled per image); --level "
                          f"{scheme.level} trains on tiles, which differ between caches. Add --level image, or use "
                          "--fusion late.")
    if len(kept) < len(heads):
        logger.warning("--fusion concat joins image-level features: %s (bags of tiles) left out; --fusion late runs "
                       "it.", ", ".join(name for name in heads if name not in kept))
    return kept


def check_distinct(cache_dirs: Sequence[Path], settings: Sequence[dict]) -> None:
    """Refuse the same cache (or two caches of identical settings) twice: fusing a cache with itself adds nothing.

    Raises:
        ConfigError: Two ``--features`` values name the same cache or caches of the same encoder and tiling.
    """
    seen: dict[str, Path] = {}
    for folder, values in zip(cache_dirs, settings, strict=True):
        key = repr(sorted(cache.identity(values).items()))
        if key in seen:
            raise ConfigError(f"--features names '{seen[key]}' and '{folder}', which hold embeddings of the same "
                              "encoder and tiling settings. Fuse caches of different encoders or tile sizes.")
        seen[key] = folder


def align_images(
    first: FeatureSet | None, other: FeatureSet | None, first_dir: Path, other_dir: Path, split: str,
    other_skipped: dict[str, dict],
) -> FeatureSet | None:
    """``other``'s images in ``first``'s order, after checking both caches hold the same images of ``split``.

    Args:
        first, other: One split of the first and of another cache (None: the cache has none of that split).
        first_dir, other_dir: The caches, for the messages. other_skipped: ``other``'s skipped.json.

    Raises:
        CacheError: An image is in one cache and not the other, or has other checksums (image or pixels) there;
            the message names the first such image and both caches.
    """
    first_ids = first.image_ids if first is not None else []
    other_ids = other.image_ids if other is not None else []
    position = {image_id: i for i, image_id in enumerate(other_ids)}
    for image_id, here, there in [(i, first_dir, other_dir) for i in first_ids if i not in position] + [
            (i, other_dir, first_dir) for i in other_ids if i not in set(first_ids)]:
        skipped = other_skipped.get(image_id) if there == other_dir else None
        why = f" (extraction skipped it there: {skipped.get('reason')})" if skipped else ""
        raise CacheError(f"{image_id} is in '{here}' but missing from '{there}'{why}; fused caches must hold the same "
                         f"{split} images. Run extract.py on the same data folder for every --features cache.")
    if other is None or first is None:
        return other
    aligned = other.subset(np.array([position[i] for i in first_ids], dtype=np.int64))
    for key in CHECKSUMS:
        for image_id, mine, theirs in zip(first_ids, first.attr(key), aligned.attr(key), strict=True):
            if mine is not None and theirs is not None and mine != theirs:
                raise CacheError(f"{image_id} is a different image in '{first_dir}' and '{other_dir}' ({key} "
                                 "differs); fused caches must hold the same images. Run extract.py again on the same "
                                 "data folder for both.")
    return aligned


def cache_labels(cache_dirs: Sequence[Path]) -> list[str]:
    """A short distinct name per cache: its folder name (with its parent's, or its position, when names repeat)."""
    names = [Path(folder).name for folder in cache_dirs]
    if len(set(names)) < len(names):
        names = [f"{Path(folder).parent.name}/{Path(folder).name}" for folder in cache_dirs]
    if len(set(names)) < len(names):
        names = [f"{k}:{name}" for k, name in enumerate(names, start=1)]
    return names


def fused_run_name(data_name: str, cache_dirs: Sequence[Path], mode: str, head: str) -> str:
    """``<data>_fused-<mode>_<head>_<A>+<B>``: A, B the parts of the cache names that differ (e.g. t224_s224).

    Cache names are ``<model>_t<tile>_s<stride>_c<coverage>_n<max>_<precision>``; when their parts do not line up
    (another number of parts), the whole names are used.
    """
    parts = [Path(folder).name.split("_") for folder in cache_dirs]
    if len({len(p) for p in parts}) == 1:
        differ = [i for i in range(len(parts[0])) if len({p[i] for p in parts}) > 1]
        short = ["_".join(p[i] for i in differ) for p in parts] if differ else [Path(f).name for f in cache_dirs]
    else:
        short = [Path(folder).name for folder in cache_dirs]
    return f"{data_name}_fused-{mode}_{head}_{'+'.join(short)}"


def fuse_late(
    name: str, members: list[HeadResult], labels: np.ndarray, classes: list[str], groups: np.ndarray, seed: int,
    seeds: list[int], identities: list[dict],
) -> HeadResult:
    """The mean of the members' image probabilities (out-of-fold, repeats and test), scored like one head.

    Args:
        name: The head. members: The head on each cache alone, same folds, in ``--features`` order.
        labels: (n_train,) class indices. classes: Class names. groups: (n_train,) duplicate groups.
        seed: Seed of the bootstrap. seeds: Every repeat's seed. identities: Each cache's identity, in order.
    """
    first = members[0]
    oof = average_proba([m.oof_proba for m in members])
    test = average_proba([m.test_proba for m in members]) if first.test_proba is not None else None
    repeats = [average_proba([m.repeat_proba[r] for m in members]) for r in range(len(first.repeat_proba))]
    metrics = score_predictions(labels, oof, fold_weighted_f1(labels, oof, first.folds), classes, groups, seed,
                                repeats, seeds)
    classifier = FusedClassifier("late", [m.classifier for m in members], list(identities))
    return HeadResult(
        name, metrics, oof, first.oof_tile_proba, first.folds, test, first.test_tile_proba, classifier,
        sum(m.seconds for m in members), first.oof_tile_attention, first.test_tile_attention, repeats, members,
    )


def fuse_concat(
    joined: HeadResult, members: list[HeadResult], identities: list[dict], pool: Sequence[str]
) -> HeadResult:
    """The head fitted on the concatenated image rows, as the fused result next to its members.

    Args:
        joined: The head cross-validated and fitted on :func:`pipeline.cache.concat_image_features` rows.
        members: The head on each cache alone (image level, same folds), in ``--features`` order.
        identities: Each cache's identity, in order. pool: The statistics pooled from each cache's tiles.
    """
    first = members[0]
    classifier = FusedClassifier("concat", [joined.classifier], list(identities), tuple(pool))
    # the joined rows have one "tile" per image: the tile arrays shown (vote maps) are the first cache's
    return replace(joined, oof_tile_proba=first.oof_tile_proba, test_tile_proba=first.test_tile_proba,
                   classifier=classifier, seconds=joined.seconds + sum(m.seconds for m in members), members=members)


def concat_scheme(scheme: Scheme) -> Scheme:
    """The scheme of the head on the concatenated rows: image level, the mean of each one-row image."""
    return Scheme("image", scheme.vote, ("mean",))
