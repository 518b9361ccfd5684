"""The data side of extraction: decode one image, read its mask, plan and cut its tiles (in DataLoader workers)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from pipeline.cache.folder import write_tissue_mask
from pipeline.data import slide_input
from pipeline.data.images import file_sha256, pixels_xxh3, read_image, read_mask
from pipeline.data.records import ImageRecord
from pipeline.data.slides import Slide
from pipeline.data.tiling import TilingSettings, cut_tiles, plan_tiles, resize_tiles
from pipeline.errors import ImageReadError
from pipeline.extract.slots import Ticket, TileSlots
from pipeline.hygiene.checks import image_quality
from pipeline.hygiene.slide_sheet import SlideView, small_view
from pipeline.hygiene.slide_stats import slide_statistics

logger = logging.getLogger(__name__)

# A slide's tiles go to the main process in items of at most this many (37 MiB at 224 px): memory is bounded by
# chunks, not by slides (a 40,960-px slide covered with tissue holds ~6,000 20x tiles, 0.9 GB).
SLIDE_CHUNK_TILES = 256
_NO_COORDS, _NO_COVERAGE = np.empty((0, 2), np.int32), np.empty(0, np.float32)


@dataclass
class ImageTiles:
    """One image's tiles, ready for the model.

    Attributes:
        position: Index of the image in the dataset's record list.
        tiles: (n, S, S, 3) uint8 (S: the encoder's resize side), kept as uint8 until the normalisation on the
            device.
        coords: (n, 2) int32 (x, y).
        coverage: (n,) float32.
        image_attrs: Per-image attributes for the cache file (size, checksums, mask fraction, fallback).
        note: For a fallback tile, what happened and what to change (:attr:`pipeline.data.tiling.TilePlan.note`).
        ticket: Where ``tiles`` live (:class:`TileSlots`); hand it back to :meth:`TileSlots.release` once embedded.
        coords_attrs: Attributes of the ``coords`` dataset (TRIDENT's tile size and scale, the MPPs used).
        view: A slide's panel of the slides' contact sheet (small thumbnail, tissue, tiles), else None.
        start: Row of the image's tiles that ``tiles[0]`` is: a slide comes in chunks (items of at most
            :data:`SLIDE_CHUNK_TILES`); ``coords``, ``coverage`` and the attributes come with its first (start 0)
            and are empty in the others.
        total: The image's tile count over all its chunks (None: ``len(tiles)``, one item).
    """

    position: int
    tiles: torch.Tensor
    coords: np.ndarray
    coverage: np.ndarray
    image_attrs: dict
    note: str = ""
    ticket: Ticket | None = None
    coords_attrs: dict = field(default_factory=dict)
    view: SlideView | None = None
    start: int = 0
    total: int | None = None

    @property
    def n_tiles(self) -> int:
        """Tiles of the whole image (all its chunks)."""
        return len(self.tiles) if self.total is None else self.total


@dataclass
class ImageFailure:
    """An image that cannot be used, with the reason (file, problem, fix)."""

    position: int
    reason: str


def keep_as_is(item: object) -> object:
    """DataLoader collate function: one image per item, no collation (module level so workers can pickle it)."""
    return item


class TileDataset(Dataset):
    """Map an index to an :class:`ImageTiles` (or an :class:`ImageFailure`, never an exception)."""

    def __init__(
        self, records: Sequence[ImageRecord], tiling: TilingSettings, max_pixels: int, quality: bool = True,
        slots: TileSlots | None = None, resize: tuple[int, str] | None = None, tissue: str = "mask",
        target_mpp: float | None = None, input_mpp: float | None = None, tissue_dir: Path | None = None,
    ) -> None:
        self.records = list(records)
        self.tiling = tiling
        self.max_pixels = max_pixels
        self.quality = quality  # the cheap hygiene checks (stain scores, perceptual hashes)
        self.slots = slots  # reused shared-memory buffers for the tiles (None: a new tensor per image)
        # (side, filter): tiles of another size are resized here with Pillow, as the encoder's authors resize
        self.resize = resize
        # --tissue, the MPP of slide tiles, --mpp (overrides a slide's metadata), where the masks found are saved
        self.tissue, self.target_mpp, self.input_mpp, self.tissue_dir = tissue, target_mpp, input_mpp, tissue_dir

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, position: int) -> ImageTiles | ImageFailure:
        """One image's (or a whole slide's) tiles in one item; the loop reads slides in chunks (:meth:`items`)."""
        record = self.records[position]
        if record.kind == "slide":
            return next(self.slide_chunks(position, chunk_tiles=0))
        try:
            return self._load(position, record)
        except (ImageReadError, MemoryError, RuntimeError, ValueError, OSError) as exc:
            return self._failure(position, record, exc)

    def items(self, positions: Sequence[int]) -> Iterator[ImageTiles | ImageFailure]:
        """The items of ``positions`` in order: one per image, a slide's in chunks (:meth:`slide_chunks`)."""
        for position in positions:
            if self.records[position].kind == "slide":
                yield from self.slide_chunks(position)
            else:
                yield self[position]

    @staticmethod
    def _failure(position: int, record: ImageRecord, exc: Exception) -> ImageFailure:
        if isinstance(exc, ImageReadError):
            return ImageFailure(position, str(exc))
        # One broken image must not end a long run; the reason carries the exception for a bug report.
        logger.debug("unexpected failure on %s", record.image_path, exc_info=True)
        return ImageFailure(position, f"{record.image_path}: unexpected {type(exc).__name__}: {exc}")

    def _load(self, position: int, record: ImageRecord) -> ImageTiles:
        if record.mask_path is None and self.tissue == "mask":
            expected = record.image_path.name.replace("img_", "mask_", 1)
            # A test image must stay: removing it would drop it from the submission.
            fix = (
                "Add the mask; until then the image gets no features and the submission gives it the majority class."
                if record.split == "test"
                else "Add the mask, or remove the image from the folder."
            )
            raise ImageReadError(
                f"{record.image_path}: no mask found (expected {expected} or another image extension next to it). {fix}"
            )
        image = read_image(record.image_path, self.max_pixels)
        height, width = image.pixels.shape[:2]
        detector = {}  # tiles on detected tissue: resume compares the detector (cache.stale_reason)
        if self.tissue == "all":  # a mask file is not used, but its checksum is what resume compares
            inside = np.ones((height, width), bool)
            mask_sha = (file_sha256(record.mask_path) or "") if record.mask_path else ""
        elif record.mask_path is None:
            inside, mask_sha = slide_input.image_tissue(image.pixels, self.input_mpp), ""
            detector = {"tissue_detector": slide_input.tissue_detector()}
            if not inside.any():
                raise ImageReadError(f"{record.image_path}: no tissue was found on it (no mask file beside it). Add "
                                     "its mask, or pass --tissue all to tile the whole image.")
            write_tissue_mask(self.tissue_dir, record.image_id, inside)
        else:
            mask = read_mask(record.mask_path, (width, height), self.max_pixels)
            inside, mask_sha = mask.inside, mask.file_sha256
        plan = plan_tiles(inside, self.tiling, record.image_id)
        tiles = cut_tiles(image.pixels, plan.coords, self.tiling.tile_size)
        if self.resize is not None:
            tiles = resize_tiles(tiles, *self.resize)
        attrs = {
            "image_width": width,
            "image_height": height,
            "image_sha256": image.file_sha256,
            "pixels_xxh3": image.pixels_xxh3,
            "mask_sha256": mask_sha,
            "mask_fraction": np.count_nonzero(inside) / inside.size,  # = inside.mean(), 10x cheaper
            "fallback": plan.fallback,
            **detector,
        }
        if self.quality:
            attrs.update(image_quality(image.pixels, inside))
        side = self.resize[0] if self.resize is not None else self.tiling.tile_size
        coords_attrs = slide_input.coords_attributes(side, self.tiling.tile_size, (width, height), self.input_mpp,
                                                     None, step0=self.tiling.step)
        return self._tiles(position, tiles, plan.coords, plan.coverage, attrs, plan.note, coords_attrs)

    def slide_chunks(self, position: int, chunk_tiles: int | None = None) -> Iterator[ImageTiles | ImageFailure]:
        """A slide's tiles in items of at most ``chunk_tiles`` (None: :data:`SLIDE_CHUNK_TILES`; 0: all at once).

        The slide is opened and planned once (thumbnail, tissue, tile corners); then each chunk is read into its
        own buffer and handed on, so a worker holds one chunk, never a slide's tiles. The first item carries the
        whole slide's coords, coverage and attributes; every item says its first row (``start``) and the slide's
        tile count (``total``). A slide that fails (even after some chunks) ends with an :class:`ImageFailure`.
        """
        record = self.records[position]
        chunk = SLIDE_CHUNK_TILES if chunk_tiles is None else chunk_tiles
        side, resample = self.resize if self.resize is not None else (self.tiling.tile_size, "bilinear")
        try:
            with Slide(record.image_path, mpp=self.input_mpp) as slide:
                mask = None if record.mask_path is None or self.tissue == "all" else slide_input.read_slide_mask(
                    record.mask_path, slide.dimensions, self.max_pixels)
                read = slide_input.plan_slide_input(slide, self.tissue, self.target_mpp, side, self.tiling,
                                                    record.image_id, mask)
                found, plan, total = read.found, read.plan, len(read.plan.coords)
                write_tissue_mask(self.tissue_dir, record.image_id, found.tissue)
                first = self._slide_item(position, record, read, slide.dimensions, slide.objective_power, side)
                for start in range(0, total, chunk or total):
                    count = min(total - start, chunk or total)
                    tiles, ticket = self.slots.buffer(count, (side, side, 3)) if self.slots else (
                        torch.empty((count, side, side, 3), dtype=torch.uint8), None)
                    slide_input.read_slide_tiles(slide, plan.coords[start : start + count], plan.size0,
                                                 tiles.numpy(), resample)
                    tiles = self.slots.carried(tiles, ticket) if self.slots else tiles
                    if start == 0:
                        first.tiles, first.ticket, first.total = tiles, ticket, total
                        yield first
                    else:
                        yield ImageTiles(position, tiles, _NO_COORDS, _NO_COVERAGE, {}, ticket=ticket, start=start,
                                         total=total)
        except (ImageReadError, MemoryError, RuntimeError, ValueError, OSError) as exc:
            yield self._failure(position, record, exc)

    def _slide_item(self, position: int, record: ImageRecord, read: slide_input.SlideInput, level0: tuple[int, int],
                    power: float | None, side: int) -> ImageTiles:
        """A slide's first item without its tiles: coords, coverage, file and ``coords`` attributes, its panel."""
        found, plan = read.found, read.plan
        attrs = {
            "image_width": level0[0],
            "image_height": level0[1],
            "image_sha256": file_sha256(record.image_path) or "",
            # a slide's pixels are never decoded whole: its thumbnail's stand for them (hygiene's exact duplicates)
            "pixels_xxh3": pixels_xxh3(found.thumbnail),
            # a mask file's checksum is what resume compares (also under --tissue all, as for images)
            "mask_sha256": (file_sha256(record.mask_path) or "") if record.mask_path else "",
            "mask_fraction": float(found.tissue.mean()),
            "fallback": plan.fallback,
        }
        if self.tissue != "all" and record.mask_path is None:  # tiles on detected tissue: resume compares the
            attrs["tissue_detector"] = slide_input.tissue_detector()  # detector (cache.stale_reason)
        if self.quality:  # on the thumbnail, the slide's only whole picture
            attrs.update(image_quality(found.thumbnail, found.tissue))
            if "tissue_detector" in attrs:  # the detector's tissue and pen (else the cache report finds them)
                attrs.update(slide_statistics(found))
        step0 = None if self.tiling.step == self.tiling.tile_size else round(
            plan.size0 * self.tiling.step / self.tiling.tile_size)
        coords_attrs = slide_input.coords_attributes(side, plan.size0, level0, read.mpp, read.target_mpp, power, step0)
        view = small_view(record.image_path.name, found, plan)
        return ImageTiles(position, torch.empty(0, dtype=torch.uint8), plan.coords.astype(np.int32), plan.coverage,
                          attrs, plan.note, None, coords_attrs, view)

    def _tiles(self, position: int, tiles: np.ndarray, coords: np.ndarray, coverage: np.ndarray, attrs: dict,
               note: str, coords_attrs: dict) -> ImageTiles:
        """The item, its tiles copied into a reused shared-memory slot when there is one."""
        if self.slots is None:
            return ImageTiles(position, torch.from_numpy(tiles), coords, coverage, attrs, note, None, coords_attrs)
        buffer, ticket = self.slots.buffer(len(tiles), tiles.shape[1:])
        np.copyto(buffer.numpy(), tiles)
        return ImageTiles(position, self.slots.carried(buffer, ticket), coords, coverage, attrs, note, ticket,
                          coords_attrs)


class TileStream(IterableDataset):
    """The DataLoader's view of a :class:`TileDataset`: each worker yields its share of the items, slides in chunks.

    Worker ``w`` of ``W`` takes images ``w, w + W, ...``, the order a map-style loader gives; a slide's chunks are
    read one after another by the same worker, so the slide is opened and planned once.
    """

    def __init__(self, dataset: TileDataset) -> None:
        self.dataset = dataset

    def __iter__(self) -> Iterator[ImageTiles | ImageFailure]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return self.dataset.items(range(worker, len(self.dataset), workers))
