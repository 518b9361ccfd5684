"""The shape of the package: imports go down the layers, no cycles, small folders, one h5py user, no prints.

Every import counts: at module level, inside functions and under ``TYPE_CHECKING``.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"
# Top to bottom: a module may import its own package and the layers below it, never a layer above or its own
# layer's other packages.
LAYERS = {
    "cli": 6,
    "report": 5,
    "extract": 4,
    "classify": 4,
    "hygiene": 3,
    "cache": 2,
    "data": 1,
    "embed": 1,
    "heads": 1,
    "errors": 0,
    "defaults": 0,
    "flags": 0,
    "lazy": 0,
    "memory": 0,
    "provenance": 0,
    "progress": 0,
}
MAX_MODULES_PER_FOLDER = 15  # STYLE.md: a flat package is fine at 15 modules; past ~20 it groups by domain


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str) -> str | None:
    """The pipeline module (or package) an imported name refers to; None outside the package."""
    if name != "pipeline" and not name.startswith("pipeline."):
        return None
    parts = name.split(".")
    while parts:
        base = ROOT.joinpath(*parts)
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return None


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(filter(None, (_resolve(alias.name) for alias in node.names)))
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # "from pipeline import cache" imports the package pipeline.cache; "from pipeline.cache import load_split"
            # imports pipeline.cache itself
            found.update(filter(None, (_resolve(f"{node.module}.{alias.name}") for alias in node.names)))
    return found


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _layer(module: str) -> tuple[str, int]:
    top = module.split(".")[1] if module.count(".") else ""
    return top, LAYERS[top]


def test_every_package_has_a_layer():
    tops = {name.split(".")[1] for name in MODULES if name.count(".")}
    assert tops <= set(LAYERS), tops - set(LAYERS)


@pytest.mark.parametrize("module", sorted(name for name in MODULES if name != "pipeline"))
def test_imports_go_down_the_layers(module):
    own, level = _layer(module)
    wrong = []
    for target in GRAPH[module]:
        if target == "pipeline":
            wrong.append(f"{target} (the public API imports everything; import the module itself)")
            continue
        package, other = _layer(target)
        if package != own and other >= level:
            wrong.append(f"{target} (layer {other}, {module} is in layer {level})")
    assert not wrong, wrong


def test_no_import_cycles():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(GRAPH.get(node, ())):
            # importing a package runs its __init__, which is part of the package, not a cycle with its modules
            if node.startswith(target + "."):
                continue
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(target):] + [target]))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_folders_stay_small():
    for folder in [PACKAGE, *(p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file())]:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= MAX_MODULES_PER_FOLDER, (folder, len(modules))


def test_only_the_store_touches_h5py():
    users = {name for name, path in MODULES.items() if "h5py" in {
        alias.name.split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }}
    assert users == {"pipeline.cache.store"}


def test_library_code_neither_prints_nor_exits():
    offenders = []
    for name, path in MODULES.items():
        if name.startswith("pipeline.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                called = ast.unparse(node.func)
                if called in ("print", "exit", "quit", "sys.exit", "os._exit"):
                    offenders.append(f"{name}: {called}")
    assert not offenders, offenders


def test_benchmarks_are_outside_the_package():
    assert not [name for name in MODULES if "bench" in name]
    assert not [name for name, targets in GRAPH.items() if any(t.startswith("benchmarks") for t in targets)]


def test_the_public_api_resolves_and_import_pipeline_stays_light():
    import subprocess
    import sys

    import pipeline

    for name in pipeline.__all__:
        assert getattr(pipeline, name) is not None, name
    code = "import sys, pipeline; print('torch' in sys.modules, 'h5py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
