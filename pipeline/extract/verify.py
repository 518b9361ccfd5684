"""``extract.py --verify``: check every file of a cache against its settings and the current data, with no model.

Each image of the data folder is checked the way a resumed extraction would check it (the file opens, has the
current schema, consistent shapes, finite values, the settings of the cache's ``settings.json``, and the checksums of
the current image and mask files); the report lists what extraction would re-embed and why. Nothing is written.
The model's weights are not loaded, so a cache made by other weights under the same name is caught by extraction
itself, which compares every file with the loaded model's checksum; a preprocessing that changed since the cache was
made is named here when it can be known without the weights (an encoder of the table whose preprocessing the table
fixes, or a transformers model whose config is cached).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline import cache
from pipeline.cache import store
from pipeline.cache.claims import dead_temporaries, live_claims
from pipeline.data.records import file_checksums, find_records, resolve_splits, slide_listing
from pipeline.data.tiling import GRID_LAYOUT
from pipeline.embed.loading import predicted_preprocessing
from pipeline.embed.model import slugify
from pipeline.embed.options import PRECISIONS
from pipeline.errors import CacheError
from pipeline.extract.settings import ExtractionSettings
from pipeline.hygiene.checks import QUALITY_VERSION

# What the tile layout before "cover-v1" did, for caches made with it (they have no "grid" attribute).
_OLD_LAYOUT = (
    "its grid started at the image's top-left corner and left up to one tile of each right and bottom edge untiled."
)


@dataclass
class VerificationReport:
    """What ``--verify`` found.

    Attributes:
        cache_dir: The cache folder checked.
        data_dir: The data folder its images were compared with.
        n_images: Images of the requested splits in the data folder.
        n_ok: Images whose file can be trusted as it is.
        to_embed: ``{image_id: reason}`` for the images extraction would (re-)embed.
        skipped: ``{image_id: reason}`` for images extraction skipped as bad input (it retries them on each run).
        orphans: ``{file: problem}`` for cache files whose image is not in the data folder.
        leftovers: Temporary files of stopped writers (the next run deletes them); those of running ones are not
            listed.
        notes: Other remarks (another data folder than the cache's, a running extraction).
    """

    cache_dir: Path
    data_dir: Path
    n_images: int = 0
    n_ok: int = 0
    to_embed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    orphans: dict[str, str] = field(default_factory=dict)
    leftovers: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing would be re-embedded and every cache file belongs to an image of the data folder."""
        return not self.to_embed and not self.orphans

    def text(self) -> str:
        """The printed report: one line per finding, then the verdict."""
        lines = [f"cache: {self.cache_dir}", f"data:  {self.data_dir}", *[f"note: {note}" for note in self.notes]]
        lines.append(
            f"checked {self.n_images} images: {self.n_ok} up to date, {len(self.to_embed)} would be re-embedded, "
            f"{len(self.skipped)} skipped as bad input"
        )
        lines += [f"  re-embed {image_id}: {reason}" for image_id, reason in self.to_embed.items()]
        lines += [f"  skipped  {image_id}: {reason}" for image_id, reason in self.skipped.items()]
        lines += [
            f"  not in the data folder: {name} ({problem}); delete it if the image was removed"
            for name, problem in self.orphans.items()
        ]
        lines += [f"  leftover temporary file {path} (the next run deletes it)" for path in self.leftovers]
        if self.ok:
            lines.append("result: all good, nothing to re-embed.")
        else:
            parts = [f"{len(self.to_embed)} image(s) would be re-embedded: run extract.py with the same flags"]
            parts = parts if self.to_embed else []
            if self.orphans:
                parts.append(f"{len(self.orphans)} file(s) have no image: delete them if their images were removed")
            lines.append(f"result: {'; '.join(parts)}.")
        return "\n".join(lines)


def find_cache_dir(settings: ExtractionSettings) -> Path:
    """The cache folder that ``extract.py`` with these flags writes, found without loading the model.

    ``--out`` may also be a cache folder itself (taken whatever flags made it: its ``settings.json`` says how), or
    a data folder's folder under the root (``<root>/<data key>``); never a folder inside a cache. With
    ``--precision auto`` any precision matches. Caches made before data folders had their own key (directly under
    ``--out``) are found too.

    Raises:
        CacheError: No such cache, or several (one per precision).
    """
    out = Path(settings.out_dir)
    cache.check_out(out)
    if (out / cache.SETTINGS_FILE).is_file():
        return out
    precisions = [settings.precision] if settings.precision != "auto" else [p for p in PRECISIONS if p != "auto"]
    names = [cache.cache_name(slugify(settings.model), settings.tiling, p, settings.tissue, settings.target_mpp)
             for p in precisions]
    # the cache these flags make, then one made before data folders had their own key (directly under --out)
    candidates = [folder for name in names for folder in (cache.cache_dir(out, settings.data_dir, name), out / name)]
    found = [folder for folder in candidates if (folder / cache.SETTINGS_FILE).is_file()]
    if len(found) == 1:
        return found[0]
    if found:
        raise CacheError(
            f"Several caches match these flags: {', '.join(str(p) for p in found)}. Choose one with --precision or "
            "pass --out CACHE_FOLDER."
        )
    present = ", ".join(str(p.relative_to(out)) for p in cache.find_caches(out)) or "none"
    older = [folder.parent / folder.name.replace(f"_{cache.grid_tag()}_", "_") for folder in candidates]
    older = [folder for folder in older if (folder / cache.SETTINGS_FILE).is_file()]
    if older:
        raise CacheError(
            f"No cache for --model {settings.model} with these tiling settings and the current tile layout "
            f"('{GRID_LAYOUT}') under '{out}'. {older[0]} was made with the same flags before it: {_OLD_LAYOUT} "
            f"Run extract.py with these flags to make a new cache, or pass --out {older[0]} to check the old one."
        )
    raise CacheError(
        f"No cache for --model {settings.model} with these tiling settings under '{out}' (looked for "
        f"{' or '.join(names)}; caches there: {present}). Pass the flags of the extraction, or --out CACHE_FOLDER."
    )


def verify_cache(settings: ExtractionSettings) -> VerificationReport:
    """Check every file of the cache that ``settings`` address against its ``settings.json`` and the data folder.

    Args:
        settings: The extraction flags (``--out``, ``--model``, tiling, ``--precision``, ``--data``, ``--split``).

    Returns:
        The report; nothing is written or embedded.

    Raises:
        PipelineError: Bad flags, no such cache, an unreadable ``settings.json``, or a bad data folder.
    """
    settings = settings.resolved()  # --mpp: the tile size it implies
    cache_dir = find_cache_dir(settings)
    expected = cache.read_settings(cache_dir)
    records = find_records(settings.data_dir, settings.split, slides=slide_listing(settings.tissue))
    report = VerificationReport(cache_dir, Path(settings.data_dir).resolve(), len(records))
    recorded = expected.get("data_dir")
    if recorded and Path(recorded) != report.data_dir:
        report.notes.append(f"the cache was made from {recorded}; checked against --data {report.data_dir}")
    for claim in live_claims(cache_dir):
        report.notes.append(
            f"an extraction (shard {claim.get('shard', claim['key'])}, host {claim.get('host', '?')}, pid "
            f"{claim.get('pid', '?')}) is writing this cache now; its report may change"
        )
    expected = _with_current_preprocessing(expected, settings.model, settings.tiling.tile_size, report)
    layout = expected.get("grid")
    if layout != GRID_LAYOUT:
        made = f"with tile layout '{layout}'" if layout else f"before tile layout '{GRID_LAYOUT}' ({_OLD_LAYOUT[:-1]})"
        report.notes.append(f"this cache was made {made}; extract.py now places tiles by '{GRID_LAYOUT}' and writes "
                            "such caches under another name, so the two are never mixed")
    skipped = cache.read_skipped(cache_dir)
    rescore = 0
    for record, (image_sha, mask_sha) in zip(records, file_checksums(records), strict=True):
        path = cache.feature_path(cache_dir, record.image_id)
        status, reason = cache.file_status(path, expected, image_sha, mask_sha, QUALITY_VERSION, warn=False)
        if status != "embed":
            report.n_ok += 1
            rescore += status == "rescore"
        elif not path.is_file() and record.image_id in skipped:
            report.skipped[record.image_id] = f"{skipped[record.image_id].get('reason', '?')} (retried on each run)"
        else:
            report.to_embed[record.image_id] = reason
    if rescore:
        report.notes.append(f"{rescore} file(s) hold hygiene scores of an older version: extract.py with the same "
                            "flags re-scores them without re-embedding")
    known = {record.image_id for record in records}
    for split in resolve_splits(settings.split):
        for path in cache.list_image_files(cache_dir, split):
            if f"{split}/{path.stem}" not in known:
                report.orphans[str(path.relative_to(cache_dir))] = _file_state(path)
    report.leftovers = dead_temporaries(cache_dir)
    return report


def _with_current_preprocessing(expected: dict, model: str, tile_size: int, report: VerificationReport) -> dict:
    """``expected`` with the preprocessing the model would use now, when it is known and differs (with a note)."""
    predicted = predicted_preprocessing(model)
    recorded = expected.get("preprocessing")
    if predicted is None or recorded is None:
        return expected
    now = cache.preprocessing_attribute(predicted, tile_size)
    if now == recorded:
        return expected
    report.notes.append(f"--model {model} now preprocesses tiles as {now}; the cache was made with "
                        f"{recorded}: extract.py re-embeds its files")
    return {**expected, "preprocessing": now}


def _file_state(path: Path) -> str:
    try:
        problem = store.value_problem(store.read_image_features(path))
    except store.FileProblem as exc:
        problem = exc.problem
    return problem or "readable"
