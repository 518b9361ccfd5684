"""The feature cache: one folder per data folder, model and tiling setting, one HDF5 file per image.

``pipeline.cache.store`` is the only module that touches h5py; the file schema is :mod:`pipeline.cache.schema`.
"""

from __future__ import annotations

from pipeline.lazy import lazy_exports

# name -> module of this package; each module is imported on first use, so that importing one light module of the
# package (the flags' choices for --help) does not pay for h5py and scipy
_API = {
    "CacheData": "featureset",
    "FeatureSet": "featureset",
    "concat_image_features": "featureset",
    "load_split": "featureset",
    "mean_embedding": "featureset",
    "open_cache": "featureset",
    "SETTINGS_FILE": "folder",
    "SKIPPED_FILE": "folder",
    "cache_dir": "folder",
    "cache_name": "folder",
    "data_key": "folder",
    "feature_path": "folder",
    "file_status": "folder",
    "grid_tag": "folder",
    "is_up_to_date": "folder",
    "list_image_files": "folder",
    "read_settings": "folder",
    "stale_reason": "folder",
    "write_json": "folder",
    "TISSUE_DIR": "folder",
    "write_tissue_mask": "folder",
    "SLIDE_SHEET": "folder",
    "check_out": "lookup",
    "data_name": "lookup",
    "extraction_cache_dir": "lookup",
    "find_caches": "lookup",
    "resolve_cache": "lookup",
    "POOL_STATS": "pooling",
    "parse_pool": "pooling",
    "pool_tiles": "pooling",
    "IDENTITY_KEYS": "schema",
    "SCHEMA_VERSION": "schema",
    "identity": "schema",
    "mismatched_keys": "schema",
    "preprocessing_attribute": "schema",
    "check_complete": "shards",
    "read_shard_records": "shards",
    "read_skipped": "shards",
    "shard_key": "shards",
    "unembedded": "shards",
    "write_shard_record": "shards",
    "write_skipped": "shards",
}
__all__ = sorted(_API)

__getattr__, __dir__ = lazy_exports(__name__, _API, globals())
