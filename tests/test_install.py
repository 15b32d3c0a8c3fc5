"""What `pip install diffusion-lib` gets: declared dependencies, licence metadata, package data."""

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string such as "tomli>=2.0; python_version < '3.11'"."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)[0]).lower()


def _imported_top_level_modules(package: Path) -> dict[str, str]:
    """Absolute imports of the package's modules, by top-level module name: {module: a file that imports it}."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_third_party_module_the_library_imports_is_a_declared_dependency():
    declared = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    installed = packages_distributions()
    undeclared = {}
    for module, where in _imported_top_level_modules(ROOT / "diffusion_lib").items():
        if module in sys.stdlib_module_names or module == "diffusion_lib":
            continue
        distributions = {_name(d) for d in installed.get(module, [module])}
        if not distributions & declared:
            undeclared[module] = where
    assert not undeclared, f"imported by the library but not in [project] dependencies: {undeclared}"
