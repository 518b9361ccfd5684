"""Every encoder of the table fed and read as its authors do, checked without weights.

Preprocessing: the tensor the project feeds the model for a real tile (224 px as cut, and 160, 256 and 400 px, so
that it is resized) equals, within 1e-6, the authors' transform written out below from their model card or code
(torchvision applied to the tile as a tensor), and extraction's own path (tiles resized with Pillow in the decoding
workers, then the device transform) equals their PIL pipeline within 1e-6. The device transform alone, when it must
resize, differs from the PIL path by at most a few levels of 255 (bounded below).

Pooling: the embedding the project's wrapper gives equals the card's own expression on the model's output, on the
entry's architecture with random weights (one block).

Sources (docs/encoders.md has the table): TRIDENT = mahmoodlab/TRIDENT trident/patch_encoder_models/load.py
(commit a91fa84); cards = the Hugging Face model cards / authors' READMEs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from pipeline.embed.preprocessing import Preprocessing, TileTransform
from pipeline.embed.registry import ENCODERS, HALF, HOPTIMUS, IMAGENET
from pipeline.embed.timm_loader import build_timm_entry, wrap_efficientnet_lite0
from pipeline.embed.transformers_loader import table_preprocessing, wrap_transformers
from tests.embed.encoder_fakes import build

BILINEAR, BICUBIC = T.InterpolationMode.BILINEAR, T.InterpolationMode.BICUBIC
SIZES = (224, 160, 256, 400)
# phikon's preprocessor_config.json (owkin/phikon): no "resample" key, so transformers' ViTImageProcessor default
PHIKON_CONFIG = {"do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": list(IMAGENET[0]),
                 "image_processor_type": "ViTImageProcessor", "image_std": list(IMAGENET[1]),
                 "rescale_factor": 1 / 255, "size": {"height": 224, "width": 224}}


def _resize_crop(mean, std, size=224, interpolation=BILINEAR, crop=224) -> list:
    """TRIDENT's get_eval_transforms / the cards' Compose: Resize (torchvision's default filter: bilinear),
    CenterCrop, ToTensor, Normalize."""
    return [T.Resize(size, interpolation=interpolation), T.CenterCrop(crop), T.ToTensor(), T.Normalize(mean, std)]


# name: (the authors' transform, where it is written)
AUTHORS = {
    "phikon": (_resize_crop(*IMAGENET), "TRIDENT PhikonInferenceEncoder (bilinear, as ViTImageProcessor)"),
    "phikon-v2": (_resize_crop(*IMAGENET), "TRIDENT Phikonv2InferenceEncoder (hub config not available here)"),
    "midnight": (_resize_crop(*HALF), "kaiko-ai/midnight README; TRIDENT Midnight12kInferenceEncoder"),
    "uni": (_resize_crop(*IMAGENET), "TRIDENT UNIInferenceEncoder (hub config not available here)"),
    "uni2-h": (_resize_crop(*IMAGENET), "TRIDENT UNIv2InferenceEncoder (hub config not available here)"),
    "virchow": (_resize_crop(*IMAGENET, interpolation=BICUBIC), "TRIDENT VirchowInferenceEncoder"),
    "virchow2": (_resize_crop(*IMAGENET, interpolation=BICUBIC), "TRIDENT Virchow2InferenceEncoder"),
    "h-optimus-0": (_resize_crop(*HOPTIMUS), "H-optimus-0 card (statistics); TRIDENT (Resize, bilinear)"),
    "h-optimus-1": (_resize_crop(*HOPTIMUS), "H-optimus-1 card (statistics); TRIDENT (Resize, bilinear)"),
    # H0-mini's card builds timm's create_transform from its hub config, not available here: the table's fallback
    "h0-mini": (_resize_crop(*HOPTIMUS, interpolation=BICUBIC), "H0-mini card (statistics); table fallback"),
    "prov-gigapath": (_resize_crop(*IMAGENET, size=256, interpolation=BICUBIC), "prov-gigapath README; TRIDENT"),
    **{name: (_resize_crop(*HALF), "kaiko towards_large_pathology_fms README; TRIDENT KaikoInferenceEncoder")
       for name in ENCODERS if name.startswith("kaiko-")},
    # tensorflow/tpu efficientnet_lite_builder.py: (x - 127) / 128 on 0-255 pixels; preprocessing.py: bicubic
    "efficientnet-lite0": ([T.Resize(224, interpolation=BICUBIC), T.PILToTensor(),
                            T.Lambda(lambda x: (x.float() - 127.0) / 128.0)], "tensorflow/tpu EfficientNet-Lite"),
}


def _project_preprocessing(name: str) -> Preprocessing:
    """What the loader uses: phikon's from its own config, the others from the table (their config's fallback)."""
    if name == "phikon":
        return Preprocessing.from_hf_dict(PHIKON_CONFIG, 224)
    return table_preprocessing(ENCODERS[name])


def _on_tensor(steps: list, tile: np.ndarray) -> torch.Tensor:
    """The authors' steps on the tile as a float tensor (0-255) instead of a PIL image; bicubic overshoot clamped
    as PIL's uint8 output and torchvision's uint8 path clamp it."""
    pixels = torch.from_numpy(tile).permute(2, 0, 1).float()
    for step in steps:
        if isinstance(step, T.Resize):
            pixels = step(pixels).clamp(0, 255)
        elif isinstance(step, T.CenterCrop):
            pixels = step(pixels)
        elif isinstance(step, (T.ToTensor, T.PILToTensor)):
            pixels = pixels / 255 if isinstance(step, T.ToTensor) else pixels
        else:
            pixels = step(pixels)
    return pixels


@pytest.fixture(scope="module")
def tiles(glas15, lung) -> dict[int, np.ndarray]:
    """Real H&E tiles of each size in SIZES: (T, T, 3) uint8 (glas15 images are 600 x 400, lung tiles 224)."""
    glas = np.asarray(Image.open(glas15 / "train_data" / "img_0000.png").convert("RGB"))
    lung = np.asarray(Image.open(lung / "train_data" / "img_0000.jpg").convert("RGB"))
    out = {size: glas[:size, 100 : 100 + size].copy() for size in SIZES if size != 224}
    out[224] = lung[:224, :224].copy()
    return out


@pytest.mark.parametrize("name", list(ENCODERS))
def test_the_tensor_fed_to_the_model_is_the_authors(name, tiles):
    steps, _source = AUTHORS[name]
    transform = TileTransform(_project_preprocessing(name))
    for size, tile in tiles.items():
        fed = transform(torch.from_numpy(tile)[None])[0]
        assert fed.shape == (3, 224, 224)
        assert torch.allclose(fed, _on_tensor(steps, tile), rtol=0, atol=1e-6), size
        # their PIL path: equal when nothing is resized, else within 1 (bilinear) or 3 (bicubic) levels of 255
        levels = _levels(fed - T.Compose(steps)(Image.fromarray(tile)), transform.preprocessing)
        resized = size != 224 or transform.preprocessing.resize_size
        bound = (1.001 if transform.preprocessing.interpolation == "bilinear" else 3.001) if resized else 1e-4
        assert levels <= bound, (size, levels)


@pytest.mark.parametrize("name", list(ENCODERS))
def test_the_tensor_extraction_feeds_is_the_authors_pil_path(name, tiles):
    # extraction's decoding workers resize tiles with Pillow (TileDataset, resize_tiles) before the device transform
    from pipeline.data.tiling import resize_tiles

    steps, source = AUTHORS[name]
    preprocessing = _project_preprocessing(name)
    transform = TileTransform(preprocessing)
    for size, tile in tiles.items():
        resized = resize_tiles(tile[None], preprocessing.resized_side, preprocessing.interpolation)
        fed = transform(torch.from_numpy(resized))[0]
        theirs = T.Compose(steps)(Image.fromarray(tile))
        assert torch.allclose(fed, theirs.float(), rtol=0, atol=1e-6), (size, source)


def _levels(difference: torch.Tensor, preprocessing: Preprocessing) -> float:
    """The largest difference of normalised pixels (3, S, S), in levels of 0-255."""
    return float((difference * torch.tensor(preprocessing.std).view(3, 1, 1) * 255).abs().max())


def test_phikon_resizes_bilinear_like_transformers_with_its_own_config(tiles):
    from transformers import ViTImageProcessor

    preprocessing = Preprocessing.from_hf_dict(PHIKON_CONFIG, 224)
    assert preprocessing.interpolation == "bilinear" and preprocessing.resize_size == 0
    processor = ViTImageProcessor(**PHIKON_CONFIG)  # what AutoImageProcessor.from_pretrained("owkin/phikon") builds
    for size, tile in tiles.items():
        fed = TileTransform(preprocessing)(torch.from_numpy(tile)[None])[0]
        theirs = processor(tile, return_tensors="pt")["pixel_values"][0]
        assert _levels(fed - theirs, preprocessing) <= (1.001 if size != 224 else 1e-4), size
    # the bicubic filter used before is further from what transformers gives
    bicubic = Preprocessing(224, interpolation="bicubic")
    fed = TileTransform(bicubic)(torch.from_numpy(tiles[400])[None])[0]
    assert _levels(fed - processor(tiles[400], return_tensors="pt")["pixel_values"][0], bicubic) > 3


@pytest.mark.parametrize(("processor_type", "expected"), [("ViTImageProcessor", "bilinear"),
                                                          ("ViTImageProcessorFast", "bilinear"),
                                                          ("BitImageProcessor", "bicubic"),
                                                          ("NoSuchImageProcessor", "bicubic"), (None, "bicubic")])
def test_a_config_without_resample_gets_its_processor_class_default(processor_type, expected):
    config = {"size": {"height": 224, "width": 224}, "image_processor_type": processor_type}
    assert Preprocessing.from_hf_dict(config, 224).interpolation == expected
    assert Preprocessing.from_hf_dict({**config, "resample": 3}, 224).interpolation == "bicubic"  # stated wins


def test_a_config_that_resizes_larger_and_crops_is_followed():
    # BitImageProcessor's layout (DINOv2 repos): shortest edge 256, then a 224 centre crop
    config = {"size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224}, "do_center_crop": True,
              "image_processor_type": "BitImageProcessor"}
    assert Preprocessing.from_hf_dict(config, 224) == Preprocessing(224, interpolation="bicubic", resize_size=256)


def test_resize_size_is_recorded_only_when_set():
    assert "resize_size" not in Preprocessing(224).to_dict()  # caches made before it keep their identity
    assert Preprocessing(224, resize_size=256).to_dict()["resize_size"] == 256


# name: the card's expression on the model's output (what its "embedding" line computes)
def _card(name: str, model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    if name in ("phikon", "phikon-v2"):  # owkin cards: outputs.last_hidden_state[:, 0, :]
        return model(pixel_values=pixels).last_hidden_state[:, 0, :]
    if name == "midnight":  # kaiko-ai/midnight README: cat([CLS, mean of patch tokens 1:])
        out = model(pixel_values=pixels).last_hidden_state
        return torch.cat([out[:, 0], out[:, 1:].mean(1)], dim=-1)
    if name in ("virchow", "virchow2"):  # Virchow cards: output[:, 0] with output[:, 1:] (v1) or [:, 5:] (v2)
        out = model(pixels)
        return torch.cat([out[:, 0], out[:, 1 if name == "virchow" else 5 :].mean(1)], dim=-1)
    if name == "h0-mini":  # H0-mini card: cls_features + patch_token_features (from num_prefix_tokens)
        out = model(pixels)
        return torch.cat([out[:, 0], out[:, model.num_prefix_tokens :].mean(1)], dim=-1)
    return model(pixels)  # UNI, UNI2-h, H-optimus, Prov-GigaPath, kaiko, EfficientNet: the model's own output


@pytest.mark.parametrize("name", list(ENCODERS))
def test_the_embedding_is_the_cards(name):
    entry = ENCODERS[name]
    model = build(entry, depth=None if entry.loader == "package" else 1)  # EfficientNet-Lite0 is small
    if entry.loader == "transformers":
        built = wrap_transformers(model, name, entry, table_preprocessing(entry))
    elif entry.loader == "timm":
        built = build_timm_entry(entry, name, model)
    else:
        built = wrap_efficientnet_lite0(entry, model)
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = built.module(pixels), _card(name, model, pixels)
    assert ours.shape == theirs.shape == (2, entry.dim)
    assert torch.allclose(ours, theirs, atol=1e-5)
