"""Shared fixtures: synthetic data folders with known masks, a tiny ViT saved in the test, the real shared data.

Tests never touch the network: the Hugging Face hub is forced offline and pointed at a temporary cache before
anything imports it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HF_HOME = tempfile.mkdtemp(prefix="hf-home-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_CACHE"] = os.path.join(_HF_HOME, "hub")
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("GOMP_SPINCOUNT", "20000")  # see pipeline/cli/__init__.py: long spins stall small ops here

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

# ../shared/data next to the checkout; PIPELINE_SHARED_DATA points elsewhere (a git worktree sits one level deeper)
SHARED_DATA = Path(
    os.environ.get("PIPELINE_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)
TINY_SIZE = 32  # the tiny ViT's input size; synthetic tiles are this size so no resize happens


def write_pair(folder: Path, stem: str, pixels: np.ndarray, inside: np.ndarray, image_ext: str = ".png") -> Path:
    """Write ``img_<stem><ext>`` and ``mask_<stem>.png`` (0/255) into ``folder``; return the image path."""
    folder.mkdir(parents=True, exist_ok=True)
    image_path = folder / f"img_{stem}{image_ext}"
    Image.fromarray(pixels).save(image_path)
    Image.fromarray(np.where(inside, 255, 0).astype(np.uint8)).save(folder / f"mask_{stem}.png")
    return image_path


def random_pixels(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 pinkish noise, like stained tissue."""
    base = np.array([200, 120, 170], dtype=np.int16)
    noise = rng.integers(-50, 50, size=(height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def make_data(tmp_path: Path):
    """Factory: a challenge-layout folder of synthetic images with known masks.

    ``make_data(n_train=6, n_test=2, size=(96, 64), classes=("a", "b"))`` writes images whose left half is inside
    the mask and labels cycling over ``classes``; returns the folder. With 32 px tiles a 96x64 image has exactly 4
    tiles, all of coverage 1.0: x = 0 and x = 16 (the column that ends at the mask's edge) in rows y = 0 and y = 32.
    """

    def factory(n_train: int = 6, n_test: int = 2, size: tuple[int, int] = (96, 64), classes=("a", "b"), seed=0):
        generator = np.random.default_rng(seed)
        root = tmp_path / "data"
        width, height = size
        inside = np.zeros((height, width), dtype=bool)
        inside[:, : width // 2] = True
        rows = ["sample_index,label"]
        for split, count in (("train", n_train), ("test", n_test)):
            for i in range(count):
                pixels = random_pixels(generator, height, width)
                path = write_pair(root / f"{split}_data", f"{i:04d}", pixels, inside)
                if split == "train":
                    rows.append(f"{path.name},{classes[i % len(classes)]}")
        (root / "train_labels.csv").write_text("\n".join(rows) + "\n")
        return root

    return factory


def _save_tiny_vit(folder: Path) -> Path:
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        image_size=TINY_SIZE, patch_size=16,
    )
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessor(
        size={"height": TINY_SIZE, "width": TINY_SIZE}, image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25],
        resample=2,
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory) -> Path:
    """A random-weight ViT (32 px input, 32-d) saved with ``save_pretrained``, as a user's local folder."""
    return _save_tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


@pytest.fixture(scope="session")
def tiny_model(tiny_vit_dir):
    """The tiny ViT loaded through the same code path as Phikon."""
    from pipeline.embed.loading import load_model

    return load_model(str(tiny_vit_dir))


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not (path / "train_data").is_dir():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def glas15() -> Path:
    """``../shared/data/glas15``: 15 real H&E images with gland masks (skips when absent)."""
    return _shared("glas15")


@pytest.fixture(scope="session")
def lung() -> Path:
    """``../shared/data/lc25000-lung``: 600 real H&E tiles, 3 classes (skips when absent)."""
    return _shared("lc25000-lung")


def write_fake_cache(
    root: Path,
    labels: list[str],
    n_test: int = 3,
    tiles_per_image: int = 4,
    dim: int = 16,
    separation: float = 4.0,
    seed: int = 0,
    name: str = "fake_t224_s224_c0.50_n0_fp32",
    model_checksum: str = "abc",
) -> tuple[Path, Path]:
    """Write a cache of random embeddings, one Gaussian cluster per class, and its label file.

    Caches written with other ``seed``, ``dim`` and ``model_checksum`` (and another ``name``) hold the same images
    (same ids and checksums) embedded by "another encoder": what ``classify.py --features A B`` fuses.

    Returns:
        (cache folder, labels CSV). Train image i has label ``labels[i]``; test images get a random class.
    """
    from pipeline import cache
    from pipeline.cache import store
    from pipeline.data.tiling import TilingSettings

    generator = np.random.default_rng(seed)
    classes = sorted(set(labels))
    centres = generator.normal(size=(len(classes), dim)) * separation
    cache_dir = root / name
    settings = {
        "schema_version": store.SCHEMA_VERSION, "model": "fake", "model_source": "fake", "model_revision": "",
        "model_checksum": model_checksum, "preprocessing": {"input_size": 224}, "precision": "fp32",
        "tile_size": TilingSettings().tile_size, "stride": 224, "min_coverage": 0.5, "max_tiles": 0, "seed": 0,
        "feature_dim": dim, "data_dir": str(root / "data"),
    }
    cache_dir.mkdir(parents=True)
    cache.write_json(cache_dir / cache.SETTINGS_FILE, settings)
    test_labels = list(generator.choice(classes, size=n_test)) if n_test else []
    for split, split_labels in (("train", labels), ("test", test_labels)):
        for i, label in enumerate(split_labels):
            centre = centres[classes.index(label)]
            features = centre + generator.normal(size=(tiles_per_image, dim))
            attrs = {
                **settings, "image_id": f"{split}/img_{i:04d}", "split": split, "sample_index": f"img_{i:04d}.png",
                "image_width": 448, "image_height": 448, "image_sha256": f"{split}{i}", "mask_sha256": f"m{split}{i}",
                "pixels_xxh3": f"p{split}{i}", "mask_fraction": 0.5, "fallback": "",
            }
            coords = np.array([[224 * (t % 2), 224 * (t // 2)] for t in range(tiles_per_image)])
            store.write_image_features(
                cache_dir / split / f"img_{i:04d}.h5", features, coords, np.linspace(0.5, 1.0, tiles_per_image), attrs
            )
    labels_path = root / "data" / "train_labels.csv"
    labels_path.parent.mkdir(parents=True, exist_ok=True)
    labels_path.write_text("sample_index,label\n" + "".join(f"img_{i:04d}.png,{c}\n" for i, c in enumerate(labels)))
    return cache_dir, labels_path


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped (not reused this soon on a normal system)."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# ----------------------------------------------------------------------------------------- Hugging Face hub stand-ins


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch) -> Path:
    """A fresh, empty Hugging Face cache for one test (what it puts there does not leak into other tests)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def online(monkeypatch, empty_hf_cache):
    """Hub mode on (the suite is offline otherwise), no token, an empty cache; nothing reaches the internet because
    every test using it points the endpoint at 127.0.0.1."""
    from huggingface_hub import constants

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", "/nonexistent/token")


def _point_hub_at(monkeypatch, endpoint: str) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")


@pytest.fixture
def fake_hub(online, monkeypatch):
    """A fake hub on 127.0.0.1 (see tests/embed/fake_hub.py); yields the list of requests it received."""
    from tests.embed.fake_hub import FakeHub, serve_fake_hub

    server, endpoint = serve_fake_hub()
    _point_hub_at(monkeypatch, endpoint)
    yield FakeHub.requests
    server.shutdown()


@pytest.fixture
def unreachable_hub(online, monkeypatch):
    """An endpoint that drops every connection, as on a machine without internet; yields it (``.requests``)."""
    from tests.embed.fake_hub import DroppingEndpoint

    endpoint = DroppingEndpoint()
    _point_hub_at(monkeypatch, endpoint.url)
    yield endpoint
    endpoint.close()


@pytest.fixture(scope="session")
def patches(glas15):
    """Real H&E patches from glas15 for made slides (benchmarks/slide_maker.py), for tests of tissue and pen
    detection, which synthetic patches cannot stand in for (skips without glas15)."""
    from benchmarks import slide_maker

    return slide_maker.he_patches(glas15)


@pytest.fixture(scope="session")
def any_patches():
    """Patches for made slides whose content does not matter (reading, levels): glas15's, else synthetic."""
    from benchmarks import slide_maker

    glas = SHARED_DATA / "glas15"
    return slide_maker.he_patches(glas) if (glas / "train_data").is_dir() else slide_maker.synthetic_patches()
