"""Installing the library in Colab replaces none of Colab's packages.

Colab's published runtime (``tests/colab/pip-freeze.txt`` for the CPU runtime, ``pip-freeze.gpu.txt`` for the
GPU one; Python 3.13 on Linux) pins some packages that a newer version would break (google-colab pins IPython 7.34,
and Colab warns that replacing it may crash the runtime). pip replaces an installed package when a requirement
excludes its version. So every requirement of the package and of its ``[book]`` extra must admit Colab's version of
that package, and so must every requirement of the packages Colab lacks, which pip would install (read from their
metadata in this environment), and theirs in turn.
"""

from __future__ import annotations

import importlib.metadata
import urllib.parse
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
COLAB = ROOT / "tests" / "colab"  # Colab's published package lists (their README says from where)
FREEZES = ("pip-freeze.txt", "pip-freeze.gpu.txt")
COLAB_PYTHON = {"python_version": "3.13", "python_full_version": "3.13.5", "sys_platform": "linux",
                "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
                "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def colab_versions(freeze: str) -> dict[str, Version]:
    """Package (canonical name) → version, from a ``pip freeze`` listing: ``name==version`` lines, and ``name @ URL``
    lines of a wheel (the CPU runtime's torch), whose version is in the wheel's file name."""
    versions = {}
    for line in (COLAB / freeze).read_text().splitlines():
        if line.startswith("#"):
            continue
        if "==" in line:
            name, version = line.split("==", 1)
        elif " @ " in line and line.endswith(".whl"):
            name, url = line.split(" @ ", 1)
            version = urllib.parse.unquote(url.rsplit("/", 1)[1]).split("-")[1]
        else:
            continue
        versions[canonicalize_name(name)] = Version(version.strip())
    return versions


def applies(requirement: Requirement, extras: set[str]) -> bool:
    """Whether pip would install ``requirement`` in Colab's Python, with ``extras`` of its package asked for."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**COLAB_PYTHON, "extra": extra}) for extra in extras | {""})


def replaced(requirements: list[Requirement], colab: dict[str, Version], extras: set[str]) -> list[str]:
    """Every requirement, followed through the packages Colab lacks, that excludes the version Colab has."""
    conflicts, seen, queue = [], set(), [(r, "diffusion-lib", extras) for r in requirements]
    while queue:
        requirement, wanted_by, wanted_extras = queue.pop()
        if not applies(requirement, wanted_extras):
            continue
        name = canonicalize_name(requirement.name)
        if name in colab:
            if not requirement.specifier.contains(colab[name], prereleases=True):
                conflicts.append(f"{wanted_by} requires {requirement}, Colab has {name}=={colab[name]}")
            continue
        if (name, frozenset(requirement.extras)) in seen:
            continue
        seen.add((name, frozenset(requirement.extras)))
        try:
            needs = importlib.metadata.requires(requirement.name) or []
        except importlib.metadata.PackageNotFoundError:
            conflicts.append(f"{wanted_by} requires {requirement}, which Colab lacks and this environment does not "
                             "have installed, so its own requirements cannot be read")
            continue
        queue += [(Requirement(text), requirement.name, set(requirement.extras)) for text in needs]
    return sorted(conflicts)


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("freeze", FREEZES)
def test_installing_the_library_and_its_book_extra_replaces_none_of_colabs_packages(freeze):
    colab = colab_versions(freeze)
    assert colab["ipython"] == Version("7.34.0") and colab["torch"].base_version == "2.11.0" and len(colab) > 500
    requirements = [Requirement(text) for text in project()["dependencies"]]
    assert not replaced(requirements, colab, {"book"}), replaced(requirements, colab, {"book"})
    book = [Requirement(text) for text in project()["optional-dependencies"]["book"]]
    assert {canonicalize_name(r.name) for r in book} >= {"ipython", "ipywidgets"}
    assert not replaced(book, colab, set()), replaced(book, colab, set())


def test_the_check_would_catch_a_requirement_that_replaces_colabs_ipython():
    colab = colab_versions(FREEZES[0])
    assert replaced([Requirement("ipython>=8")], colab, set()) == [
        "diffusion-lib requires ipython>=8, Colab has ipython==7.34.0"]
    assert replaced([Requirement("ipython>=8; python_version < '3.11'")], colab, set()) == []  # not Colab's Python
    # a package Colab lacks is followed: pooch's own requirements are read from its metadata
    assert replaced([Requirement("pooch>=1.6")], {**colab, "pooch": Version("0.1")}, set()) == [
        "diffusion-lib requires pooch>=1.6, Colab has pooch==0.1"]
    without_pooch = {name: version for name, version in colab.items() if name != "pooch"}
    assert replaced([Requirement("pooch>=1.6")], {**without_pooch, "requests": Version("1.0")}, set()) == [
        f"pooch requires {next(r for r in importlib.metadata.requires('pooch') if r.startswith('requests'))}, "
        "Colab has requests==1.0"]
    assert Marker("python_version < '3.11'").evaluate(COLAB_PYTHON) is False
