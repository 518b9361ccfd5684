"""The feature cache: one folder per data folder, model and tiling setting, one HDF5 file per image.

``pipeline.cache.store`` is the only module that touches h5py; the file schema is :mod:`pipeline.cache.schema`.
"""

from pipeline.cache.featureset import FeatureSet, concat_image_features, load_split, mean_embedding
from pipeline.cache.folder import (
    SETTINGS_FILE,
    SKIPPED_FILE,
    cache_name,
    data_key,
    feature_path,
    file_status,
    is_up_to_date,
    list_image_files,
    read_settings,
    stale_reason,
    write_json,
)
from pipeline.cache.lookup import check_out, extraction_cache_dir, find_caches, resolve_cache
from pipeline.cache.pooling import POOL_STATS, parse_pool, pool_tiles
from pipeline.cache.schema import IDENTITY_KEYS, SCHEMA_VERSION, identity, mismatched_keys
from pipeline.cache.shards import (
    check_complete,
    read_shard_records,
    read_skipped,
    shard_key,
    unembedded,
    write_shard_record,
    write_skipped,
)

__all__ = [
    "IDENTITY_KEYS",
    "POOL_STATS",
    "SCHEMA_VERSION",
    "SETTINGS_FILE",
    "SKIPPED_FILE",
    "FeatureSet",
    "cache_name",
    "check_complete",
    "concat_image_features",
    "data_key",
    "feature_path",
    "file_status",
    "check_out",
    "extraction_cache_dir",
    "find_caches",
    "identity",
    "is_up_to_date",
    "list_image_files",
    "load_split",
    "mean_embedding",
    "mismatched_keys",
    "parse_pool",
    "pool_tiles",
    "read_settings",
    "read_shard_records",
    "read_skipped",
    "resolve_cache",
    "shard_key",
    "stale_reason",
    "unembedded",
    "write_json",
    "write_shard_record",
    "write_skipped",
]
