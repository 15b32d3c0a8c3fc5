"""What `pip install diffusion-lib` gets: declared dependencies, licence metadata, package data."""

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

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


def test_every_third_party_module_the_library_imports_is_a_declared_dependency_or_an_extras_imported_late():
    """A required dependency may be imported anywhere; one of an extra ([book]: IPython and the widgets; [data]: the
    SVG renderer) only inside a function, so that every module imports without it."""
    declared = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    extras = {_name(r) for group in PYPROJECT["project"]["optional-dependencies"].values() for r in group}
    installed = packages_distributions()
    undeclared, too_early = {}, []
    for module, where in _imported_top_level_modules(ROOT / "diffusion_lib").items():
        if module in sys.stdlib_module_names or module == "diffusion_lib":
            continue
        distributions = {_name(d) for d in installed.get(module, [module])}
        if distributions & declared:
            continue
        if not distributions & extras:
            undeclared[module] = where
            continue
        for path in sorted((ROOT / "diffusion_lib").rglob("*.py")):
            for node in ast.parse(path.read_text()).body:  # the module's top level only
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
                too_early += [f"{path.name} imports {module} at its top" for n in names if n.split(".")[0] == module]
    assert not undeclared, f"imported by the library but not in [project] dependencies: {undeclared}"
    assert not too_early, too_early


def test_license_is_an_spdx_expression_with_its_file():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert "MIT License" in (ROOT / "LICENSE").read_text()


def test_the_build_backend_has_a_lower_and_an_upper_bound():
    # the SPDX licence needs setuptools >= 77; a major release may drop what the configuration relies on
    (setuptools,) = [r for r in PYPROJECT["build-system"]["requires"] if _name(r) == "setuptools"]
    assert ">=77" in setuptools and "<" in setuptools.replace("<=", ""), setuptools


def test_package_data_ships_the_records_and_the_training_configs_but_not_the_weights():
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["diffusion_lib"]
    assert {"pretrained/*.json", "configs/*.toml", "py.typed"} <= set(patterns)
    assert not [p for p in patterns if p.endswith(".safetensors")]
    assert PYPROJECT["tool"]["setuptools"]["exclude-package-data"]["diffusion_lib"] == ["pretrained/*.safetensors"]
    assert "global-exclude *.safetensors" in (ROOT / "MANIFEST.in").read_text()
    assert PYPROJECT["project"]["scripts"] == {"diffusion-train": "diffusion_lib.train.command:main"}


@pytest.mark.slow
def test_the_wheel_carries_the_licence_and_the_package_data(tmp_path):
    source = tmp_path / "source"  # a copy: building in the checkout would write build/ into the working tree
    shutil.copytree(ROOT / "diffusion_lib", source / "diffusion_lib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist")],
        check=True, capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("diffusion_lib-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        headers = archive.read(metadata).decode()
    assert "License-Expression: MIT" in headers.splitlines()
    assert "License-File: LICENSE" in headers.splitlines()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "diffusion_lib").glob("pretrained/*.json")}
    shipped |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "diffusion_lib").glob("configs/*.toml")}
    shipped |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "diffusion_lib").glob("data/emoji/*")}
    assert {"diffusion_lib/data/emoji/emoji32.npz", "diffusion_lib/data/emoji/LICENSE-APACHE-2.0.txt"} <= shipped
    assert shipped and shipped <= set(names) and "diffusion_lib/py.typed" in names
    assert not [n for n in names if n.endswith(".safetensors")]  # the weights are fetched on first use
    assert wheel.stat().st_size <= 10_000_000, wheel.stat().st_size
