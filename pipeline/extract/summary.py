"""What an extraction run did: counts, skipped images, fallbacks, timings and the quality report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.cache.shards import skip_causes
from pipeline.hygiene.assessment import QUALITY_FILE, QualityReport

MAX_LISTED = 10  # image ids printed before "..."


@dataclass
class ExtractionSummary:
    """What a run did (for one shard: the counts are the shard's)."""

    cache_dir: Path
    n_images: int
    n_embedded: int = 0
    n_reused: int = 0
    n_rescored: int = 0  # of the reused: files whose hygiene scores were recomputed (no re-embedding)
    n_tiles: int = 0
    seconds: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)
    fallbacks: dict[str, str] = field(default_factory=dict)
    quality: QualityReport | None = None
    # seconds of each phase: checksums, embedding (and within it waiting_for_tiles, waiting_for_model), rescoring,
    # quality
    timings: dict[str, float] = field(default_factory=dict)
    shard: str = ""  # "1/4" when this process embedded one shard
    missing: list[str] = field(default_factory=list)  # images of the cache's data folder no shard has embedded yet
    next_step: str = ""  # what the user still has to do, if anything

    def failure(self) -> str:
        """Why this run failed, or "" when it did not.

        A run fails when it embedded nothing and found nothing up to date because every image it tried was skipped.
        """
        if self.n_embedded or self.n_reused or not self.skipped:
            return ""
        every = "all " if len(self.skipped) == self.n_images else ""
        return (f"0 images embedded: {every}{len(self.skipped)} skipped: "
                f"{skip_causes(list(self.skipped.values())).rstrip('.')}. "
                "Fix those files, then run the same command again.")

    def line(self) -> str:
        """One summary line: images, tiles, skipped, time, output; then the quality report and what is missing."""
        rate = self.n_tiles / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"{f'shard {self.shard}: ' if self.shard else ''}"
            f"{self.n_images} images: {self.n_embedded} embedded ({self.n_tiles} tiles, {rate:.1f} tiles/s), "
            f"{self.n_reused} up to date{f' ({self.n_rescored} re-scored)' if self.n_rescored else ''}, "
            f"{len(self.skipped)} skipped, {len(self.fallbacks)} with a fallback tile; "
            f"{self.seconds:.1f} s -> {self.cache_dir}"
        )
        if self.quality:
            text += f"\nquality: {self.quality.summary()} -> {self.cache_dir / QUALITY_FILE}"
        if self.missing:
            text += f"\nnot embedded yet by any shard: {len(self.missing)} image(s): {listed(self.missing)}"
        if self.next_step:
            text += f"\nnext: {self.next_step}"
        return text


def listed(image_ids: list[str]) -> str:
    """The first :data:`MAX_LISTED` ids, comma-separated, with ``...`` when there are more."""
    return ", ".join(image_ids[:MAX_LISTED]) + (" ..." if len(image_ids) > MAX_LISTED else "")
