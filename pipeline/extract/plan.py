"""Everything an extraction run needs, resolved once from its settings before any image is decoded."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline import cache
from pipeline.cache.schema import run_attributes
from pipeline.data.records import ImageRecord, find_records, slide_listing
from pipeline.embed.loading import load_model
from pipeline.embed.model import LoadedModel
from pipeline.embed.runtime import default_batch_size, resolve_compile, resolve_device, resolve_precision
from pipeline.extract.launch import Launch, local_device, resolve_shard
from pipeline.extract.settings import ExtractionSettings, default_workers, slide_target_mpp
from pipeline.extract.sharding import Shard, shard_records

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractionPlan:
    """A run's settings with every ``auto`` and default resolved.

    Attributes:
        settings: The settings as given, validated, with ``mpp`` resolved into the tile size
            (:meth:`ExtractionSettings.resolved`).
        records: The images of the requested splits, sorted by split and name.
        shard: The shard this process embeds (``Shard(0, 1)``: all of them).
        shard_records: The images of that shard, in the order of ``records``.
        launch: How torchrun started this process, or None.
        model: The loaded, frozen model.
        device: Where the model runs.
        precision: fp32, bf16, fp16 or bf16-weights.
        compile: Whether the model is compiled.
        batch_size: Tiles per forward pass.
        workers: Decoding processes (0: in the main process).
        run_attrs: The attributes every feature file of the cache carries (see
            :func:`pipeline.cache.schema.run_attributes`).
        cache_dir: ``<out>/<data folder key>/<cache name>`` (:func:`pipeline.cache.folder.cache_dir`).
        target_mpp: Micrometres per pixel of slide tiles (:func:`~pipeline.extract.settings.slide_target_mpp`);
            None: slides are tiled at the tile size in level-0 pixels.
    """

    settings: ExtractionSettings
    records: list[ImageRecord]
    shard: Shard
    shard_records: list[ImageRecord]
    launch: Launch | None
    model: LoadedModel
    device: torch.device
    precision: str
    compile: bool
    batch_size: int
    workers: int
    run_attrs: dict
    cache_dir: Path
    target_mpp: float | None = None

    @property
    def tile_shape(self) -> tuple[int, int, int]:
        """(S, S, 3) of every tile the model gets: cut at the tile size, resized by the workers to the encoder side."""
        size = self.model.preprocessing.resized_side
        return (size, size, 3)


def plan_extraction(
    settings: ExtractionSettings, model: LoadedModel | None = None, launch: Launch | None = None
) -> ExtractionPlan:
    """Check the settings and the data folder, load the model, and resolve shard, device, precision and the rest.

    The cheap checks (flags, data folder) come before the model is loaded, so a typo fails in a second.

    Args:
        settings: The run's settings.
        model: An already loaded model (tests, benchmarks); loaded from ``settings.model`` when None.
        launch: How torchrun started this process (:func:`~pipeline.extract.launch.torchrun_launch`), or None.

    Raises:
        PipelineError: Bad settings, data folder or model.
    """
    settings = settings.resolved()  # validated; --mpp turned into the tile size the encoder's magnification needs
    shard = resolve_shard(settings.shard, launch)
    records = find_records(settings.data_dir, settings.split, slides=slide_listing(settings.tissue))
    cache.extraction_cache_dir(settings.out_dir, settings.data_dir)  # a wrong --out fails before the model loads
    device = local_device(resolve_device(settings.device), launch)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # pinned buffers and caches go to this rank's GPU, not to cuda:0
    model = model or load_model(settings.model)
    precision = resolve_precision(settings.precision, device, model.module)
    name = cache.cache_name(model.slug, settings.tiling, precision, settings.tissue, settings.target_mpp)
    unmasked = [record.image_path.name for record in records if record.kind == "unmasked_image"]
    if unmasked and settings.tissue == "auto":  # before slides were read these were skipped: say what happens now
        logger.warning("%d image(s) have no mask file (e.g. %s): their tissue is found automatically; --tissue mask "
                       "skips them instead", len(unmasked), unmasked[0])
    target_mpp = slide_target_mpp(settings.model, settings.target_mpp)
    if target_mpp is None and any(record.kind == "slide" for record in records):
        logger.info("%s is not in the encoder table and --target-mpp is not given: slides are tiled at --tile-size "
                    "%d level-0 pixels, whatever their magnification", settings.model, settings.tiling.tile_size)
    return ExtractionPlan(
        settings=settings,
        records=records,
        shard=shard,
        shard_records=shard_records(records, shard),
        launch=launch,
        model=model,
        device=device,
        precision=precision,
        compile=resolve_compile(settings.compile, device, precision),
        batch_size=settings.batch_size or default_batch_size(device),
        workers=default_workers(device.type, launch.local_world_size if launch else 1)
        if settings.workers is None
        else settings.workers,
        run_attrs=run_attributes(model, settings.tiling, precision, settings.tissue, settings.target_mpp),
        cache_dir=cache.extraction_cache_dir(settings.out_dir, settings.data_dir, name),
        target_mpp=target_mpp,
    )
