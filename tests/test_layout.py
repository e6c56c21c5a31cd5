"""The design stays true: one import name over the fixed folders, and the import rules of each room."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).parents[1]
#: The fixed top-level folders and the package each one is.
FOLDERS = {"adapt": "sam3_adapt", "model": "sam3_adapt.model", "data_mix": "sam3_adapt.data_mix"}
BARE = ("adapt", "model", "data_mix", "recipes")


def kit_modules() -> dict[str, Path]:
    """Every module of the kit by its dotted name under ``sam3_adapt``."""
    modules = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            modules[".".join([package, *parts])] = path
    return modules


def imports_of(path: Path, module: str) -> set[str]:
    """Every module ``path`` imports, at any depth of the file, relative imports resolved."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")
                parent = parent[: len(parent) - node.level + (1 if is_package else 0)]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def kit_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the kit modules it imports (``from pkg import name`` counts when name is a module)."""
    return {
        name: {m for m in imports_of(path, name) if m in modules} - {name} for name, path in modules.items()
    }


def in_room(module: str, room: str) -> bool:
    return module == room or module.startswith(room + ".")


def forbidden_edges(graph: dict[str, set[str]]) -> list[str]:
    """Imports that break a room's rule, as readable lines (empty when the design holds)."""
    rules = {
        # room: the rooms it may import from (besides itself)
        "sam3_adapt.model": (),
        "sam3_adapt.data_mix": (),
        "sam3_adapt.training": ("sam3_adapt.model", "sam3_adapt.data_mix.batch"),
    }
    facades = ("sam3_adapt.cli", "sam3_adapt.api", "sam3_adapt.predictor")
    bad = []
    for module, targets in graph.items():
        for target in targets:
            if in_room(target, "sam3_adapt.cli"):
                bad.append(f"{module} imports {target}: nothing imports the CLI")
            for room, allowed in rules.items():
                if in_room(module, room) and not (
                    in_room(target, room) or any(in_room(target, a) for a in allowed)
                ):
                    bad.append(f"{module} imports {target}: {room} may import only {allowed or 'itself'}")
            if module not in facades and module != "sam3_adapt" and target in facades[1:]:
                bad.append(f"{module} imports the facade {target}")
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles of the graph (each once), by depth-first search."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                found.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def package_parents(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph without the edge a package's ``__init__`` has to its own submodules (not a cycle)."""
    return {m: {t for t in targets if not in_room(t, m)} for m, targets in graph.items()}


def test_the_wheel_maps_one_name_onto_the_fixed_folders():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"sam3_adapt": "adapt", "sam3_adapt.model": "model", "sam3_adapt.data_mix": "data_mix"}
    folders["sam3_adapt.recipes"] = "recipes"
    assert project["package-dir"] == folders
    expected = set()
    for package, folder in folders.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            expected.add(".".join([package, *relative]))
    assert set(project["packages"]) == expected
    assert all(p == "sam3_adapt" or p.startswith("sam3_adapt.") for p in project["packages"])
    # Every folder holding Python files is a package of the list, so nothing is left out of the wheel.
    for folder in folders.values():
        for path in (ROOT / folder).rglob("*.py"):
            assert (path.parent / "__init__.py").is_file(), f"{path.parent} holds code but is no package"


def test_no_file_imports_the_folders_by_their_bare_names():
    offenders = []
    for path in ROOT.rglob("*.py"):
        if ".venv" in path.parts or "build" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in BARE]
    assert offenders == []


def test_each_room_imports_only_what_its_rule_allows():
    assert forbidden_edges(kit_graph(kit_modules())) == []


def test_the_kit_has_no_import_cycle():
    assert cycles(package_parents(kit_graph(kit_modules()))) == []


def test_the_rule_check_catches_a_forbidden_import():
    graph = kit_graph(kit_modules())
    graph["sam3_adapt.model.forward"] = graph["sam3_adapt.model.forward"] | {"sam3_adapt.training.loss"}
    graph["sam3_adapt.data_mix.dataset"] = graph["sam3_adapt.data_mix.dataset"] | {"sam3_adapt.model.tiny"}
    graph["sam3_adapt.training.task"] = graph["sam3_adapt.training.task"] | {"sam3_adapt.data_mix.datamodule"}
    graph["sam3_adapt.jobs.demo"] = graph["sam3_adapt.jobs.demo"] | {"sam3_adapt.cli"}
    bad = forbidden_edges(graph)
    assert any(line.startswith("sam3_adapt.model.forward imports sam3_adapt.training.loss") for line in bad)
    assert any(line.startswith("sam3_adapt.data_mix.dataset imports sam3_adapt.model.tiny") for line in bad)
    task = "sam3_adapt.training.task imports sam3_adapt.data_mix.datamodule"
    assert any(line.startswith(task) for line in bad)
    assert any("nothing imports the CLI" in line for line in bad)
    graph["sam3_adapt.training.loss"] = graph["sam3_adapt.training.loss"] | {"sam3_adapt.training.task"}
    assert cycles(package_parents(graph))


def test_inference_runs_without_lightning():
    code = "import sys, sam3_adapt.inference.loop, sam3_adapt.predictor; print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_source_file_is_over_400_lines():
    long = []
    for folder in (*FOLDERS, "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            lines = len(path.read_text().splitlines())
            if lines > 400:
                long.append(f"{path.relative_to(ROOT)}: {lines}")
    assert long == []
