"""What an extraction run did: counts, skipped images, fallbacks, timings and the quality report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.hygiene.assessment import QUALITY_FILE, QualityReport


@dataclass
class ExtractionSummary:
    """What a run did."""

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

    def line(self) -> str:
        """One summary line: images, tiles, skipped, time, output."""
        rate = self.n_tiles / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.n_images} images: {self.n_embedded} embedded ({self.n_tiles} tiles, {rate:.1f} tiles/s), "
            f"{self.n_reused} up to date{f' ({self.n_rescored} re-scored)' if self.n_rescored else ''}, "
            f"{len(self.skipped)} skipped, {len(self.fallbacks)} with a fallback tile; "
            f"{self.seconds:.1f} s -> {self.cache_dir}"
            + (f"\nquality: {self.quality.summary()} -> {self.cache_dir / QUALITY_FILE}" if self.quality else "")
        )
