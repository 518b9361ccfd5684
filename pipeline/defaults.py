"""The defaults more than one stage shares, written once: the data folder, the cache root and the tile size.

Every settings dataclass, the cache lookup and the report read them from here (a test counts the literals).
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_DATA_DIR = Path("data")  # the challenge layout: train_data/, test_data/, train_labels.csv
DEFAULT_FEATURES_DIR = Path("features")  # the cache root: <root>/<data folder key>/<cache name>/
DEFAULT_TILE_SIZE = 224  # tile side in original image pixels (most encoders' input size)
