"""The data side of extraction: decode one image, read its mask, plan and cut its tiles (in DataLoader workers)."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from pipeline.cache.folder import write_tissue_mask
from pipeline.data.images import file_sha256, read_image, read_mask
from pipeline.data.records import ImageRecord
from pipeline.data.slide_input import coords_attributes, image_tissue, read_slide_input
from pipeline.data.slides import Slide
from pipeline.data.tiling import TilingSettings, cut_tiles, plan_tiles, resize_tiles
from pipeline.errors import ImageReadError
from pipeline.hygiene.checks import image_quality
from pipeline.hygiene.slide_sheet import SlideView, small_view

logger = logging.getLogger(__name__)

SLOT_BYTES_PER_WORKER = 128 * 2**20  # shared memory one worker keeps for reuse (about 44 images of 19 tiles)
Ticket = tuple[int, int, int]  # (worker id, the worker's item number, its slot or -1)


class TileSlots:
    """Shared-memory buffers that carry tiles from the decoding workers to the main process, reused image after image.

    A worker's tensor goes to the main process through shared memory: a new one per image costs the worker a new
    segment whose every page the kernel zero-fills on first touch (about 8 ms of CPU for 19 tiles of 224 px on the
    2-core machine here, as much as decoding the image's mask and hashing it) and the main process a new mapping.
    Instead each worker cuts an image's tiles into one of its own buffers (slots), which stay mapped in both processes.

    A slot is reused only once the main process has embedded the last item that used it: the main process raises
    ``released[w]`` past each item of worker ``w`` whose features are out (:meth:`release`); a worker's items are
    embedded in order, so every item below it is done too. A worker never waits: without a free slot, beyond
    :data:`SLOT_BYTES_PER_WORKER` or outside a worker it gets a fresh tensor, as before.

    Args:
        workers: DataLoader workers (0: no worker, no slot).
    """

    def __init__(self, workers: int) -> None:
        self.released = torch.zeros(max(1, workers), dtype=torch.int64)  # (workers,) item numbers done
        if workers:
            self.released.share_memory_()  # before the workers start, so that they see the main process's writes
        self._slots: list[tuple[torch.Tensor, int]] = []  # in a worker: (buffer, the item that last used it)
        self._items = 0
        self._view: tuple[int, np.ndarray] | None = None  # (pid, numpy view of released): see _released

    def _released(self) -> np.ndarray:
        """``released`` as numpy: this process's view of the shared memory, made once per process.

        Indexing the tensor from Python cost the main process 0.5 ms per image (a tenth of its time per one-tile
        image). Per process, since a spawned worker unpickles the tensor, not the view.
        """
        if self._view is None or self._view[0] != os.getpid():
            self._view = (os.getpid(), self.released.numpy())
        return self._view[1]

    def buffer(self, n: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, Ticket | None]:
        """(n, *shape) uint8 to fill with one image's tiles, and the ticket to :meth:`release` once it is embedded."""
        info = get_worker_info()
        if info is None:
            return torch.empty((n, *shape), dtype=torch.uint8), None
        item, self._items = self._items, self._items + 1
        done = int(self._released()[info.id])
        for index, (slot, last) in enumerate(self._slots):
            if last < done and len(slot) >= n and tuple(slot.shape[1:]) == tuple(shape):
                self._slots[index] = (slot, item)
                return slot[:n], (info.id, item, index)
        held = sum(slot.numel() for slot, _ in self._slots)
        if n and held + n * int(np.prod(shape)) <= SLOT_BYTES_PER_WORKER:
            try:
                slot = torch.empty((n, *shape), dtype=torch.uint8).share_memory_()
            except RuntimeError:  # shared memory full (a small /dev/shm): the fresh tensor below fails or not as before
                logger.debug("no shared memory for a tile slot", exc_info=True)
            else:
                self._slots.append((slot, item))
                return slot, (info.id, item, len(self._slots) - 1)
        return torch.empty((n, *shape), dtype=torch.uint8), (info.id, item, -1)

    def release(self, ticket: Ticket | None) -> None:
        """In the main process: the item of ``ticket`` is embedded, its slot may be filled again."""
        if ticket is not None:
            worker, item, _ = ticket
            released = self._released()
            if released[worker] < item + 1:
                released[worker] = item + 1


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
        record = self.records[position]
        try:
            return self._load(position, record)
        except ImageReadError as exc:
            return ImageFailure(position, str(exc))
        except (MemoryError, RuntimeError, ValueError, OSError) as exc:
            # One broken image must not end a long run; the reason carries the exception for a bug report.
            logger.debug("unexpected failure on %s", record.image_path, exc_info=True)
            return ImageFailure(position, f"{record.image_path}: unexpected {type(exc).__name__}: {exc}")

    def _load(self, position: int, record: ImageRecord) -> ImageTiles:
        if record.kind == "slide":
            return self._load_slide(position, record)
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
        if self.tissue == "all":  # a mask file is not used, but its checksum is what resume compares
            inside = np.ones((height, width), bool)
            mask_sha = (file_sha256(record.mask_path) or "") if record.mask_path else ""
        elif record.mask_path is None:
            inside, mask_sha = image_tissue(image.pixels, self.input_mpp), ""
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
            "pixels_sha256": image.pixels_sha256,
            "mask_sha256": mask_sha,
            "mask_fraction": np.count_nonzero(inside) / inside.size,  # = inside.mean(), 10x cheaper
            "fallback": plan.fallback,
        }
        if self.quality:
            attrs.update(image_quality(image.pixels, inside))
        side = self.resize[0] if self.resize is not None else self.tiling.tile_size
        coords_attrs = coords_attributes(side, self.tiling.tile_size, (width, height), self.input_mpp, None,
                                         step0=self.tiling.step)
        return self._tiles(position, tiles, plan.coords, plan.coverage, attrs, plan.note, coords_attrs)

    def _load_slide(self, position: int, record: ImageRecord) -> ImageTiles:
        side, resample = self.resize if self.resize is not None else (self.tiling.tile_size, "bilinear")
        held: list[tuple[torch.Tensor, Ticket | None]] = []

        def allocate(n: int) -> np.ndarray:  # tiles are read straight into what goes to the main process
            held.append(self.slots.buffer(n, (side, side, 3)) if self.slots else (torch.empty((n, side, side, 3),
                                                                                              dtype=torch.uint8), None))
            return held[-1][0].numpy()

        with Slide(record.image_path, mpp=self.input_mpp) as slide:
            read = read_slide_input(slide, self.tissue, self.target_mpp, side, resample, self.tiling, record.image_id,
                                    allocate)
            level0, power = slide.dimensions, slide.objective_power
        found, plan = read.found, read.plan
        write_tissue_mask(self.tissue_dir, record.image_id, found.tissue)
        attrs = {
            "image_width": level0[0],
            "image_height": level0[1],
            "image_sha256": file_sha256(record.image_path) or "",
            # a slide's pixels are never decoded whole: its thumbnail's stand for them (hygiene's exact duplicates)
            "pixels_sha256": hashlib.sha256(np.ascontiguousarray(found.thumbnail).data).hexdigest(),
            "mask_sha256": "",
            "mask_fraction": float(found.tissue.mean()),
            "fallback": plan.fallback,
        }
        if self.quality:  # on the thumbnail, the slide's only whole picture
            attrs.update(image_quality(found.thumbnail, found.tissue))
        step0 = None if self.tiling.step == self.tiling.tile_size else round(
            plan.size0 * self.tiling.step / self.tiling.tile_size)
        coords_attrs = coords_attributes(side, plan.size0, level0, read.mpp, read.target_mpp, power, step0)
        view = small_view(record.image_path.name, found, plan)
        tiles, ticket = held[-1]
        return ImageTiles(position, tiles, plan.coords.astype(np.int32), plan.coverage, attrs, plan.note, ticket,
                          coords_attrs, view)

    def _tiles(self, position: int, tiles: np.ndarray, coords: np.ndarray, coverage: np.ndarray, attrs: dict,
               note: str, coords_attrs: dict) -> ImageTiles:
        """The item, its tiles copied into a reused shared-memory slot when there is one."""
        if self.slots is None:
            return ImageTiles(position, torch.from_numpy(tiles), coords, coverage, attrs, note, None, coords_attrs)
        buffer, ticket = self.slots.buffer(len(tiles), tiles.shape[1:])
        np.copyto(buffer.numpy(), tiles)
        return ImageTiles(position, buffer, coords, coverage, attrs, note, ticket, coords_attrs)
