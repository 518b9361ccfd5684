"""Every default is written once: the shared paths in pipeline/defaults.py, each flag's default in its dataclass."""

import ast
import dataclasses
from pathlib import Path

import pytest

from pipeline.classify.settings import ClassificationSettings
from pipeline.data.tiling import TilingSettings
from pipeline.extract.settings import ExtractionSettings
from pipeline.hygiene.settings import QualitySettings

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"


def _path_literals(value: str) -> list[str]:
    """``Path("<value>")`` calls in pipeline/, as ``file:line``."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Path"
                    and len(node.args) == 1 and isinstance(node.args[0], ast.Constant) and node.args[0].value == value):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return found


@pytest.mark.parametrize("value", ["data", "features"])
def test_the_data_and_features_defaults_are_written_once(value):
    assert _path_literals(value) == [_path_literals(value)[0]] and _path_literals(value)[0].startswith("defaults.py")


def test_tile_size_and_default_model_are_written_once():
    texts = {path: path.read_text() for path in PACKAGE.rglob("*.py")}
    assert [p.name for p, text in texts.items() if '"phikon"' in text] == ["registry.py"]
    sizes = [p.name for p, text in texts.items() for node in ast.walk(ast.parse(text))
             if isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Constant) and node.value.value == 224]
    assert sizes == ["registry.py"]  # Encoder.input_size, the model's input; tile sizes read DEFAULT_TILE_SIZE


def _patch_default(monkeypatch, cls, name, value):
    monkeypatch.setattr(cls.__dataclass_fields__[name], "default", value)


def _help(parser, flag):
    return next(action.help for action in parser._actions if flag in action.option_strings)


def test_a_changed_classify_default_changes_the_flag_and_its_help(monkeypatch):
    from pipeline.cli.classify import build_parser, settings_from_args

    _patch_default(monkeypatch, ClassificationSettings, "folds", 7)
    _patch_default(monkeypatch, ClassificationSettings, "head", "logreg")
    _patch_default(monkeypatch, QualitySettings, "robust_z", 4.5)
    parser = build_parser()
    args = parser.parse_args([])
    assert (args.folds, args.head, args.robust_z) == (7, "logreg", 4.5)
    assert _help(parser, "--folds").endswith("(default: 7)") and "(default: 4.5)" in _help(parser, "--robust-z")
    settings = settings_from_args(args)
    assert (settings.folds, settings.head, settings.quality.robust_z) == (7, "logreg", 4.5)


def test_a_changed_extract_default_changes_the_flag_and_its_help(monkeypatch, tmp_path):
    from pipeline.cli.extract import build_parser, settings_from_args

    _patch_default(monkeypatch, ExtractionSettings, "out_dir", tmp_path / "cache-root")
    _patch_default(monkeypatch, TilingSettings, "min_coverage", 0.25)
    _patch_default(monkeypatch, TilingSettings, "tile_size", 256)
    parser = build_parser()
    args = parser.parse_args([])
    assert args.out == tmp_path / "cache-root" and args.min_coverage == 0.25
    assert f"(default: {tmp_path / 'cache-root'})" in _help(parser, "--out")
    assert "(default: 0.25)" in _help(parser, "--min-coverage") and "(default: 256)" in _help(parser, "--tile-size")
    settings = settings_from_args(args)
    assert (settings.out_dir, settings.tiling.min_coverage) == (tmp_path / "cache-root", 0.25)


def test_every_flag_default_is_its_field_default():
    """No argparse default is typed beside its field: each flag's default is the field's (as argparse holds it)."""
    from pipeline.cli.classify import build_parser as classify_parser
    from pipeline.cli.extract import build_parser as extract_parser
    from pipeline.cli.flags import flag_name

    checked = 0
    for parser, cls in ((classify_parser(), ClassificationSettings), (extract_parser(), ExtractionSettings)):
        for field in dataclasses.fields(cls):
            flag = field.metadata.get("flag")
            if flag is None or flag.parse is not None or flag.optional or isinstance(field.default, bool):
                continue
            default = parser.get_default(flag_name(field, flag).lstrip("-").replace("-", "_"))
            expected = field.default
            if flag.nargs:
                expected = list(expected) if isinstance(expected, tuple) else [expected]
            assert default == expected, (cls.__name__, field.name, default)
            checked += 1
    assert checked >= 20
