"""Tests for diffusion_lib.data: toys, digits, checked downloads, IDX files and the MNIST loaders. No network."""

import gzip
import hashlib
import math
import struct

import numpy as np
import pytest
import torch

import diffusion_lib.data.mnist as mnist_module
from diffusion_lib.checkpoints import sha256_of
from diffusion_lib.data import (
    FileSpec,
    download,
    eight_gaussians,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    swiss_roll,
    toy_2d,
    two_moons,
)

TOY_NAMES = ["swiss_roll", "two_moons", "eight_gaussians"]


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- 2-D toys -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toy_has_shape_n_by_2_and_float32(name):
    x = toy_2d(name, 37, generator=seeded(0))
    assert x.shape == (37, 2)
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toy_is_reproducible_with_a_seeded_generator(name):
    assert torch.equal(toy_2d(name, 500, generator=seeded(3)), toy_2d(name, 500, generator=seeded(3)))


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toy_differs_with_different_seeds(name):
    assert not torch.allclose(toy_2d(name, 500, generator=seeded(3)), toy_2d(name, 500, generator=seeded(4)))


@pytest.mark.parametrize(
    ("make", "std_x", "std_y"),
    [
        (lambda n, g: swiss_roll(n, noise=0.0, generator=g), 0.97, 1.02),
        (lambda n, g: two_moons(n, noise=0.0, generator=g), 1.23, 0.70),
        (lambda n, g: eight_gaussians(n, generator=g), 1.005, 1.005),
    ],
    ids=TOY_NAMES,
)
def test_toy_has_the_documented_mean_and_scale(make, std_x, std_y):
    x = make(50_000, seeded(0))
    assert x.mean(0).abs().max() < 0.03
    assert torch.allclose(x.std(0), torch.tensor([std_x, std_y]), atol=0.03)


def test_swiss_roll_without_noise_lies_on_the_documented_spiral():
    # Docstring: points = ((t cos t, t sin t) - (2, 2/(3π))) / 6.8 with t in [1.5π, 4.5π]; the radius recovers t.
    p = swiss_roll(2000, noise=0.0, generator=seeded(0)).double() * 6.8 + torch.tensor([2.0, 2.0 / (3 * math.pi)])
    t = p.norm(dim=1)
    assert t.min() >= 1.5 * math.pi - 1e-4 and t.max() <= 4.5 * math.pi + 1e-4
    assert torch.allclose(p, torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1), atol=1e-3)


def test_two_moons_without_noise_alternate_between_the_two_half_circles():
    q = two_moons(1000, noise=0.0, generator=seeded(0)) * 0.705 + torch.tensor([0.5, 0.25])
    upper, lower = q[0::2], q[1::2]
    assert torch.allclose(upper.norm(dim=1), torch.ones(500), atol=1e-4) and (upper[:, 1] >= -1e-5).all()
    assert torch.allclose((lower - torch.tensor([1.0, 0.5])).norm(dim=1), torch.ones(500), atol=1e-4)
    assert (lower[:, 1] <= 0.5 + 1e-5).all()


@pytest.mark.parametrize("make", [swiss_roll, two_moons], ids=["swiss_roll", "two_moons"])
def test_noise_is_gaussian_with_the_given_std_around_the_same_curve(make):
    difference = make(20_000, noise=0.3, generator=seeded(1)) - make(20_000, noise=0.0, generator=seeded(1))
    assert difference.mean(0).abs().max() < 0.01
    assert torch.allclose(difference.std(0), torch.tensor([0.3, 0.3]), atol=0.01)


def test_eight_gaussians_puts_points_near_eight_ring_centres():
    radius, std = 2.0, 0.05
    x = eight_gaussians(8000, radius=radius, std=std, generator=seeded(0))
    angles = 2 * math.pi * torch.arange(8) / 8
    centres = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    distance, nearest = torch.cdist(x, centres).min(dim=1)
    assert distance.max() < 6 * std
    share = torch.bincount(nearest, minlength=8) / len(x)
    assert torch.allclose(share, torch.full((8,), 1 / 8), atol=0.02)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: swiss_roll(0), r"n must be an int >= 1, got 0"),
        (lambda: two_moons(2.5), r"n must be an int >= 1, got 2\.5"),
        (lambda: eight_gaussians(True), r"n must be an int >= 1, got True"),
        (lambda: swiss_roll(10, noise=-0.1), r"noise must be a finite number >= 0, got -0\.1"),
        (lambda: two_moons(10, noise=float("nan")), r"noise must be a finite number >= 0, got nan"),
        (lambda: eight_gaussians(10, radius=0.0), r"radius must be a finite number > 0, got 0\.0"),
        (lambda: eight_gaussians(10, radius=-2), r"radius must be a finite number > 0, got -2"),
        (lambda: eight_gaussians(10, std=-1.0), r"std must be a finite number >= 0, got -1\.0"),
        (lambda: toy_2d("spiral", 10), r"name must be one of swiss_roll, two_moons, eight_gaussians; got 'spiral'"),
    ],
)
def test_toys_reject_bad_input_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- digits ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("split", "n"), [("train", 1437), ("test", 360), ("all", 1797)])
def test_digits_have_the_documented_shapes_and_dtypes(split, n):
    images, labels = load_digits(split)
    assert images.shape == (n, 1, 8, 8) and images.dtype == torch.float32
    assert labels.shape == (n,) and labels.dtype == torch.int64


def test_digits_take_exactly_17_grey_levels_from_minus_one_to_one():
    images, _ = load_digits("all")
    assert torch.equal(torch.unique(images), torch.arange(17, dtype=torch.float32) / 8 - 1)


def test_digits_train_and_test_partition_all_images():
    def rows(split):
        images, labels = load_digits(split)
        return np.concatenate([images.flatten(1).numpy(), labels[:, None].numpy()], axis=1)

    together = np.concatenate([rows("train"), rows("test")])
    np.testing.assert_array_equal(np.unique(together, axis=0), np.unique(rows("all"), axis=0))
    # No test image is in the training set (the digits data holds no duplicate images).
    assert len(np.unique(rows("all"), axis=0)) == 1797
    assert len(np.unique(together, axis=0)) == 1797


def test_digits_split_is_stratified_with_every_class_in_both_splits():
    _, all_labels = load_digits("all")
    _, train_labels = load_digits("train")
    _, test_labels = load_digits("test")
    per_class = torch.bincount(all_labels, minlength=10)
    assert (torch.bincount(train_labels, minlength=10) > 0).all()
    assert (torch.bincount(test_labels, minlength=10) > 0).all()
    assert ((torch.bincount(test_labels, minlength=10) - 0.2 * per_class).abs() < 1).all()


def test_digits_split_is_pinned_across_runs_and_machines():
    images, labels = load_digits("test")
    digest = hashlib.sha256(images.numpy().astype("<f4").tobytes() + labels.numpy().astype("<i8").tobytes())
    assert digest.hexdigest() == "2b8f77ac5294c2d49868b2c3003907a1540334a41f343da734ccf0565d53cf87"


@pytest.mark.parametrize("split", ["train", "test", "all"])
def test_digits_return_fresh_tensors_that_cannot_corrupt_the_cache(split):
    images, labels = load_digits(split)
    expected_images, expected_labels = images.clone(), labels.clone()
    images.fill_(5.0)
    labels.fill_(-1)
    again_images, again_labels = load_digits(split)
    assert torch.equal(again_images, expected_images) and torch.equal(again_labels, expected_labels)


def test_digits_reject_an_unknown_split():
    with pytest.raises(ValueError, match=r"split must be one of train, test, all; got 'validation'"):
        load_digits("validation")


# --- IDX files ------------------------------------------------------------------------------------------------------

IDX_CODES = {"uint8": 0x08, "int8": 0x09, "int16": 0x0B, "int32": 0x0C, "float32": 0x0D, "float64": 0x0E}


def write_idx(path, array: np.ndarray, code=None) -> None:
    """Write `array` as an IDX file (gzipped when the name ends in .gz): the reference the reader must match."""
    code = IDX_CODES[array.dtype.name] if code is None else code
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", list(IDX_CODES))
def test_read_idx_round_trips_every_type(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(3, 4, 5)) * 100).astype(dtype)
    path = tmp_path / f"data.idx{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_read_idx_reads_a_one_dimensional_label_file(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "labels-idx1-ubyte", labels)
    np.testing.assert_array_equal(read_idx(tmp_path / "labels-idx1-ubyte"), labels)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_rejects_a_truncated_file(tmp_path, suffix):
    full, cut = tmp_path / "full.idx", tmp_path / f"cut.idx{suffix}"
    write_idx(full, np.zeros((4, 28, 28), dtype=np.uint8))
    opener = gzip.open if suffix else open
    with opener(cut, "wb") as f:
        f.write(full.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"cut\.idx.* is truncated: header says shape \(4, 28, 28\).*3152 bytes"):
        read_idx(cut)


def test_read_idx_rejects_a_truncated_header(tmp_path):
    (tmp_path / "short.idx").write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">I", 60000))
    with pytest.raises(ValueError, match=r"short\.idx is truncated: expected a 16-byte header, found 8 bytes"):
        read_idx(tmp_path / "short.idx")


def test_read_idx_rejects_a_truncated_gzip_stream(tmp_path):
    write_idx(tmp_path / "full.idx.gz", np.zeros((100, 28, 28), dtype=np.uint8))
    (tmp_path / "cut.idx.gz").write_bytes((tmp_path / "full.idx.gz").read_bytes()[:-20])
    with pytest.raises(ValueError, match=r"cut\.idx\.gz is not a complete gzip file"):
        read_idx(tmp_path / "cut.idx.gz")


def test_read_idx_rejects_trailing_bytes(tmp_path):
    write_idx(tmp_path / "long.idx", np.zeros((2, 3), dtype=np.uint8))
    with open(tmp_path / "long.idx", "ab") as f:
        f.write(b"\x00")
    with pytest.raises(ValueError, match=r"long\.idx has trailing bytes"):
        read_idx(tmp_path / "long.idx")


def test_read_idx_rejects_a_bad_magic_number(tmp_path):
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ValueError, match=r"image\.png is not an IDX file: expected .* 00 00, found 89 50 4e 47"):
        read_idx(tmp_path / "image.png")


def test_read_idx_rejects_an_unknown_type_code(tmp_path):
    write_idx(tmp_path / "odd.idx", np.zeros(3, dtype=np.uint8), code=0x0A)
    with pytest.raises(ValueError, match=r"unknown IDX type code 0x0A, expected one of 0x08, 0x09"):
        read_idx(tmp_path / "odd.idx")


# --- download -------------------------------------------------------------------------------------------------------


@pytest.fixture
def source(tmp_path):
    """A file to download through a file:// URL: (url, path, sha256)."""
    path = tmp_path / "server" / "payload.bin"
    path.parent.mkdir()
    path.write_bytes(b"diffusion " * 1000)
    return path.as_uri(), path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_sha256_of_matches_hashlib(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_of(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_download_puts_the_verified_file_in_place(tmp_path, source):
    url, src, digest = source
    target = tmp_path / "cache" / "sub" / "payload.bin"
    assert download(url, target, digest) == target
    assert target.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["payload.bin"]


def test_download_does_not_fetch_a_file_already_cached(tmp_path, source):
    url, src, digest = source
    target = tmp_path / "cache" / "payload.bin"
    download(url, target, digest)
    src.unlink()  # a second fetch would now fail
    assert download(url, target, digest.upper()) == target
    assert sha256_of(target) == digest


def test_download_with_a_wrong_hash_raises_and_leaves_nothing(tmp_path, source):
    url, _, digest = source
    target = tmp_path / "cache" / "payload.bin"
    wrong = "0" * 64
    with pytest.raises(ValueError, match=rf"SHA-256 mismatch for payload\.bin .*expected {wrong}, got {digest}"):
        download(url, target, wrong)
    assert list(target.parent.iterdir()) == []


def test_download_replaces_a_corrupted_cached_file(tmp_path, source):
    url, src, digest = source
    target = tmp_path / "cache" / "payload.bin"
    target.parent.mkdir()
    target.write_bytes(b"half a file")
    download(url, target, digest)
    assert target.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["payload.bin"]


def test_failed_download_leaves_nothing_even_where_a_corrupted_file_was(tmp_path, source):
    url, src, digest = source
    target = tmp_path / "cache" / "payload.bin"
    target.parent.mkdir()
    target.write_bytes(b"half a file")
    src.unlink()
    with pytest.raises(OSError, match=r"could not download file://.*payload\.bin"):
        download(url, target, digest)
    assert list(target.parent.iterdir()) == []


def test_download_rejects_a_malformed_hash(tmp_path, source):
    url, _, _ = source
    with pytest.raises(ValueError, match=r"sha256 must be 64 hexadecimal characters, got 'abc'"):
        download(url, tmp_path / "x", "abc")


# --- MNIST and Fashion-MNIST ----------------------------------------------------------------------------------------

LOADERS = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist}


def fake_dataset(server, n_train=5, n_test=3, n_train_labels=None):
    """Write the four gz IDX files of a tiny MNIST-like data set under `server`; return (file table, arrays)."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, size=n_train if n_train_labels is None else n_train_labels, dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }
    arrays["train_images"][0, 0, :2] = [0, 255]  # make sure both ends of the range occur
    server.mkdir(parents=True, exist_ok=True)
    table = {}
    for key, array in arrays.items():
        path = server / f"{key}.gz"
        write_idx(path, array)
        table[key] = FileSpec(path.name, path.as_uri(), sha256_of(path))
    return table, arrays


@pytest.mark.parametrize("dataset", list(LOADERS))
@pytest.mark.parametrize("split", ["train", "test"])
def test_loader_downloads_and_scales_to_minus_one_one(tmp_path, monkeypatch, dataset, split):
    table, arrays = fake_dataset(tmp_path / "server")
    monkeypatch.setitem(mnist_module.FILES, dataset, table)
    images, labels = LOADERS[dataset](tmp_path / "data", split)
    n = len(arrays[f"{split}_labels"])
    assert images.shape == (n, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (n,) and labels.dtype == torch.int64
    expected = torch.from_numpy(arrays[f"{split}_images"]).float()[:, None] / 127.5 - 1
    assert torch.equal(images, expected)
    assert images.min() >= -1 and images.max() <= 1
    assert torch.equal(labels, torch.from_numpy(arrays[f"{split}_labels"]).long())
    assert (tmp_path / "data" / dataset / table[f"{split}_images"].name).is_file()


def test_loader_maps_0_to_minus_one_and_255_to_one(tmp_path, monkeypatch):
    table, _ = fake_dataset(tmp_path / "server")
    monkeypatch.setitem(mnist_module.FILES, "mnist", table)
    images, _ = load_mnist(tmp_path / "data")
    assert images[0, 0, 0, :2].tolist() == [-1.0, 1.0]


def test_loader_reads_existing_files_without_download(tmp_path, monkeypatch):
    table, _ = fake_dataset(tmp_path / "server")
    monkeypatch.setitem(mnist_module.FILES, "mnist", table)
    first, _ = load_mnist(tmp_path / "data", download=True)
    for spec in table.values():
        (tmp_path / "server" / spec.name).unlink()
    again, _ = load_mnist(tmp_path / "data", download=False)
    assert torch.equal(first, again)


@pytest.mark.parametrize("dataset", list(LOADERS))
def test_loader_without_download_names_the_missing_file(tmp_path, monkeypatch, dataset):
    table, _ = fake_dataset(tmp_path / "server")
    monkeypatch.setitem(mnist_module.FILES, dataset, table)
    match = rf"{dataset}/train_images\.gz not found; call load_{dataset}\(root, download=True\)"
    with pytest.raises(FileNotFoundError, match=match):
        LOADERS[dataset](tmp_path / "data", download=False)


@pytest.mark.parametrize("dataset", list(LOADERS))
@pytest.mark.parametrize("kwargs, shown", [({}, True), ({"progress": False}, False)])
def test_loader_shows_download_progress_unless_asked_not_to(tmp_path, monkeypatch, dataset, kwargs, shown):
    table, _ = fake_dataset(tmp_path / "server")
    monkeypatch.setitem(mnist_module.FILES, dataset, table)
    calls = []
    real = mnist_module.downloads.download
    monkeypatch.setattr(mnist_module.downloads, "download", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    LOADERS[dataset](tmp_path / "data", **kwargs)
    assert [call["progress"] for call in calls] == [shown, shown]  # images and labels


def test_loader_rejects_labels_that_do_not_match_the_images(tmp_path, monkeypatch):
    table, _ = fake_dataset(tmp_path / "server", n_train=5, n_train_labels=4)
    monkeypatch.setitem(mnist_module.FILES, "mnist", table)
    with pytest.raises(ValueError, match=r"has 4 labels but .* has 5 images; expected equal counts"):
        load_mnist(tmp_path / "data")


def test_loader_rejects_an_unknown_split(tmp_path):
    with pytest.raises(ValueError, match=r"split must be one of train, test; got 'val'"):
        load_mnist(tmp_path, "val", download=False)


def test_file_tables_name_the_standard_files_with_well_formed_hashes():
    for dataset, base in [("mnist", mnist_module.MNIST_URL), ("fashion_mnist", mnist_module.FASHION_MNIST_URL)]:
        table = mnist_module.FILES[dataset]
        assert set(table) == {"train_images", "train_labels", "test_images", "test_labels"}
        for key, spec in table.items():
            split, kind = key.split("_")
            prefix = "train" if split == "train" else "t10k"
            assert spec.name == f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz"
            assert spec.url == base + spec.name
            assert len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0
    hashes = [spec.sha256 for table in mnist_module.FILES.values() for spec in table.values()]
    assert len(set(hashes)) == 8
