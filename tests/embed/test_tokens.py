import pytest
import torch

from pipeline.embed.tokens import CLSEmbedder, TimmTokens, describe, prefix_tokens_of, select


def _tokens() -> torch.Tensor:
    """(1, 1 CLS + 2 registers + 3 patches, 2): registers hold huge values, so including them would show."""
    return torch.tensor([[[1.0, 2.0], [1e6, 1e6], [-1e6, 1e6], [0.0, 3.0], [3.0, 6.0], [6.0, 0.0]]])


def test_cls_is_token_zero():
    assert select(_tokens(), "cls", 3).tolist() == [[1.0, 2.0]]


def test_cls_plus_mean_skips_the_register_tokens():
    assert select(_tokens(), "cls+mean", 3).tolist() == [[1.0, 2.0, 3.0, 3.0]]
    assert select(_tokens(), "cls+mean", 1)[0, 2:].abs().max() > 1e5  # with the wrong prefix the registers leak in


def test_unknown_rule_and_descriptions():
    with pytest.raises(ValueError, match="Unknown output rule 'mean'"):
        select(_tokens(), "mean", 1)
    assert describe("cls+mean", 5) == "cls+mean[5:]" and describe("cls", 5) == "cls"


def test_timm_wrapper_reads_forward_features_whatever_the_global_pool():
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=28, embed_dim=16, depth=1,
                              num_heads=2, num_classes=0, global_pool="avg").eval()
    assert prefix_tokens_of(model) == 5
    pixels = torch.randn(2, 3, 28, 28)
    tokens = model.forward_features(pixels)
    with torch.no_grad():
        embedding = TimmTokens(model, "cls+mean", 5)(pixels)
        assert torch.allclose(embedding, torch.cat([tokens[:, 0], tokens[:, 5:].mean(1)], 1))
        assert torch.allclose(TimmTokens(model, "cls", 5)(pixels), tokens[:, 0])
        assert not torch.allclose(model(pixels), tokens[:, 0])  # timm's own pooling (avg) would differ


def test_transformers_wrapper_and_register_tokens():
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    torch.manual_seed(0)
    config = Dinov2WithRegistersConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                                       patch_size=14, num_register_tokens=4)
    model = Dinov2WithRegistersModel(config).eval()
    assert prefix_tokens_of(model) == 5
    pixels = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        tokens = model(pixel_values=pixels).last_hidden_state
        embedding = CLSEmbedder(model, "cls+mean", 5)(pixels)
    assert tokens.shape == (2, 5 + 4, 16)
    assert torch.allclose(embedding, torch.cat([tokens[:, 0], tokens[:, 5:].mean(1)], 1))


def test_wrappers_keep_the_model_under_the_same_name():
    # The checksum of a CLS model is over "model.*" weights, as before the registry: old caches stay valid.
    module = CLSEmbedder(torch.nn.Linear(2, 2))
    assert all(key.startswith("model.") for key in module.state_dict())
