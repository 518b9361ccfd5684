import subprocess
import sys

import pytest


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_a_public_name_is_imported_on_first_use_and_kept():
    out = _run(
        "import sys, pipeline.cache as c\n"
        "before = 'pipeline.cache.store' in sys.modules\n"
        "f = c.cache_name\n"
        "print(before, 'cache_name' in vars(c), f is c.cache_name, f.__module__)"
    )
    assert out == "False True True pipeline.cache.folder"


def test_the_top_package_resolves_its_api_and_submodules():
    import pipeline

    assert pipeline.TilingSettings.__module__ == "pipeline.data.tiling"
    assert pipeline.errors.PipelineError is pipeline.PipelineError  # a submodule used as an attribute
    assert {"run_extraction", "run_classification"} <= set(dir(pipeline))


def test_an_unknown_name_is_an_attribute_error():
    import pipeline.heads

    with pytest.raises(AttributeError, match="module 'pipeline.heads' has no attribute 'nothing_here'"):
        pipeline.heads.nothing_here  # noqa: B018


def test_a_missing_dependency_of_a_submodule_is_not_hidden(tmp_path, monkeypatch):
    from pipeline.lazy import lazy_exports

    package = tmp_path / "lazypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "broken.py").write_text("import a_module_that_does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    getattr_, _ = lazy_exports("lazypkg", {}, {})
    with pytest.raises(ModuleNotFoundError, match="a_module_that_does_not_exist"):
        getattr_("broken")
