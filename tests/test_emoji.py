"""The emoji data set: the shipped arrays, split by emoji, and the pipeline that remakes them from the npm tarballs
(tested on small tarballs written here, in the same layout)."""

import dataclasses
import hashlib
import io
import json
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffusion_lib.data import emoji, emoji_sources
from diffusion_lib.data.emoji import EXCLUDED_CATEGORIES, arrays_from, build_arrays, caption, load_emoji, write_arrays
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

FIRST_SET_IMAGES_SHA256 = "da0b8216413b7ef879f1a0e462ae9d883998be8c1e32f2f74e21b9672735c8a9"  # the two-style set


@pytest.fixture(scope="module")
def train():
    return load_emoji("train")


@pytest.fixture(scope="module")
def test():
    return load_emoji("test")


def test_the_shipped_set_has_every_emoji_in_up_to_five_styles_as_32x32_colour_images_in_range(train, test):
    every = load_emoji("all")
    assert len(every) == len(train) + len(test) == 7590
    assert every.images.shape == (7590, 3, 32, 32) and every.images.dtype == torch.float32
    assert every.images.min() >= -1 and every.images.max() <= 1
    assert every.style_names == STYLES and len(every.codes) == 1636
    # each emoji at most once per style; Noto and Twemoji draw every one, the SVG sets most
    pairs = torch.stack([every.emoji, every.style], 1)
    assert len(torch.unique(pairs, dim=0)) == len(every)
    assert torch.bincount(every.style).tolist() == [1636, 1636, 1586, 1636, 1096]
    assert not set(EXCLUDED_CATEGORIES) & set(every.category_names)
    # colourful: far from grey, and the white background is white, in every style
    assert (every.images.max(1).values - every.images.min(1).values).mean() > 0.15
    for style in range(len(STYLES)):
        assert (every.images[every.style == style][:, :, 0, 0] == 1).float().mean() > 0.85, STYLES[style]


def test_the_two_png_styles_are_the_first_data_set_unchanged():
    first = load_emoji("all", styles=PNG_STYLES)
    assert len(first) == 3272 and torch.bincount(first.emoji).tolist() == [2] * 1636
    pixels = ((first.images.permute(0, 2, 3, 1) + 1) * 127.5).round().to(torch.uint8).contiguous().numpy()
    assert hashlib.sha256(pixels.tobytes()).hexdigest() == FIRST_SET_IMAGES_SHA256
    assert len(load_emoji("train", styles=["openmoji"])) == 1636 - len(set(load_emoji("test").emoji.tolist()))


def test_the_split_is_by_emoji_with_a_tenth_of_them_held_out(train, test):
    assert not set(train.emoji.tolist()) & set(test.emoji.tolist())
    assert len(set(test.emoji.tolist())) == round(0.1 * 1636)
    assert torch.bincount(test.style)[:2].tolist() == [164, 164]  # every style of a held-out emoji
    # every category is in both splits
    assert set(test.category.tolist()) == set(train.category.tolist()) == set(range(len(train.category_names)))


def test_captions_are_the_lower_case_names(train):
    assert "cat face" in train.captions or "cat face" in load_emoji("test").captions
    assert all(c == c.lower() and c.strip() == c and c for c in train.captions)
    assert caption({"name": "RED APPLE"}) == "red apple"


def test_load_emoji_names_a_bad_split_or_style():
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'test', 'all'\), got 'val'"):
        load_emoji("val")
    with pytest.raises(ValueError, match=r"styles must be one of \('noto', .*\), got 'apple'"):
        load_emoji("all", styles=["noto", "apple"])
    for bad in ("noto", [], ["noto", "noto"]):
        with pytest.raises(ValueError, match=r"styles must be a non-empty list of distinct names"):
            load_emoji("all", styles=bad)


# --------------------------------------------------------------------------- the pipeline, on tarballs written here

def _png(rgba: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgba.astype(np.uint8), "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def _add(archive, name: str, data: bytes, kind=tarfile.REGTYPE, target: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, target, len(data) if kind == tarfile.REGTYPE else 0
    archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _tarball(path, folder: str, records: list[dict], images: dict[str, np.ndarray], extra=()):
    with tarfile.open(path, "w:gz") as archive:
        _add(archive, "package/emoji.json", json.dumps(records).encode())
        for name, rgba in images.items():
            _add(archive, f"package/img/{folder}/64/{name}", _png(rgba))
        for member in extra:
            _add(archive, *member)
    return path


def _iconify_tarball(path, icons: dict[str, dict], chars: dict[str, str] | None, aliases=None, extra=()):
    with tarfile.open(path, "w:gz") as archive:
        _add(archive, "package/icons.json", json.dumps({"prefix": "t", "icons": icons, "aliases": aliases or {},
                                                        "width": 32, "height": 32}).encode())
        if chars is not None:
            _add(archive, "package/chars.json", json.dumps(chars).encode())
        for member in extra:
            _add(archive, *member)
    return path


def _records(n: int) -> list[dict]:
    categories = ["Animals & Nature", "Food & Drink", "Flags"]
    return [{"name": f"THING {i}", "unified": f"1F{i:03X}", "image": f"1f{i:03x}.png", "category": categories[i % 3],
             "subcategory": f"sub-{i % 2}", "sort_order": n - i} for i in range(n)]


def _images(records, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {r["image"]: rng.integers(0, 256, (64, 64, 4)) for r in records}


def _square(colour: str) -> dict:
    """An icon: a square of ``colour`` filling the top half of its 32x32 box."""
    return {"body": f'<path fill="{colour}" d="M0 0h32v16H0z"/>'}


def test_on_white_composites_on_white_and_averages_blocks_exactly():
    rgba = np.zeros((64, 64, 4))
    rgba[:32, :, :] = (255, 0, 0, 255)        # top half opaque red
    rgba[32:, :, :] = (0, 0, 255, 0)          # bottom half fully transparent: white
    rgba[0, 0], rgba[0, 1], rgba[1, 0], rgba[1, 1] = (0, 0, 0, 255), (0, 0, 0, 255), (255, 0, 0, 255), (0, 0, 0, 0)
    image = on_white(decode_png(_png(rgba)), 32)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert image[5, 5].tolist() == [255, 0, 0] and image[20, 5].tolist() == [255, 255, 255]
    # the first block: black, black, red, white → the rounded mean of each channel
    assert image[0, 0].tolist() == [round((0 + 0 + 255 + 255) / 4), round(255 / 4), round(255 / 4)]
    half = np.zeros((64, 64, 4))
    half[..., :] = (0, 0, 0, 128)             # half-transparent black on white: grey 127
    assert on_white(decode_png(_png(half)), 64)[0, 0].tolist() == [127, 127, 127]
    with pytest.raises(ValueError, match="size must be one of"):
        on_white(decode_png(_png(rgba)), 24)
    with pytest.raises(ValueError, match="png must be a 64x64 image, got 32x32"):
        decode_png(_png(np.zeros((32, 32, 4))))


def test_an_icon_is_rasterised_at_64x64_exactly_where_its_box_says():
    icons, _ = read_iconify_from({"half": _square("#ff0000")}, None)
    rgba = rasterise(icons["half"])
    assert rgba.shape == (64, 64, 4) and rgba.dtype == np.uint8
    assert (rgba[:32] == [255, 0, 0, 255]).all() and (rgba[32:, :, 3] == 0).all()  # pixel edges: no antialiasing
    wide, _ = read_iconify_from({"wide": {**_square("#0000ff"), "width": 64}}, None)  # a 64x32 box, centred
    drawn = rasterise(wide["wide"])[..., 3] > 0                 # the square: its top left quarter, 16 rows down
    assert drawn[16:32, :32].all() and drawn.sum() == 16 * 32


def read_iconify_from(icons, chars, aliases=None):
    with tempfile.TemporaryDirectory() as folder:
        return read_iconify(_iconify_tarball(Path(folder) / "t.tgz", icons, chars, aliases))


def test_read_iconify_resolves_plain_aliases_and_reads_nothing_else(tmp_path):
    path = _iconify_tarball(tmp_path / "t.tgz", {"cat-face": _square("#f80"), "dog-face": _square("#840")},
                            {"1f431": "cat-face"},
                            aliases={"cat": {"parent": "cat-face"}, "left-cat": {"parent": "cat-face", "hFlip": True}},
                            extra=[("package/../../evil.json", b"x"),
                                   ("package/chars.json.bak", b"", tarfile.SYMTYPE, "/etc/passwd")])
    icons, chars = read_iconify(path)
    assert sorted(icons) == ["cat", "cat-face", "dog-face"] and icons["cat"] == icons["cat-face"]
    assert icons["cat-face"].startswith('<svg xmlns="http://www.w3.org/2000/svg"') and 'viewBox="0 0 32 32"' in \
        icons["cat-face"]
    assert chars == {"1f431": "cat-face"}
    assert not list(tmp_path.glob("**/evil.json"))
    with pytest.raises(ValueError, match=r"has no package/icons\.json"):
        read_iconify(_empty_tarball(tmp_path / "none.tgz"))


def test_icons_are_matched_by_sequence_then_by_the_names_of_other_sets_then_by_the_unicode_name():
    records = [{"unified": "1F431", "name": "CAT FACE"}, {"unified": "2764-FE0F", "name": "HEAVY BLACK HEART"},
               {"unified": "1F916", "name": "ROBOT FACE"}, {"unified": "1F408", "name": "CAT"},
               {"unified": "1F42D", "name": "MOUSE FACE"}, {"unified": "1F401", "name": "MOUSE"}]
    icons = dict.fromkeys(["kitty", "red-heart", "robot-face", "cat", "mouse"], "<svg/>")
    own = {"1f431": "kitty"}                                  # the set's own map wins
    elsewhere = {"2764": {"red-heart"}, "1f408": {"cat"},     # FE0F does not matter
                 "1f42d": {"mouse"}, "1f401": {"mouse"}}      # one icon, two sequences: neither gets it
    found = match_icons(records, icons, own, elsewhere)
    assert found == {"1F431": "kitty", "2764-FE0F": "red-heart", "1F916": "robot-face", "1F408": "cat"}
    assert sequence("2764-FE0F") == "2764"
    assert sequence("1F469-200D-2764-FE0F-200D-1F468") == "1f469-200d-2764-200d-1f468"


def test_read_package_reads_only_the_pngs_and_the_json_and_ignores_links_and_other_paths(tmp_path):
    records = _records(3)
    path = _tarball(tmp_path / "t.tgz", "google", records, _images(records, 0), extra=[
        ("package/img/google/64/../../../../evil.png", b"x"),
        ("package/img/google/64/1f999.png", b"", tarfile.SYMTYPE, "/etc/passwd"),
        ("package/img/twitter/64/1f000.png", b"other style"),
        ("package/img/google/32/1f000.png", b"other size"),
    ])
    read_records, pngs = read_package(path, "google")
    assert read_records == records
    assert sorted(pngs) == sorted(r["image"] for r in records)
    assert not list(tmp_path.glob("**/evil.png"))
    with pytest.raises(ValueError, match=r"has no package/emoji\.json"):
        read_package(_empty_tarball(tmp_path / "none.tgz"), "google")


def _empty_tarball(path):
    with tarfile.open(path, "w:gz"):
        pass
    return path


def test_a_tarball_with_another_hash_is_refused_by_name(tmp_path):
    path = tmp_path / "emoji-datasource-google-16.0.0.tgz"
    path.write_bytes(b"not the package")
    with pytest.raises(ValueError, match=r"is not emoji-datasource-google@16.0.0: SHA-256 [0-9a-f]{64}, expected"):
        check_tarball(path, "noto")
    assert PACKAGES["openmoji"].tarball == "iconify-json-openmoji-1.2.29.tgz"  # as `npm pack` names it
    assert PACKAGES["openmoji"].url.endswith("/@iconify-json/openmoji/-/openmoji-1.2.29.tgz")


def _pictures(records, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {r["unified"]: rng.integers(0, 256, (64, 64, 4)).astype(np.uint8) for r in records}


def test_arrays_from_keeps_every_style_it_is_given_splits_by_emoji_and_writes_the_same_bytes_twice(tmp_path):
    records = [r for r in _records(40) if r["category"] not in EXCLUDED_CATEGORIES]
    pictures = {style: _pictures(records, seed) for seed, style in enumerate(STYLES)}
    del pictures["emojione"][records[2]["unified"]]           # an SVG set need not draw every emoji
    arrays = arrays_from(records, pictures, 32)
    assert arrays["images"].shape == (5 * len(records) - 1, 32, 32, 3)
    assert arrays["emoji"].tolist() == [i for i in range(len(records)) for _ in range(5 - (i == 2))]
    assert arrays["style"][:10].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    assert np.array_equal(arrays["images"][3], on_white(pictures["openmoji"][records[0]["unified"]], 32))
    held = set(arrays["emoji"][arrays["test"]].tolist())
    assert len(held) == round(0.1 * len(records)) and not held & set(arrays["emoji"][~arrays["test"]].tolist())
    first, second = write_arrays(arrays, tmp_path / "a.npz"), write_arrays(arrays, tmp_path / "b.npz")
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    loaded = load_emoji("all", path=first)
    assert torch.equal(loaded.images, torch.from_numpy(arrays["images"]).permute(0, 3, 1, 2).float() / 127.5 - 1)
    assert loaded.captions == [r["name"].lower() for i, r in enumerate(records) for _ in range(5 - (i == 2))]
    assert len(load_emoji("all", styles=["emojione"], path=first)) == len(records) - 1
    del pictures["twemoji"][records[3]["unified"]]            # a PNG style must
    missing = records[3]["unified"]
    with pytest.raises(ValueError, match=rf"1 images are missing from the tarballs, e.g. twemoji: {missing}"):
        arrays_from(records, pictures, 32)


def _five_tarballs(folder, records) -> dict[str, Path]:
    """The five packages in small, as `npm pack` names them: the PNG sets draw every record, Fluent the first
    four (by chars.json), OpenMoji every one, EmojiOne (no chars.json) those the others name."""
    paths = {}
    for style, seed in (("noto", 3), ("twemoji", 4)):
        paths[style] = _tarball(folder / PACKAGES[style].tarball, PACKAGES[style].folder, records,
                                _images(records, seed))
    colours = ["#ff0000", "#00ff00", "#0000ff", "#ffff00", "#00ffff", "#ff00ff"]
    names = {r["unified"]: f"thing-{i}" for i, r in enumerate(records)}
    icons = {names[r["unified"]]: _square(colours[i % 6]) for i, r in enumerate(records)}
    chars = {r["unified"].lower(): names[r["unified"]] for r in records}
    for style, kept in (("fluent", 4), ("openmoji", len(records))):
        paths[style] = _iconify_tarball(folder / PACKAGES[style].tarball,
                                        {n: icons[n] for n in list(icons)[:kept]}, dict(list(chars.items())[:kept]))
    paths["emojione"] = _iconify_tarball(folder / PACKAGES["emojione"].tarball, icons, None)
    return paths


def _packages_of(paths) -> dict:
    return {style: dataclasses.replace(PACKAGES[style], sha256=hashlib.sha256(paths[style].read_bytes()).hexdigest())
            for style in STYLES}


def test_build_arrays_checks_each_tarball_before_reading_it(tmp_path, monkeypatch):
    records = _records(6)
    paths = _five_tarballs(tmp_path, records)
    monkeypatch.setattr(emoji_sources, "PACKAGES", _packages_of(paths))
    monkeypatch.setattr(emoji, "PACKAGES", _packages_of(paths))
    arrays = build_arrays(paths, 16)
    kept = sorted((r for r in records if r["category"] not in EXCLUDED_CATEGORIES), key=lambda r: r["sort_order"])
    assert arrays["codes"].tolist() == [r["unified"] for r in kept]
    fluent_drawn = {r["unified"] for r in records[:4]}
    counts = np.bincount(arrays["style"], minlength=5).tolist()
    assert counts == [len(kept), len(kept), sum(r["unified"] in fluent_drawn for r in kept), len(kept), len(kept)]
    openmoji = arrays["images"][arrays["style"] == 3]
    assert (openmoji[:, :8] != 255).any(-1).all() and (openmoji[:, 8:] == 255).all()  # the top half drawn
    paths["noto"].write_bytes(paths["noto"].read_bytes() + b"\0")
    with pytest.raises(ValueError, match="is not emoji-datasource-google"):
        build_arrays(paths, 16)


def test_the_shipped_file_is_what_write_arrays_makes_of_its_own_arrays(tmp_path):
    with np.load(emoji.SHIPPED, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    again = write_arrays(arrays, tmp_path / "again.npz")

    def entries(path):  # name, size, CRC-32 and time stamp of each entry: the same whatever zlib compressed them
        with zipfile.ZipFile(path) as archive:
            return [(i.filename, i.file_size, i.CRC, i.date_time) for i in archive.infolist()]

    assert entries(again) == entries(emoji.SHIPPED)


def test_a_damaged_or_replaced_emoji_file_is_refused_naming_it(tmp_path, monkeypatch):
    """The shipped arrays are checked against their SHA-256, so a truncated, byte-flipped or re-zipped file (zeroed
    images, another size) is refused by name; any other file must at least be a readable zip of the data set's
    arrays with their shapes."""
    good = emoji.SHIPPED.read_bytes()
    with np.load(emoji.SHIPPED, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    shipped = tmp_path / "emoji32.npz"
    monkeypatch.setattr(emoji, "SHIPPED", shipped)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    zeroed = write_arrays({**arrays, "images": np.zeros_like(arrays["images"])}, tmp_path / "zeroed.npz")
    small = write_arrays({**arrays, "images": arrays["images"][:, ::2, ::2]}, tmp_path / "small.npz")
    for damaged in (good[: len(good) // 2], bytes(flipped), zeroed.read_bytes(), small.read_bytes()):
        shipped.write_bytes(damaged)
        with pytest.raises(ValueError, match=rf"{shipped} is not the shipped emoji data: its SHA-256 is"):
            load_emoji("test")
    shipped.write_bytes(good)
    assert len(load_emoji("test")) == 769
    for name, content in (("truncated.npz", good[: len(good) // 2]), ("flipped.npz", bytes(flipped))):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=rf"{tmp_path / name} is not a readable emoji \.npz"):
            load_emoji("test", path=tmp_path / name)
    write_arrays({k: v for k, v in arrays.items() if k != "codes"}, tmp_path / "partial.npz")
    with pytest.raises(ValueError, match=r"partial\.npz is not an emoji \.npz: it lacks the arrays \['codes'\]"):
        load_emoji("test", path=tmp_path / "partial.npz")
    write_arrays({**arrays, "images": arrays["images"][:, :30, :30]}, tmp_path / "odd.npz")
    with pytest.raises(ValueError, match=r"odd\.npz: images must be uint8 \(N, S, S, 3\) with S in"):
        load_emoji("test", path=tmp_path / "odd.npz")
    write_arrays({**arrays, "style": arrays["style"][:-1]}, tmp_path / "short.npz")
    with pytest.raises(ValueError, match=r"short\.npz: every per-image array must have one entry per image"):
        load_emoji("test", path=tmp_path / "short.npz")
    assert len(load_emoji("test", path=small)) == 769  # another size, well formed: what make_emoji.py writes


def test_a_training_config_reads_emoji_with_categories_mirrored_copies_or_captions(tmp_path):
    from diffusion_lib.recipes.diffusion import load_data
    from diffusion_lib.train.config import read_config

    config_file = tmp_path / "emoji.toml"
    config_file.write_text('[data]\ndataset = "emoji"\nclass_conditional = true\nmirror = true\n'
                           '[model]\npreset = "emoji"\n[train]\nsteps = 1\n')
    data = read_config(config_file)["data"]
    train = load_emoji("train")
    images, labels = load_data(data)
    n = len(train)
    assert images.shape == (2 * n, 3, 32, 32)
    assert torch.equal(images[:n], train.images) and torch.equal(images[n:], train.images.flip(-1))
    assert torch.equal(labels, torch.cat([train.category, train.category]))
    test_images, test_labels = load_data(data, "test")  # the test split is never mirrored
    assert torch.equal(test_images, load_emoji("test").images) and len(test_labels) == len(test_images)
    _, captions = load_data({**data, "mirror": False}, captions=True)
    assert captions == train.prompts and len(captions) == n


def test_prompts_are_the_captions_in_plain_words():
    assert emoji.prompt_of("family: man, woman, boy") == "family man woman boy"
    assert emoji.prompt_of("left-pointing magnifying glass") == "left-pointing magnifying glass"
    prompts = load_emoji("all").prompts
    assert not any(":" in p or "," in p or "  " in p for p in prompts)


def test_a_text_model_of_the_emoji_knows_every_word_of_every_name(tmp_path):
    from diffusion_lib.recipes.diffusion import build
    from diffusion_lib.train.config import read_config

    config_file = tmp_path / "emoji_text.toml"
    config_file.write_text('[data]\ndataset = "emoji"\n[model]\npreset = "emoji"\nch = 8\n'
                           '[text]\ndim = 16\ndepth = 1\nheads = 2\n[train]\nsteps = 1\n')
    built = build(read_config(config_file), torch.device("cpu"))
    model, images, cond = built.model, built.images, built.cond
    assert images.shape == (len(load_emoji("train")), 3, 32, 32) and cond["ids"].shape[0] == len(images)
    test_only = {w for p in load_emoji("test").prompts for w in p.split()} - \
        {w for p in load_emoji("train").prompts for w in p.split()}
    assert "abacus" in test_only and test_only <= set(model.tokenizer.vocab)
    model.encode_prompts(load_emoji("test").prompts)  # a held-out emoji's name is a valid prompt


def test_other_sizes_are_made_once_from_tarballs_fetched_from_the_registry(tmp_path, monkeypatch):
    records = _records(6)
    registry = tmp_path / "registry"
    staged = _five_tarballs(tmp_path, records)
    for package in PACKAGES.values():  # laid out as the npm registry serves them
        served = registry / package.url.removeprefix(emoji_sources.REGISTRY + "/")
        served.parent.mkdir(parents=True, exist_ok=True)
        staged_path = tmp_path / package.tarball
        served.write_bytes(staged_path.read_bytes())
    monkeypatch.setattr(emoji_sources, "PACKAGES", _packages_of(staged))
    monkeypatch.setattr(emoji, "PACKAGES", _packages_of(staged))
    monkeypatch.setattr(emoji_sources, "REGISTRY", registry.as_uri())
    assert emoji.emoji_arrays(32, tmp_path / "cache") == emoji.SHIPPED  # the shipped size is never rebuilt
    path = emoji.emoji_arrays(16, tmp_path / "cache")
    assert path == tmp_path / "cache" / "emoji16.npz"
    assert all((tmp_path / "cache" / package.tarball).is_file() for package in PACKAGES.values())
    assert load_emoji("all", styles=PNG_STYLES, path=path).images.shape == (2 * 4, 3, 16, 16)  # 4 of 6: no flags
    stamp = path.stat().st_mtime_ns
    assert emoji.emoji_arrays(16, tmp_path / "cache") == path and path.stat().st_mtime_ns == stamp  # made once
    with pytest.raises(ValueError, match=r"size must be one of \(16, 32, 64\), got 48"):
        emoji.emoji_arrays(48, tmp_path / "cache")


def test_held_out_names_leave_the_training_split_in_every_style(tmp_path):
    from diffusion_lib.recipes.diffusion import load_data
    from diffusion_lib.train.config import read_config

    config_file = tmp_path / "emoji.toml"
    config_file.write_text('[data]\ndataset = "emoji"\nhold_out = ["green heart", "large red square"]\n'
                           '[model]\npreset = "emoji"\n[train]\nsteps = 1\n')
    data = read_config(config_file)["data"]
    train = load_emoji("train")
    images, prompts = load_data(data, captions=True)
    assert len(prompts) == len(train) - 9  # five styles of each, but EmojiOne has no large red square
    assert "green heart" not in prompts and "large red square" not in prompts
    kept = [i for i, p in enumerate(train.prompts) if p not in ("green heart", "large red square")]
    assert torch.equal(images, train.images[kept])
    assert len(load_data(data, "test")[0]) == len(load_emoji("test"))  # the test split is untouched
    with pytest.raises(ValueError, match=r"data\.hold_out: \['large purple circle'\] are not names of training"):
        load_data({**data, "hold_out": ["large purple circle"]})  # a test emoji: never trained on anyway
    config_file.write_text(config_file.read_text().replace('"emoji"\n', '"digits"\n', 1))
    with pytest.raises(ValueError, match=r"data\.hold_out names emoji to keep out of training"):
        read_config(config_file)
    config_file.write_text(config_file.read_text().replace('"digits"\n', '"emoji"\n', 1).replace('"green heart"', "3"))
    with pytest.raises(ValueError, match=r"data\.hold_out must be a list of emoji names"):
        read_config(config_file)


def test_repeated_names_appear_repeat_times_in_training_and_the_config_checks_them(tmp_path):
    from diffusion_lib.recipes.diffusion import load_data
    from diffusion_lib.train.config import read_config

    config_file = tmp_path / "emoji.toml"
    header = '[data]\ndataset = "emoji"\nhold_out = ["green heart"]\n'
    config_file.write_text(header + 'repeat = 3\nrepeat_names = ["blue heart", "large red circle"]\n'
                           '[model]\npreset = "emoji"\n[train]\nsteps = 1\n')
    data = read_config(config_file)["data"]
    train = load_emoji("train")
    images, prompts = load_data(data, captions=True)
    repeated = [i for i, p in enumerate(train.prompts) if p in ("blue heart", "large red circle")]
    kept = [i for i, p in enumerate(train.prompts) if p != "green heart"]
    assert len(repeated) == 10  # every style of each
    assert prompts == [train.prompts[i] for i in kept + repeated * 2]
    assert torch.equal(images, train.images[kept + repeated * 2])
    images, categories = load_data(data)
    assert torch.equal(categories, train.category[kept + repeated * 2])
    assert len(load_data(data, "test")[0]) == len(load_emoji("test"))  # the test split is untouched
    with pytest.raises(ValueError, match=r"data\.repeat_names: \['large purple circle'\] are not names of training"):
        load_data({**data, "repeat_names": ["large purple circle"]})
    for body, message in (('repeat = 3\n', r"data\.repeat \(> 1\) and data\.repeat_names go together, got "
                                            r"repeat = 3 and 0 names"),
                          ('repeat_names = ["blue heart"]\n', r"go together, got repeat = 1 and 1 names"),
                          ('repeat = 2\nrepeat_names = ["green heart"]\n',
                           r"data\.repeat_names and data\.hold_out both name \['green heart'\]"),
                          ('repeat = 0\nrepeat_names = ["blue heart"]\n', r"data\.repeat must be an int >= 1")):
        config_file.write_text(header + body + '[model]\npreset = "emoji"\n[train]\nsteps = 1\n')
        with pytest.raises(ValueError, match=message):
            read_config(config_file)


def test_style_prompts_caption_every_image_twice_by_name_then_in_its_style(tmp_path):
    from diffusion_lib.data.emoji import in_style
    from diffusion_lib.recipes.diffusion import build, load_data
    from diffusion_lib.train.config import read_config

    assert in_style("cat face", "openmoji") == "cat face in the openmoji style"
    with pytest.raises(ValueError, match=r"style must be one of .*'noto'.*got 'apple'"):
        in_style("cat face", "apple")
    config_file = tmp_path / "emoji.toml"
    config_file.write_text('[data]\ndataset = "emoji"\nstyle_prompts = true\nhold_out = ["green heart"]\n'
                           '[model]\npreset = "emoji"\nch = 8\nch_mult = [1]\nattn_resolutions = []\n'
                           '[text]\ndim = 16\ndepth = 1\nheads = 2\n[train]\nsteps = 1\n')
    config = read_config(config_file)
    train = load_emoji("train")
    images, prompts = load_data(config["data"], captions=True)
    kept = [i for i, p in enumerate(train.prompts) if p != "green heart"]
    styled = [in_style(train.prompts[i], train.style_names[int(train.style[i])]) for i in kept]
    assert prompts == [train.prompts[i] for i in kept] + styled
    assert torch.equal(images, torch.cat([train.images[kept], train.images[kept]]))
    assert "green heart in the noto style" not in prompts and "cat face in the fluent style" in prompts
    _, test_prompts = load_data(config["data"], "test", captions=True)
    assert len(test_prompts) == 2 * len(load_emoji("test"))
    model = build(config, torch.device("cpu")).model
    model.encode_prompts(["grinning face in the emojione style"])  # the style words are in the vocabulary
    for body, message in (('[model]\npreset = "emoji"\n[train]\nsteps = 1\n', "it needs data.dataset = 'emoji' and "
                                                                            r"a \[text\] table"),):
        config_file.write_text('[data]\ndataset = "emoji"\nstyle_prompts = true\n' + body)
        with pytest.raises(ValueError, match=message):
            read_config(config_file)
