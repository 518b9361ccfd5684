"""The real loading path of transformers encoders, through a fake local Hugging Face cache (one layer deep)."""

import json

import pytest
import torch

from pipeline.embed.loading import load_model
from pipeline.embed.model import weights_checksum
from pipeline.embed.preprocessing import Preprocessing
from pipeline.embed.registry import ENCODERS
from pipeline.errors import ModelLoadError
from tests.embed.encoder_fakes import COMMIT, put_in_hf_cache, put_transformers_repo

PROCESSOR = {"size": {"height": 224, "width": 224}, "image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.2, 0.2],
             "resample": 3, "do_center_crop": False}


def _pixels() -> torch.Tensor:
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def test_phikon_from_the_cache_takes_cls_and_its_own_preprocessor_config(empty_hf_cache):
    snapshot = put_transformers_repo(ENCODERS["phikon"], depth=1, processor=PROCESSOR)
    model = load_model("phikon")
    assert (model.name, model.slug, model.source, model.revision) == ("phikon", "phikon", "owkin/phikon", COMMIT)
    assert model.dim == 768 and model.output == "cls"
    assert model.preprocessing == Preprocessing(224, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2), "bicubic")  # config wins
    pixels = _pixels()
    with torch.no_grad():
        expected = model.module.model(pixel_values=pixels).last_hidden_state[:, 0]
        assert torch.allclose(model.module(pixels), expected)
    # the checksum of a CLS model is over its weights only, as before the registry: existing caches stay valid
    assert model.checksum == weights_checksum(model.module) == load_model(str(snapshot)).checksum


def test_phikon_without_preprocessor_config_falls_back_to_the_table(empty_hf_cache):
    put_transformers_repo(ENCODERS["phikon"], depth=1)
    assert load_model("Phikon").preprocessing == Preprocessing(224, interpolation="bilinear")


def test_midnight_concatenates_cls_and_patch_mean_and_overrides_its_config(empty_hf_cache):
    put_transformers_repo(ENCODERS["midnight"], depth=1, processor=PROCESSOR)
    model = load_model("kaiko-ai/midnight")  # its Hugging Face id finds the entry too
    assert model.name == "midnight" and model.dim == 3072 and model.output == "cls+mean[1:]"
    assert model.preprocessing == Preprocessing(224, (0.5,) * 3, (0.5,) * 3, "bilinear")  # the authors' values
    pixels = _pixels()
    with torch.no_grad():
        tokens = model.module.model(pixel_values=pixels).last_hidden_state
        assert torch.allclose(model.module(pixels), torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)], 1))
    assert model.checksum != weights_checksum(model.module)  # the output rule is part of the identity


def test_any_hugging_face_id_loads_from_the_cache_with_cls(empty_hf_cache, tiny_vit_dir):
    put_in_hf_cache("someone/tiny-vit", {path.name: path.read_bytes() for path in tiny_vit_dir.iterdir()})
    model = load_model("someone/tiny-vit")
    assert model.source == "someone/tiny-vit" and model.revision == COMMIT and model.dim == 32
    assert model.output == "cls" and model.preprocessing.input_size == 32


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path):
    # histai/hibou-b's case: a DINOv2 with register tokens whose config says plain dinov2 and names its own code.
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    config = Dinov2WithRegistersConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                                       patch_size=14, num_register_tokens=4)
    Dinov2WithRegistersModel(config).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved.update(model_type="dinov2", auto_map={"AutoModel": "modeling_dinov2.Dinov2ModelWithRegisters"})
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ModelLoadError) as caught:
        load_model(str(tmp_path))
    message = str(caught.value)
    assert "weights do not fit the architecture" in message and "embeddings.register_tokens" in message
    assert "auto_map" in message and "\n" not in message


def test_a_checkpoint_with_a_head_or_pooler_is_fine(tmp_path):
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=32, patch_size=16)
    ViTModel(config, add_pooling_layer=True).save_pretrained(tmp_path)  # pooler weights the loader does not build
    assert load_model(str(tmp_path)).dim == 16


def test_a_cached_model_loads_without_any_request_when_online(unreachable_hub):
    # Loading by id, transformers 5 would first ask the hub for processor_config.json (which phikon does not have)
    # and sit through retries without a network; loading from the snapshot folder asks nothing.
    put_transformers_repo(ENCODERS["phikon"], depth=1)
    assert load_model("phikon").revision == COMMIT
    assert unreachable_hub.hub_requests() == []
