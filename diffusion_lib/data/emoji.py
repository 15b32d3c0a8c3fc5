"""Emoji: real, colourful, captioned images that travel with the package.

Five openly licensed styles of every emoji, from npm packages (:mod:`diffusion_lib.data.emoji_sources` reads and
rasterises them): Google's Noto and Twemoji as 64x64 PNGs with an ``emoji.json`` of names and categories
(``emoji-datasource``), Microsoft's Fluent Emoji Flat, OpenMoji and EmojiOne 2 as SVG (Iconify JSON).

The arrays shipped in ``diffusion_lib/data/emoji/`` (licences and attribution beside them) are made by
``python scripts/make_emoji.py`` from the five tarballs, byte for byte with the same zlib and resvg
(:func:`build_arrays`, :func:`write_arrays`):

- every emoji outside the "Flags" and "Component" categories (flags are striped rectangles, components are skin-tone
  swatches and hair pieces, not pictures), in every style that draws it: 1,636 emoji, each in Noto and Twemoji, and in
  Fluent, OpenMoji and EmojiOne where those packages have it;
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

import functools
import io
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffusion_lib.checkpoints import atomic_write, sha256_of
from diffusion_lib.checks import check_choice
from diffusion_lib.data.downloads import download
from diffusion_lib.data.emoji_sources import (
    PACKAGES,
    PNG_STYLES,
    STYLES,
    check_tarball,
    decode_png,
    match_icons,
    on_white,
    rasterise,
    read_iconify,
    read_package,
    sequence,
)

EXCLUDED_CATEGORIES = ("Flags", "Component")
TEST_FRACTION = 0.1
SPLIT_SEED = 0
SHIPPED = Path(__file__).resolve().parent / "emoji" / "emoji32.npz"
SHIPPED_SHA256 = "ee6a3b4e0b6823b7ac3aa9cb5da5824cc6e6fea4a53629fbcfec46676a2539aa"
"""Of :data:`SHIPPED`, which ``scripts/make_emoji.py`` remakes byte for byte: checked whenever it is read."""
PER_IMAGE = ("images", "captions", "style", "category", "subcategory", "emoji", "test")
"""The arrays of an emoji ``.npz`` with one entry per image; the others name the styles, categories and codes."""
NAMES = ("style_names", "category_names", "subcategory_names", "codes")
SPLITS = ("train", "test", "all")
SIZES = (16, 32, 64)
STYLE_TITLES = {"noto": "Noto", "twemoji": "Twemoji", "fluent": "Fluent", "openmoji": "OpenMoji",
                "emojione": "EmojiOne"}


@dataclass(frozen=True)
class EmojiSet:
    """Emoji images and their labels.

    Attributes:
        images: (N, 3, S, S) float32 in [-1, 1] (white background = 1).
        captions: N names in lower case, e.g. "cat face".
        style: (N,) int64 index into ``style_names`` (:data:`STYLES`, whichever styles were loaded).
        category, subcategory: (N,) int64 indices into ``category_names`` / ``subcategory_names``.
        emoji: (N,) int64 index of the emoji (the same for each of its styles) into ``codes``.
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


def in_style(prompt: str, style: str) -> str:
    """A prompt that also asks for a style of :data:`STYLES` ("cat face", "openmoji" → "cat face in the openmoji
    style"); a text model trained with ``data.style_prompts`` learns both forms."""
    check_choice("style", style, STYLES)
    return f"{prompt} in the {style} style"


def caption(record: dict) -> str:
    """The caption of an ``emoji.json`` record: its name in lower case ("CAT FACE" → "cat face")."""
    return record["name"].lower()


def build_arrays(tarballs: dict[str, str | Path], size: int = 32) -> dict[str, np.ndarray]:
    """The arrays of the data set from the five tarballs (style → path, each checked by
    :func:`~diffusion_lib.data.emoji_sources.check_tarball` before it is read).

    Returns:
        ``images`` (N, size, size, 3) uint8, ``captions``, ``style``, ``category``, ``subcategory``, ``emoji``,
        ``test`` (bool, the emoji's split) per image, and the name tables ``style_names``, ``category_names``,
        ``subcategory_names``, ``codes``; images ordered by emoji (``sort_order``), then style.
    """
    check_choice("size", size, SIZES)
    for style in STYLES:
        check_tarball(tarballs[style], style)
    read = {style: read_package(tarballs[style], PACKAGES[style].folder) for style in PNG_STYLES}
    records = sorted((r for r in read["noto"][0] if r["category"] not in EXCLUDED_CATEGORIES),
                     key=lambda r: r["sort_order"])
    pictures = {style: {r["unified"]: decode_png(pngs[r["image"]]) for r in records if r["image"] in pngs}
                for style, (_, pngs) in read.items()}
    iconify = {style: read_iconify(tarballs[style]) for style in STYLES if style not in PNG_STYLES}
    names_elsewhere: dict[str, set[str]] = {}
    for _, chars in iconify.values():
        for code, name in chars.items():
            names_elsewhere.setdefault(sequence(code), set()).add(name)
    for style, (icons, chars) in iconify.items():
        matched = match_icons(records, icons, chars, names_elsewhere)
        pictures[style] = {code: rasterise(icons[name]) for code, name in matched.items()}
    return arrays_from(records, pictures, size)


def arrays_from(records: list[dict], pictures: dict[str, dict[str, np.ndarray]], size: int) -> dict[str, np.ndarray]:
    """:func:`build_arrays` after reading: the records to keep (in order) and each style's (64, 64, 4) RGBA pictures
    by the record's ``unified`` sequence. The styles of :data:`PNG_STYLES` must draw every record; the others draw
    those they have."""
    categories = sorted({r["category"] for r in records})
    subcategories = sorted({r["subcategory"] for r in records})
    test_count = round(TEST_FRACTION * len(records))
    test = np.zeros(len(records), dtype=bool)
    test[np.random.default_rng(SPLIT_SEED).permutation(len(records))[:test_count]] = True
    missing = [f"{style}: {r['unified']}" for style in PNG_STYLES for r in records if r["unified"] not in
               pictures[style]]
    if missing:
        raise ValueError(f"{len(missing)} images are missing from the tarballs, e.g. {missing[0]}")
    rows = [(index, s) for index, r in enumerate(records) for s, style in enumerate(STYLES)
            if r["unified"] in pictures.get(style, {})]
    return {
        "images": np.stack([on_white(pictures[STYLES[s]][records[i]["unified"]], size) for i, s in rows]),
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
    """Download the five npm tarballs from the npm registry into ``root`` (once; each checked against its SHA-256 in
    :data:`~diffusion_lib.data.emoji_sources.PACKAGES`), as ``npm pack`` would: style → path. About 140 MB in all."""
    root = Path(root).expanduser()
    return {style: download(package.url, root / package.tarball, package.sha256, progress=progress)
            for style, package in PACKAGES.items()}


def emoji_arrays(size: int, root: str | Path = "~/.cache/diffusion_lib", *, progress: bool = False) -> Path:
    """The ``.npz`` of the data set at ``size`` x ``size``: the shipped file for 32, else ``ROOT/emojiSIZE.npz``, made
    on first use from the five tarballs (:func:`download_tarballs`, :func:`build_arrays`; a few minutes, and
    ``pip install resvg-py`` for the SVG styles), so that a GPU can train at 64x64 with nothing but ``pip install``
    and a network."""
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


@functools.lru_cache(maxsize=4)
def file_sha256(path: Path, modified_ns: int, size: int) -> str:
    """The SHA-256 of ``path``, computed once per version of the file (its time stamp and size)."""
    return sha256_of(path)


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an emoji ``.npz`` (as :func:`write_arrays` writes them), checked: the shipped file must have its
    SHA-256, and any file the entries, shapes and types of the data set.

    Raises:
        ValueError: the file cannot be read as a zip of arrays, lacks an array, or holds arrays of the wrong shape or
            type; the shipped file has another SHA-256. The message names the file.
    """
    path = Path(path)
    if path.resolve() == SHIPPED:
        stat = path.stat()
        actual = file_sha256(path.resolve(), stat.st_mtime_ns, stat.st_size)
        if actual != SHIPPED_SHA256:
            raise ValueError(f"{path} is not the shipped emoji data: its SHA-256 is {actual}, not {SHIPPED_SHA256}; "
                             "reinstall diffusion_lib, or remake it with python scripts/make_emoji.py")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"{path} is not a readable emoji .npz ({type(err).__name__}: {err}); remake it with python "
                         "scripts/make_emoji.py") from None
    missing = sorted(set(PER_IMAGE + NAMES) - set(arrays))
    if missing:
        raise ValueError(f"{path} is not an emoji .npz: it lacks the arrays {missing}")
    images = arrays["images"]
    if not (images.dtype == np.uint8 and images.ndim == 4 and images.shape[1] == images.shape[2] in SIZES
            and images.shape[3] == 3):
        raise ValueError(f"{path}: images must be uint8 (N, S, S, 3) with S in {SIZES}, got {images.dtype} "
                         f"{images.shape}")
    lengths = {name: len(arrays[name]) for name in PER_IMAGE}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{path}: every per-image array must have one entry per image, got lengths {lengths}")
    return arrays


def load_emoji(split: str = "train", *, styles: tuple[str, ...] | list[str] = STYLES,
               path: str | Path | None = None) -> EmojiSet:
    """The emoji data set: ``split`` "train" (90% of the emoji), "test" (the other 10%, every style of them) or
    "all", in the given ``styles`` (a selection of :data:`STYLES`, default all five; ``PNG_STYLES`` is the first,
    two-style set), from the shipped 32x32 arrays or from ``path`` (an ``.npz`` written by
    ``scripts/make_emoji.py``, e.g. at 64x64).

    Returns:
        :class:`EmojiSet`, images (N, 3, S, S) float32 in [-1, 1].
    """
    check_choice("split", split, SPLITS)
    if isinstance(styles, str) or not styles or len(set(styles)) != len(styles):
        raise ValueError(f"styles must be a non-empty list of distinct names from {STYLES}, got {styles!r}")
    for style in styles:
        check_choice("styles", style, STYLES)
    arrays = read_arrays(SHIPPED if path is None else path)
    keep = np.ones(len(arrays["test"]), dtype=bool) if split == "all" else arrays["test"] == (split == "test")
    names = arrays["style_names"].tolist()
    keep &= np.isin(arrays["style"], [names.index(style) for style in styles if style in names])
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
