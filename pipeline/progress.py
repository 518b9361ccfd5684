"""Progress of a long run: a bar on a terminal, a log line now and then anywhere else.

A bar redrawn into a log file leaves hundreds of carriage-return fragments, so the bar is drawn only when stderr is
a terminal; otherwise the same numbers go to the log every :data:`LOG_EVERY_S` seconds (and at the end).
"""

from __future__ import annotations

import logging
import sys
import time

logger = logging.getLogger(__name__)

LOG_EVERY_S = 30.0  # seconds between progress lines when stderr is not a terminal


def stderr_is_terminal() -> bool:
    """True when stderr is an interactive terminal."""
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None) and stream.isatty())


class Progress:
    """Count finished items and report the rate.

    Args:
        total: Items expected.
        description: What is counted, e.g. ``extract``.
        enabled: False shows nothing at all (``--no-progress``).
        unit: The items' unit, e.g. ``img``.
        bar: Draw a bar (default: when stderr is a terminal); otherwise log a line every :data:`LOG_EVERY_S` s.
    """

    def __init__(self, total: int, description: str, enabled: bool = True, unit: str = "img",
                 bar: bool | None = None) -> None:
        self.total, self.description, self.unit = total, description, unit
        self.enabled = enabled
        self.done = 0
        self.tiles = 0
        self._started = self._logged = time.perf_counter()
        self._bar = None
        if enabled and (stderr_is_terminal() if bar is None else bar):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, unit=unit, desc=description)

    def update(self, items: int = 1, tiles: int = 0) -> None:
        """``items`` more finished, holding ``tiles`` tiles."""
        self.done += items
        self.tiles += tiles
        if self._bar is not None:
            self._bar.update(items)
            self._bar.set_postfix(tiles_per_s=f"{self.rate():.1f}")
        elif self.enabled and time.perf_counter() - self._logged >= LOG_EVERY_S:
            self._log()

    def rate(self) -> float:
        """Tiles per second so far."""
        return self.tiles / max(time.perf_counter() - self._started, 1e-9)

    def close(self) -> None:
        """Remove the bar, or log the last line."""
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.done:
            self._log()

    def _log(self) -> None:
        self._logged = time.perf_counter()
        logger.info("%s: %d/%d %s, %.1f tiles/s", self.description, self.done, self.total, self.unit, self.rate())
