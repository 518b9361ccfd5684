"""A slide's physical scale from its metadata: micrometres per pixel (MPP) and objective power. Pure functions.

Both libraries give a slide's metadata as a flat name -> value table (OpenSlide strings; tiffslide also numbers and
None). The MPP is taken from the first of these that holds a plausible value:

1. ``openslide.mpp-x`` / ``-y`` (OpenSlide's own reading of the vendor's metadata) or ``tiffslide.mpp-x`` / ``-y``;
2. Aperio's ``MPP`` in the ImageDescription (``aperio.MPP``; also parsed from ``tiff.ImageDescription`` when the
   library did not split it);
3. the TIFF resolution tags ``tiff.XResolution`` / ``tiff.YResolution`` (pixels per unit) with ``tiff.ResolutionUnit``
   centimetre (MPP = 10,000 / resolution) or inch (25,400 / resolution). Unit "none" says nothing about size.

A value outside ``MPP_RANGE`` is not a microscope's (72 or 300 dpi are an image editor's defaults, 353 and 85 um/px)
and counts as missing: the user is then asked for ``--mpp`` rather than given a guess.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping

logger = logging.getLogger(__name__)

MPP_RANGE = (0.01, 20.0)  # um/px: from beyond any scanner's 80x to a 0.5x overview; 1,200 dpi (21 um/px) is out
_PER_UNIT = {"centimeter": 1e4, "centimetre": 1e4, "inch": 25_400.0}
_APERIO_FIELD = re.compile(r"\|\s*(MPP|AppMag)\s*=\s*([0-9.eE+-]+)")


def _number(value: object) -> float | None:
    """A finite float from a property value (str, int or float), else None."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _aperio(properties: Mapping[str, object], name: str) -> float | None:
    """Aperio's ``name`` (MPP or AppMag): the library's split-out property, else parsed from the description."""
    value = _number(properties.get(f"aperio.{name}"))
    if value is None:
        description = str(properties.get("tiff.ImageDescription") or "")
        if description.startswith("Aperio"):
            found = dict(_APERIO_FIELD.findall(description))
            value = _number(found.get(name))
    return value


def _from_resolution(properties: Mapping[str, object]) -> tuple[float, float] | None:
    """(mpp_x, mpp_y) from the TIFF resolution tags and their unit, or None without a physical unit."""
    unit = str(properties.get("tiff.ResolutionUnit") or "").strip().lower()
    per_unit = _PER_UNIT.get(unit)
    x_res, y_res = _number(properties.get("tiff.XResolution")), _number(properties.get("tiff.YResolution"))
    if per_unit is None or not x_res or x_res <= 0:
        return None
    y_res = y_res if y_res and y_res > 0 else x_res
    return per_unit / x_res, per_unit / y_res


def _candidates(properties: Mapping[str, object]) -> list[tuple[str, tuple[float, float] | None]]:
    """Every place an MPP can come from, in order of trust, with what it holds there."""
    found = []
    for library in ("openslide", "tiffslide"):
        x, y = _number(properties.get(f"{library}.mpp-x")), _number(properties.get(f"{library}.mpp-y"))
        found.append((f"{library}.mpp-x", (x, y if y else x) if x else None))
    aperio = _aperio(properties, "MPP")
    found.append(("Aperio MPP", (aperio, aperio) if aperio else None))
    found.append(("TIFF resolution tags", _from_resolution(properties)))
    return found


def mpp_from_properties(properties: Mapping[str, object]) -> tuple[float, float, str] | None:
    """The slide's level-0 (mpp_x, mpp_y) in micrometres per pixel and where they came from, or None.

    Values outside ``MPP_RANGE`` are skipped with a warning (the next source is tried).
    """
    for source, value in _candidates(properties):
        if value is None:
            continue
        if all(MPP_RANGE[0] <= v <= MPP_RANGE[1] for v in value):
            return value[0], value[1], source
        logger.warning(
            "%s gives %.4g x %.4g um/px, outside %g-%g um/px: not a microscope's scale, ignored.",
            source, value[0], value[1], *MPP_RANGE,
        )
    return None


def objective_power(properties: Mapping[str, object]) -> float | None:
    """The scanner's objective power (e.g. 40.0), or None when the metadata do not say.

    From ``openslide.objective-power``, ``tiffslide.objective-power`` or Aperio's ``AppMag``.
    """
    for name in ("openslide.objective-power", "tiffslide.objective-power"):
        value = _number(properties.get(name))
        if value and value > 0:
            return value
    value = _aperio(properties, "AppMag")
    return value if value and value > 0 else None
