"""Where the emoji pictures come from: five openly licensed npm packages, read in memory and rasterised.

Two packages of the ``emoji-datasource`` project hold 64x64 PNGs and an ``emoji.json`` of names, categories and
Unicode sequences (the emoji of the data set are its records); three Iconify JSON packages hold SVG bodies keyed by
name, rasterised here to 64x64 with ``resvg`` (the ``resvg-py`` wheel), a renderer of its own with no system
library, so the same bytes come out on every machine:

| style | package | licence |
| --- | --- | --- |
| ``noto`` | ``emoji-datasource-google@16.0.0`` (PNG) | Apache-2.0 |
| ``twemoji`` | ``emoji-datasource-twitter@16.0.0`` (PNG) | CC-BY-4.0 |
| ``fluent`` | ``@iconify-json/fluent-emoji-flat@1.2.6`` (SVG) | MIT |
| ``openmoji`` | ``@iconify-json/openmoji@1.2.29`` (SVG) | CC-BY-SA-4.0 |
| ``emojione`` | ``@iconify-json/emojione@1.2.3`` (SVG) | CC-BY-4.0 |

**Matching by Unicode sequence.** Fluent and OpenMoji map each sequence to an icon name (``chars.json``); EmojiOne
has no such map, so its icons are found by the names the other two give the same sequence (Iconify names all three
sets alike, "cat-face"), then, for icons still unclaimed, by the record's Unicode character name in the same spelling
("robot-face"). An icon two sequences would claim is left out. Sequences are compared in lower case without the
variation selector FE0F, which the packages write differently.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from diffusion_lib.checks import check_choice


@dataclass(frozen=True)
class Package:
    """One npm package of emoji pictures: ``name@version``, the SHA-256 of the tarball ``npm pack`` fetches, its
    ``kind`` ("png": emoji-datasource, whose images lie under ``img/FOLDER/64``; "svg": Iconify JSON)."""

    name: str
    version: str
    sha256: str
    kind: str
    folder: str = ""

    @property
    def tarball(self) -> str:
        """The file name ``npm pack`` gives the tarball ("@scope/name" → "scope-name-VERSION.tgz")."""
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"

    @property
    def url(self) -> str:
        """Where the npm registry serves the tarball (what ``npm pack`` fetches)."""
        return f"{REGISTRY}/{self.name}/-/{self.name.rsplit('/', 1)[-1]}-{self.version}.tgz"


PACKAGES = {
    "noto": Package("emoji-datasource-google", "16.0.0",
                    "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438", "png", "google"),
    "twemoji": Package("emoji-datasource-twitter", "16.0.0",
                       "f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877", "png", "twitter"),
    "fluent": Package("@iconify-json/fluent-emoji-flat", "1.2.6",
                      "7d064769dee690815f823bc5bcc511d957198caf9f5edd8dd9c1aa48a6aeb175", "svg"),
    "openmoji": Package("@iconify-json/openmoji", "1.2.29",
                        "03181e2c156cab35cf4a62f1f7886bd971d59212e75ac3f189d5a4cae3930fc5", "svg"),
    "emojione": Package("@iconify-json/emojione", "1.2.3",
                        "26a14f44284407e8bcde91799388dca2bfd91dbcd55a97f425524a1c5b73610e", "svg"),
}
STYLES = tuple(PACKAGES)
PNG_STYLES = tuple(style for style, package in PACKAGES.items() if package.kind == "png")
"""The two styles of the first data set, which have every emoji (the records come from ``noto``)."""
RENDER_SIZE = 64
REGISTRY = "https://registry.npmjs.org"  # where `npm pack` fetches the tarballs


def check_tarball(path: str | Path, style: str) -> Path:
    """``path`` if its SHA-256 is the one recorded for ``style`` in :data:`PACKAGES`; else ValueError naming both."""
    check_choice("style", style, STYLES)
    path, package = Path(path), PACKAGES[style]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != package.sha256:
        raise ValueError(f"{path} is not {package.name}@{package.version}: SHA-256 {digest}, expected "
                         f"{package.sha256}")
    return path


def regular_files(path: str | Path, wanted) -> dict[str, bytes]:
    """The regular files of a tarball whose names ``wanted(name)`` accepts, read in memory: name → bytes. Nothing is
    extracted to disk, and links and folders are never read."""
    with tarfile.open(path, "r:gz") as archive:
        return {member.name: archive.extractfile(member).read() for member in archive
                if member.isreg() and wanted(member.name)}


def read_package(path: str | Path, image_folder: str) -> tuple[list[dict], dict[str, bytes]]:
    """The ``emoji.json`` records and the 64x64 PNGs (file name → bytes) of an emoji-datasource tarball.

    Only regular files named exactly ``package/emoji.json`` or ``package/img/IMAGE_FOLDER/64/NAME.png`` (NAME:
    hexadecimal code points and dashes) are read; links, folders and any other path (``../`` included) are ignored.

    Raises:
        ValueError: the tarball has no ``package/emoji.json``.
    """
    png_name = re.compile(rf"package/img/{re.escape(image_folder)}/64/([0-9a-f]+(?:-[0-9a-f]+)*\.png)")
    files = regular_files(path, lambda name: name == "package/emoji.json" or png_name.fullmatch(name) is not None)
    if "package/emoji.json" not in files:
        raise ValueError(f"{path} has no package/emoji.json: not an emoji-datasource tarball")
    pngs = {png_name.fullmatch(name).group(1): data for name, data in files.items() if name != "package/emoji.json"}
    return json.loads(files["package/emoji.json"]), pngs


def read_iconify(path: str | Path) -> tuple[dict[str, str], dict[str, str]]:
    """The icons of an Iconify JSON tarball as standalone SVG documents (name → SVG, aliases resolved to their
    parent's picture) and its ``chars.json`` (Unicode sequence → icon name; empty when the package has none).

    An alias that flips or rotates its parent is left out (none of the emoji used here is one).

    Raises:
        ValueError: the tarball has no ``package/icons.json``.
    """
    files = regular_files(path, lambda name: name in ("package/icons.json", "package/chars.json"))
    if "package/icons.json" not in files:
        raise ValueError(f"{path} has no package/icons.json: not an Iconify JSON tarball")
    data = json.loads(files["package/icons.json"])
    icons = {name: iconify_svg(icon, data.get("width", 16), data.get("height", 16))
             for name, icon in data["icons"].items()}
    for name, alias in data.get("aliases", {}).items():
        if set(alias) == {"parent"} and alias["parent"] in icons:
            icons[name] = icons[alias["parent"]]
    chars = json.loads(files.get("package/chars.json", b"{}"))
    return icons, chars


def iconify_svg(icon: dict, width: int, height: int) -> str:
    """An Iconify icon (its ``body`` and optional ``left``, ``top``, ``width``, ``height``) as an SVG document drawn
    at :data:`RENDER_SIZE` pixels square (a box that is not square keeps its aspect, centred)."""
    box = (icon.get("left", 0), icon.get("top", 0), icon.get("width", width), icon.get("height", height))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'width="{RENDER_SIZE}" height="{RENDER_SIZE}" viewBox="{" ".join(map(str, box))}">{icon["body"]}</svg>')


def rasterise(svg: str) -> np.ndarray:
    """An SVG document → (64, 64, 4) uint8 RGBA, drawn by resvg with no system fonts (the emoji have no text).

    Raises:
        ImportError: resvg-py is not installed (``pip install 'diffusion-lib[data]'``).
    """
    try:  # only remaking the arrays needs the renderer
        import resvg_py
    except ImportError as err:
        raise ImportError("drawing the SVG emoji styles needs resvg-py: pip install 'diffusion-lib[data]' "
                          "(or resvg-py)") from err
    png = bytes(resvg_py.svg_to_bytes(svg_string=svg, skip_system_fonts=True))
    return decode_png(png)


def decode_png(png: bytes) -> np.ndarray:
    """A 64x64 PNG → (64, 64, 4) uint8 RGBA; ValueError for another size."""
    rgba = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"), dtype=np.uint8)
    if rgba.shape != (RENDER_SIZE, RENDER_SIZE, 4):
        raise ValueError(f"png must be a 64x64 image, got {rgba.shape[1]}x{rgba.shape[0]}")
    return rgba


def on_white(rgba: np.ndarray, size: int = 32) -> np.ndarray:
    """(64, 64, 4) uint8 RGBA → (size, size, 3) uint8 RGB: composited on white, then each block of 64/size pixels
    averaged (size 64: no averaging). Integer arithmetic on the way, so the bytes do not depend on the machine."""
    check_choice("size", size, (16, 32, 64))
    rgba = rgba.astype(np.int64)
    alpha = rgba[..., 3:]
    white = (rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255                     # (64, 64, 3)
    block = RENDER_SIZE // size
    sums = white.reshape(size, block, size, block, 3).sum(axis=(1, 3))
    return ((sums + block * block // 2) // (block * block)).astype(np.uint8)


def sequence(code: str) -> str:
    """A Unicode sequence as the packages are compared: lower case, without FE0F ("2764-FE0F" → "2764")."""
    return "-".join(part for part in code.lower().split("-") if part != "fe0f")


def spelled(name: str) -> str:
    """A name as Iconify spells icons: lower case, runs of other characters as one dash ("CAT FACE" → "cat-face")."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def match_icons(records: list[dict], icons: dict[str, str], chars: dict[str, str],
                names_elsewhere: dict[str, set[str]]) -> dict[str, str]:
    """Each record's icon in one Iconify set: record's ``unified`` → icon name, for the records the set draws.

    Args:
        records: emoji-datasource records (``unified``, ``name``).
        icons, chars: the set's icons (name → SVG) and its own sequence → name map (may be empty).
        names_elsewhere: sequence (:func:`sequence`) → the icon names other Iconify sets give it, used when ``chars``
            does not name the sequence.

    An icon claimed by two records is given to neither.
    """
    own = {sequence(code): name for code, name in chars.items()}
    claims: dict[str, list[str]] = {}
    for record in records:
        key = sequence(record["unified"])
        names = {own[key]} if key in own else names_elsewhere.get(key, set())
        for name in sorted(name for name in names if name in icons)[:1]:
            claims.setdefault(name, []).append(record["unified"])
    claimed = set(claims)
    found = {codes[0]: name for name, codes in claims.items() if len(codes) == 1}
    for record in records:  # icons no sequence claimed, by the record's Unicode character name
        name = spelled(record["name"])
        if record["unified"] not in found and name in icons and name not in claimed:
            claims.setdefault(name, []).append(record["unified"])
    return {codes[0]: name for name, codes in claims.items() if len(codes) == 1}
