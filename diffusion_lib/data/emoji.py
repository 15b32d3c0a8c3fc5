"""Emoji: real, colourful, captioned images that travel with the package.

Two openly licensed sets, from the npm packages of the ``emoji-datasource`` project (64x64 PNGs and an
``emoji.json`` of names and categories):

- ``noto``: Google's Noto Emoji (``emoji-datasource-google@16.0.0``), Apache License 2.0;
- ``twemoji``: Twemoji (``emoji-datasource-twitter@16.0.0``), graphics CC-BY 4.0, by Twitter, Inc. and other
  contributors.

The arrays shipped in ``diffusion_lib/data/emoji/`` (licences and attribution beside them) are made by
``python scripts/make_emoji.py`` from the two tarballs, byte for byte with the same zlib (:func:`build_arrays`,
:func:`write_arrays`):

- every emoji outside the "Flags" and "Component" categories (flags are striped rectangles, components are skin-tone
  swatches and hair pieces, not pictures), one image per emoji and style: 1,636 emoji, 3,272 images;
- skin-tone variants are left out: a tone recolours the skin and nothing else, and with the five tones of every
  person the "People & Body" category would outnumber all others together;
- the transparent background composited on white, then each 2x2 block averaged (an exact box filter: antialiased,
  and the same bytes on every machine) to 32x32 RGB;
- the caption is the emoji's name in lower case ("cat face", "red apple", "green heart");
- split by emoji, not by image: a fixed 10% of the emoji (:data:`TEST_FRACTION`, drawn with seed 0), every style of
  them, is the test split, so a test image shows an emoji no model trained on the training split has seen.

:func:`load_emoji` reads the shipped arrays: no download, no npm, in CI, after ``pip install`` and in Colab alike.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from diffusion_lib.checkpoints import atomic_write
from diffusion_lib.checks import check_choice
from diffusion_lib.data.downloads import download

# style → (npm package, version, SHA-256 of the tarball `npm pack` fetches, its image folder)
PACKAGES = {
    "noto": ("emoji-datasource-google", "16.0.0",
             "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438", "google"),
    "twemoji": ("emoji-datasource-twitter", "16.0.0",
                "f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877", "twitter"),
}
STYLES = tuple(PACKAGES)
EXCLUDED_CATEGORIES = ("Flags", "Component")
TEST_FRACTION = 0.1
SPLIT_SEED = 0
SHIPPED = Path(__file__).resolve().parent / "emoji" / "emoji32.npz"
SPLITS = ("train", "test", "all")
SIZES = (16, 32, 64)
TARBALL_URL = "https://registry.npmjs.org/{name}/-/{name}-{version}.tgz"  # what `npm pack` fetches


@dataclass(frozen=True)
class EmojiSet:
    """Emoji images and their labels.

    Attributes:
        images: (N, 3, S, S) float32 in [-1, 1] (white background = 1).
        captions: N names in lower case, e.g. "cat face".
        style: (N,) int64 index into ``style_names`` ("noto", "twemoji").
        category, subcategory: (N,) int64 indices into ``category_names`` / ``subcategory_names``.
        emoji: (N,) int64 index of the emoji (the same for its two styles) into ``codes``.
        style_names, category_names, subcategory_names, codes: the names behind the indices (``codes``: each emoji's
            Unicode code points, e.g. "1F431").
    """

    images: torch.Tensor
    captions: list[str]
    style: torch.Tensor
    category: torch.Tensor
    subcategory: torch.Tensor
    emoji: torch.Tensor
    style_names: tuple[str, ...]
    category_names: tuple[str, ...]
    subcategory_names: tuple[str, ...]
    codes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def prompts(self) -> list[str]:
        """The captions as prompts of plain words (:func:`prompt_of`), what a text-conditioned model reads."""
        return [prompt_of(c) for c in self.captions]


def prompt_of(caption: str) -> str:
    """A caption as plain words for a whitespace tokenizer: the colons and commas of the names dropped
    ("family: man, woman, boy" → "family man woman boy"; hyphenated words stay whole)."""
    return " ".join(caption.replace(":", " ").replace(",", " ").split())


def check_tarball(path: str | Path, style: str) -> Path:
    """``path`` if its SHA-256 is the one recorded for ``style`` in :data:`PACKAGES`; else ValueError naming both."""
    check_choice("style", style, STYLES)
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != PACKAGES[style][2]:
        name, version = PACKAGES[style][:2]
        raise ValueError(f"{path} is not {name}@{version}: SHA-256 {digest}, expected {PACKAGES[style][2]}")
    return path


def read_package(path: str | Path, image_folder: str) -> tuple[list[dict], dict[str, bytes]]:
    """The ``emoji.json`` records and the 64x64 PNGs (file name → bytes) of an emoji-datasource tarball.

    Nothing is extracted to disk: members are read in memory, and only regular files named exactly
    ``package/emoji.json`` or ``package/img/IMAGE_FOLDER/64/NAME.png`` (NAME: hexadecimal code points and dashes)
    are read; links, folders and any other path (``../`` included) are ignored.

    Raises:
        ValueError: the tarball has no ``package/emoji.json``.
    """
    png_name = re.compile(rf"package/img/{re.escape(image_folder)}/64/([0-9a-f]+(?:-[0-9a-f]+)*\.png)")
    records, pngs = None, {}
    with tarfile.open(path, "r:gz") as archive:
        for member in archive:
            if not member.isreg():
                continue
            match = png_name.fullmatch(member.name)
            if match:
                pngs[match.group(1)] = archive.extractfile(member).read()
            elif member.name == "package/emoji.json":
                records = json.loads(archive.extractfile(member).read())
    if records is None:
        raise ValueError(f"{path} has no package/emoji.json: not an emoji-datasource tarball")
    return records, pngs


def render(png: bytes, size: int = 32) -> np.ndarray:
    """A 64x64 RGBA PNG → (size, size, 3) uint8 RGB: composited on white, then each block of 64/size pixels
    averaged (size 64: no averaging). Integer arithmetic on the way, so the bytes do not depend on the machine."""
    check_choice("size", size, (16, 32, 64))
    rgba = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"), dtype=np.int64)       # (64, 64, 4)
    if rgba.shape != (64, 64, 4):
        raise ValueError(f"png must be a 64x64 image, got {rgba.shape[1]}x{rgba.shape[0]}")
    alpha = rgba[..., 3:]
    on_white = (rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255                 # (64, 64, 3)
    block = 64 // size
    sums = on_white.reshape(size, block, size, block, 3).sum(axis=(1, 3))
    return ((sums + block * block // 2) // (block * block)).astype(np.uint8)


def caption(record: dict) -> str:
    """The caption of an ``emoji.json`` record: its name in lower case ("CAT FACE" → "cat face")."""
    return record["name"].lower()


def build_arrays(tarballs: dict[str, str | Path], size: int = 32) -> dict[str, np.ndarray]:
    """The arrays of the data set from the two tarballs (style → path, each checked by :func:`check_tarball`).

    Returns:
        ``images`` (N, size, size, 3) uint8, ``captions``, ``style``, ``category``, ``subcategory``, ``emoji``,
        ``test`` (bool, the emoji's split) per image, and the name tables ``style_names``, ``category_names``,
        ``subcategory_names``, ``codes``; images ordered by emoji (``sort_order``), then style.
    """
    check_choice("size", size, SIZES)
    packages = {style: read_package(check_tarball(tarballs[style], style), PACKAGES[style][3]) for style in STYLES}
    records = sorted((r for r in packages["noto"][0] if r["category"] not in EXCLUDED_CATEGORIES),
                     key=lambda r: r["sort_order"])
    return arrays_from(records, {style: pngs for style, (_, pngs) in packages.items()}, size)


def arrays_from(records: list[dict], pngs: dict[str, dict[str, bytes]], size: int) -> dict[str, np.ndarray]:
    """:func:`build_arrays` after reading: the records to keep (in order) and each style's PNGs by file name."""
    categories = sorted({r["category"] for r in records})
    subcategories = sorted({r["subcategory"] for r in records})
    test_count = round(TEST_FRACTION * len(records))
    test = np.zeros(len(records), dtype=bool)
    test[np.random.default_rng(SPLIT_SEED).permutation(len(records))[:test_count]] = True
    rows = [(index, s) for index in range(len(records)) for s in range(len(STYLES))]
    missing = [f"{STYLES[s]}: {records[i]['image']}" for i, s in rows if records[i]["image"] not in pngs[STYLES[s]]]
    if missing:
        raise ValueError(f"{len(missing)} images are missing from the tarballs, e.g. {missing[0]}")
    return {
        "images": np.stack([render(pngs[STYLES[s]][records[i]["image"]], size) for i, s in rows]),
        "captions": np.array([caption(records[i]) for i, _ in rows]),
        "style": np.array([s for _, s in rows], dtype=np.int64),
        "category": np.array([categories.index(records[i]["category"]) for i, _ in rows], dtype=np.int64),
        "subcategory": np.array([subcategories.index(records[i]["subcategory"]) for i, _ in rows], dtype=np.int64),
        "emoji": np.array([i for i, _ in rows], dtype=np.int64),
        "test": np.array([test[i] for i, _ in rows]),
        "style_names": np.array(STYLES),
        "category_names": np.array(categories),
        "subcategory_names": np.array(subcategories),
        "codes": np.array([r["unified"] for r in records]),
    }


def write_arrays(arrays: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write ``arrays`` as an ``.npz`` that ``numpy.load`` reads, byte for byte the same for the same arrays: the
    entries in name order, deflated, with a fixed time stamp (``numpy.savez_compressed`` stamps the current time).
    The file is written beside ``path`` and moved onto it (:func:`diffusion_lib.checkpoints.atomic_write`)."""
    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w") as archive:
            for name in sorted(arrays):
                entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                entry.compress_type = zipfile.ZIP_DEFLATED
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[name]), allow_pickle=False)
                archive.writestr(entry, buffer.getvalue(), compresslevel=9)

    return atomic_write(Path(path), write)


def download_tarballs(root: str | Path, *, progress: bool = False) -> dict[str, Path]:
    """Download the two npm tarballs from the npm registry into ``root`` (once; each checked against its SHA-256 in
    :data:`PACKAGES`), as ``npm pack`` would: style → path. About 150 MB in all."""
    root = Path(root).expanduser()
    return {style: download(TARBALL_URL.format(name=name, version=version), root / f"{name}-{version}.tgz", sha256,
                            progress=progress)
            for style, (name, version, sha256, _) in PACKAGES.items()}


def emoji_arrays(size: int, root: str | Path = "~/.cache/diffusion_lib", *, progress: bool = False) -> Path:
    """The ``.npz`` of the data set at ``size`` x ``size``: the shipped file for 32, else ``ROOT/emojiSIZE.npz``, made
    on first use from the two tarballs (:func:`download_tarballs`, :func:`build_arrays`; a few minutes), so that a
    GPU can train at 64x64 with nothing but ``pip install`` and a network."""
    check_choice("size", size, SIZES)
    if size == 32:
        return SHIPPED
    path = Path(root).expanduser() / f"emoji{size}.npz"
    if not path.is_file():
        write_arrays(build_arrays(download_tarballs(path.parent, progress=progress), size), path)
    return path


BACKGROUND_DISTANCE = 0.4
"""A pixel is drawn when its RGB vector in [-1, 1] lies further than this from white (1, 1, 1), the background."""


def silhouettes(images: torch.Tensor, threshold: float = BACKGROUND_DISTANCE) -> torch.Tensor:
    """Where an emoji is drawn on its white background, for images (N, 3, H, W) in [-1, 1]: (N, 1, H, W), 1 where the
    pixel lies further than ``threshold`` from white and -1 elsewhere (a ControlNet's control image; the colour and
    shape readers of :mod:`diffusion_lib.evaluation.emoji_compositions` read the same foreground)."""
    drawn = (images - 1).norm(dim=1, keepdim=True) > threshold
    return drawn.to(images.dtype) * 2 - 1


def load_emoji(split: str = "train", *, path: str | Path | None = None) -> EmojiSet:
    """The emoji data set: ``split`` "train" (90% of the emoji), "test" (the other 10%, every style of them) or
    "all", from the shipped 32x32 arrays or from ``path`` (an ``.npz`` written by ``scripts/make_emoji.py``, e.g.
    at 64x64).

    Returns:
        :class:`EmojiSet`, images (N, 3, S, S) float32 in [-1, 1].
    """
    check_choice("split", split, SPLITS)
    with np.load(SHIPPED if path is None else path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    keep = np.ones(len(arrays["test"]), dtype=bool) if split == "all" else arrays["test"] == (split == "test")
    images = torch.from_numpy(arrays["images"][keep]).permute(0, 3, 1, 2).float() / 127.5 - 1
    return EmojiSet(
        images=images.contiguous(),
        captions=arrays["captions"][keep].tolist(),
        style=torch.from_numpy(arrays["style"][keep]),
        category=torch.from_numpy(arrays["category"][keep]),
        subcategory=torch.from_numpy(arrays["subcategory"][keep]),
        emoji=torch.from_numpy(arrays["emoji"][keep]),
        style_names=tuple(arrays["style_names"].tolist()),
        category_names=tuple(arrays["category_names"].tolist()),
        subcategory_names=tuple(arrays["subcategory_names"].tolist()),
        codes=tuple(arrays["codes"].tolist()),
    )
