import subprocess
import sys

import pytest

from pipeline.embed import registry
from pipeline.embed.registry import ENCODERS, LEFT_OUT, find, tile_size_for_mpp, unknown_model_message
from tests.embed.encoder_fakes import ARCHITECTURES

REQUIRED = ("phikon", "phikon-v2", "uni", "uni2-h", "virchow", "virchow2", "h-optimus-0", "h-optimus-1", "h0-mini",
            "prov-gigapath", "midnight", "efficientnet-lite0")


def test_the_table_has_the_required_encoders_and_each_has_its_offline_build():
    assert len(ENCODERS) >= 15
    assert set(REQUIRED) <= set(ENCODERS)
    assert sum(name.startswith("kaiko-") for name in ENCODERS) == 5
    assert set(ARCHITECTURES) == set(ENCODERS)  # a new entry without its random-weight build fails here


@pytest.mark.parametrize("entry", ENCODERS.values(), ids=list(ENCODERS))
def test_entry_is_complete_and_consistent(entry):
    assert entry.loader in ("transformers", "timm", "package")
    assert entry.output in registry.OUTPUTS
    assert entry.interpolation in ("bilinear", "bicubic")
    assert len(entry.mean) == len(entry.std) == 3 and all(0 < v < 1 for v in (*entry.mean, *entry.std))
    assert entry.input_size == 224 and entry.dim > 0 and entry.licence
    assert (entry.prefix_tokens == 0) == (entry.output == "pooled")
    assert all(mpp > 0 for mpp in entry.mpp)
    if entry.loader != "package":
        assert entry.source.count("/") == 1 and entry.page == f"https://huggingface.co/{entry.source}"
    assert "trust_remote_code" not in entry.kwargs


def test_virchow_and_midnight_concatenate_cls_and_patch_mean_and_skip_registers():
    assert ENCODERS["virchow"].output == ENCODERS["virchow2"].output == ENCODERS["midnight"].output == "cls+mean"
    assert ENCODERS["virchow2"].prefix_tokens == 5 and ENCODERS["uni2-h"].prefix_tokens == 9
    assert ENCODERS["uni"].output == ENCODERS["h-optimus-0"].output == "cls"


def test_find_by_name_case_or_hugging_face_id():
    assert find("uni") is ENCODERS["uni"]
    assert find("Virchow2") is ENCODERS["virchow2"]
    assert find("paige-ai/virchow2") is ENCODERS["virchow2"]
    assert find("MahmoodLab/UNI2-h") is ENCODERS["uni2-h"]
    assert find("resnet") is None and find("timm:resnet18") is None


def test_unknown_model_message_suggests_a_name_and_lists_the_table():
    message = unknown_model_message("virchov")
    assert "Did you mean 'virchow'?" in message and "--list-models" in message and "timm:NAME" in message
    assert all(name in message for name in ENCODERS)
    assert "\n" not in message


@pytest.mark.parametrize("name", ["conch", "Hibou-B"])
def test_left_out_encoders_say_why(name):
    message = unknown_model_message(name)
    assert message.startswith(f"--model {name} is not supported: it ")
    assert LEFT_OUT[name.lower()] in message and "docs/encoders.md" in message


def test_magnification_labels():
    assert ENCODERS["uni"].magnification == "20x (0.5 um/px)"
    assert ENCODERS["virchow2"].magnification == "5x-40x (0.25-2 um/px)"
    assert ENCODERS["efficientnet-lite0"].magnification == "n/a"


@pytest.mark.parametrize(
    ("name", "data_mpp", "tile"),
    [("uni", 0.25, 448), ("uni", 0.5, 224), ("uni", 1.0, 112), ("virchow2", 0.25, 224), ("virchow2", 0.3, 187),
     ("midnight", 0.9, 249), ("prov-gigapath", 0.5, 256), ("prov-gigapath", 0.25, 512)],  # resized to 256, cropped
)
def test_tile_size_for_mpp_matches_the_training_scale(name, data_mpp, tile):
    assert tile_size_for_mpp(ENCODERS[name], data_mpp) == tile


def test_tile_size_for_mpp_refuses_what_it_cannot_size():
    with pytest.raises(ValueError, match="--mpp must be a positive number"):
        tile_size_for_mpp(ENCODERS["uni"], 0)
    with pytest.raises(ValueError, match="efficientnet-lite0 was not trained on pathology images"):
        tile_size_for_mpp(ENCODERS["efficientnet-lite0"], 0.5)


def test_model_help_names_every_form():
    text = registry.model_help()
    assert all(name in text for name in ENCODERS) and "timm:NAME" in text and "folder" in text


def test_the_registry_imports_no_torch():
    code = "import sys, pipeline.embed.registry, pipeline.embed.hub; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == (
        "False"
    )
