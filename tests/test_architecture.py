"""The house rules of diffusion_lib that a machine can check (CONTRIBUTING.md): imports go down the floors and form no
cycle, no module takes another module's ``_private`` name, and only command modules parse arguments or print."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "diffusion_lib"
# The modules that talk to a terminal: the commands, and the book's setup() that names the budget in a chapter.
COMMANDS = {"diffusion_lib.train.command", "diffusion_lib.recipes.command", "diffusion_lib.recipes.diffusion",
            "diffusion_lib.recipes.families", "diffusion_lib.weights"}
PRINTERS = COMMANDS | {"diffusion_lib.notebook"}
# CONTRIBUTING.md's floors: a module (or package, with everything in it) imports only from its floor or those above.
FLOORS = {
    0: ["diffusion_lib"],  # the package itself: __version__
    1: ["checks", "schedules", "paths", "checkpoints", "weights", "data", "metrics"],
    2: ["forward", "samplers", "sampler_setup", "path_samplers", "losses", "analytic", "distillation"],
    3: ["models", "families"],
    4: ["editing", "pipelines", "tasks", "pretrained", "speed"],
    5: ["evaluation"],
    6: ["train", "recipes"],
    7: ["notebook", "viz"],
}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imports(path: Path, root: Path = PACKAGE):
    """(imported module, imported names) for every import in the file, at any depth (inside functions too);
    relative imports resolved. ``from diffusion_lib.x import y`` counts ``diffusion_lib.x.y`` when that is a module."""
    name = module_name(path, root)
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = package_of(name, path)
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            yield base, [alias.name for alias in node.names]


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module → the modules of the package it imports."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for module, names in imports(path, root):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in files] or [module]
            graph[name] |= {t for t in targets if t in files and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def private_imports(root: Path = PACKAGE) -> list[str]:
    """``from diffusion_lib.x import _name`` (or ``from .x import _name``) in a module other than x; dunder names
    such as ``__version__`` are public."""
    found = []
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        for module, names in imports(path, root):
            if module.startswith(root.name) and module != name:
                found += [f"{name} imports {n} from {module}" for n in names
                          if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))]
    return found


def floor_of(module: str, floors: dict[int, list[str]] = FLOORS) -> int | None:
    """The floor of a module: that of the longest listed name it is or lies inside; None if it has none."""
    matches = [(len(name), floor) for floor, names in floors.items() for name in names
               for full in [name if name == "diffusion_lib" else f"diffusion_lib.{name}"]
               if module == full or (full != "diffusion_lib" and module.startswith(full + "."))]
    return max(matches)[1] if matches else None


def upward_imports(graph: dict[str, set[str]], floors: dict[int, list[str]] = FLOORS) -> list[str]:
    """Every import from a module to one on a lower floor (a larger number), and every module without a floor."""
    found = [f"{module} has no floor" for module in sorted(graph) if floor_of(module, floors) is None]
    for module in sorted(graph):
        for target in sorted(graph[module]):
            here, there = floor_of(module, floors), floor_of(target, floors)
            if None not in (here, there) and there > here:
                found.append(f"{module} (floor {here}) imports {target} (floor {there})")
    return found


def calls_and_imports(path: Path) -> tuple[bool, bool]:
    """(imports argparse, calls print)."""
    tree = ast.parse(path.read_text())
    parses = any(m == "argparse" for m, _ in imports(path))
    prints = any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"
                 for n in ast.walk(tree))
    return parses, prints


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "diffusion_lib.train.trainer" in graph and "diffusion_lib.losses" in graph["diffusion_lib.train.trainer"]
    assert cycles(graph) == []


def test_imports_go_down_the_floors_only():
    assert upward_imports(import_graph()) == []


def test_the_floor_check_finds_an_upward_import_and_a_module_without_a_floor():
    graph = {"diffusion_lib.models.unet": {"diffusion_lib.samplers"}, "diffusion_lib.samplers": {
        "diffusion_lib.train.trainer"}, "diffusion_lib.train.trainer": set(), "diffusion_lib.attic": set()}
    assert upward_imports(graph) == [
        "diffusion_lib.attic has no floor",
        "diffusion_lib.samplers (floor 2) imports diffusion_lib.train.trainer (floor 6)"]
    assert floor_of("diffusion_lib.data.shapes") == 1 and floor_of("diffusion_lib") == 0


def test_no_module_takes_another_modules_private_name():
    assert private_imports() == []


def test_only_command_modules_parse_arguments_or_print():
    parsers, printers = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        parses, prints = calls_and_imports(path)
        name = module_name(path)
        if parses and name not in COMMANDS:
            parsers.append(name)
        if prints and name not in PRINTERS:
            printers.append(name)
    assert (parsers, printers) == ([], [])


@pytest.fixture
def toy_package(tmp_path):
    """A package ``diffusion_lib`` of four modules: a → b → c → a is a cycle, d takes c's ``_secret``."""
    root = tmp_path / "diffusion_lib"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("")
    (root / "a.py").write_text("from diffusion_lib import b\n")
    (root / "b.py").write_text("def f():\n    from diffusion_lib.sub.c import g\n")
    (root / "sub" / "c.py").write_text("from .. import a\n_secret = 1\n")
    (root / "d.py").write_text("from diffusion_lib.sub.c import _secret\nfrom .sub import c\n")
    return root


def test_the_checks_find_a_cycle_through_a_function_level_and_a_relative_import_and_a_private_name(toy_package):
    graph = import_graph(toy_package)
    assert graph["diffusion_lib.d"] == {"diffusion_lib.sub.c"}
    assert cycles(graph) == [["diffusion_lib.a", "diffusion_lib.b", "diffusion_lib.sub.c"]]
    assert private_imports(toy_package) == ["diffusion_lib.d imports _secret from diffusion_lib.sub.c"]
