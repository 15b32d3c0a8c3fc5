"""Tests for diffusion_lib.data.cifar: the CIFAR-10 binary tarball, fetched through file:// URLs. No network."""

import dataclasses
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import diffusion_lib
import diffusion_lib.data.cifar as cifar_module
from diffusion_lib.data import CIFAR10_CLASSES, load_cifar10, read_cifar_batch

FOLDER = "cifar-10-batches-bin"
RECORDS = 2  # per batch in the fake tarballs
TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
EXTRACTED = sorted([*TRAIN, "test_batch.bin", "batches.meta.txt"])
META = "\n".join(CIFAR10_CLASSES).encode() + b"\n\n"


def batch_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    """Records written the way the format describes them: label byte, then the R, G and B planes row by row."""
    out = bytearray()
    for image, label in zip(images, labels, strict=True):
        out.append(int(label))
        for plane in image:  # R, G, B
            for row in plane:
                out.extend(int(v) for v in row)
    return bytes(out)


def fake_batches(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random uint8 images (RECORDS, 3, 32, 32) and labels for every batch file."""
    rng = np.random.default_rng(seed)
    return {
        name: (
            rng.integers(0, 256, size=(RECORDS, 3, 32, 32), dtype=np.uint8),
            rng.integers(0, 10, size=RECORDS, dtype=np.uint8),
        )
        for name in [*TRAIN, "test_batch.bin"]
    }


def standard_members(batches) -> list[tuple[str, bytes | None, bytes]]:
    """(name, data, type) entries laid out like the real tarball, the folder entry and readme.html included."""
    members = [(FOLDER, None, tarfile.DIRTYPE)]
    members += [(f"{FOLDER}/{name}", batch_bytes(*arrays), tarfile.REGTYPE) for name, arrays in batches.items()]
    members += [(f"{FOLDER}/batches.meta.txt", META, tarfile.REGTYPE)]
    members += [(f"{FOLDER}/readme.html", b"<html></html>", tarfile.REGTYPE)]
    return members


def write_tarball(path: Path, members) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "/etc/passwd"
            if data is None:
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def serve(tmp_path, monkeypatch):
    """serve(members) writes a tarball, points cifar.ARCHIVE at it (file:// URL, its SHA-256) and returns its path."""

    def _serve(members, sha256=None):
        server = tmp_path / "server"
        server.mkdir(exist_ok=True)
        path = server / "cifar-10-binary.tar.gz"
        write_tarball(path, members)
        digest = sha256 or hashlib.sha256(path.read_bytes()).hexdigest()
        archive = dataclasses.replace(cifar_module.ARCHIVE, url=path.as_uri(), sha256=digest, records_per_batch=RECORDS)
        monkeypatch.setattr(cifar_module, "ARCHIVE", archive)
        return path

    return _serve


@pytest.fixture
def batches(serve):
    """A valid fake tarball is served; returns its arrays."""
    arrays = fake_batches()
    serve(standard_members(arrays))
    return arrays


def all_files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


# --- loading --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("split", "n"), [("train", 5 * RECORDS), ("test", RECORDS)])
def test_load_cifar10_has_the_documented_shapes_and_dtypes(tmp_path, batches, split, n):
    images, labels = load_cifar10(tmp_path / "data", split)
    assert images.shape == (n, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (n,) and labels.dtype == torch.int64
    assert images.min() >= -1 and images.max() <= 1


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_cifar10_returns_the_records_in_batch_order(tmp_path, batches, split):
    names = TRAIN if split == "train" else ["test_batch.bin"]
    images, labels = load_cifar10(tmp_path / "data", split)
    expected_images = np.concatenate([batches[name][0] for name in names])
    expected_labels = np.concatenate([batches[name][1] for name in names])
    assert torch.equal(images, torch.from_numpy(expected_images).float() / 127.5 - 1)
    assert torch.equal(labels, torch.from_numpy(expected_labels).long())


def test_pixels_scale_0_to_minus_one_and_255_to_one(tmp_path, serve):
    arrays = fake_batches()
    arrays["test_batch.bin"][0][0] = 0
    arrays["test_batch.bin"][0][1] = 255
    serve(standard_members(arrays))
    images, _ = load_cifar10(tmp_path / "data", "test")
    assert torch.equal(images[0], torch.full((3, 32, 32), -1.0))
    assert torch.equal(images[1], torch.full((3, 32, 32), 1.0))


def test_red_green_blue_planes_land_in_channels_0_1_2(tmp_path, serve):
    members = standard_members(fake_batches())
    # Built byte by byte, independently of numpy: label 3, then 1024 bytes of 0 (R), 51 (G) and 255 (B).
    record = bytes([3]) + bytes([0]) * 1024 + bytes([51]) * 1024 + bytes([255]) * 1024
    members = [m for m in members if m[0] != f"{FOLDER}/test_batch.bin"]
    members.append((f"{FOLDER}/test_batch.bin", record * RECORDS, tarfile.REGTYPE))
    serve(members)
    images, labels = load_cifar10(tmp_path / "data", "test")
    assert labels.tolist() == [3] * RECORDS
    assert torch.equal(images[:, 0], torch.full((RECORDS, 32, 32), -1.0))
    assert torch.equal(images[:, 1], torch.full((RECORDS, 32, 32), 51 / 127.5 - 1))
    assert torch.equal(images[:, 2], torch.full((RECORDS, 32, 32), 1.0))


def test_planes_are_read_row_major(tmp_path, serve):
    members = [m for m in standard_members(fake_batches()) if m[0] != f"{FOLDER}/test_batch.bin"]
    plane = bytes(i % 256 for i in range(1024))  # pixel (row, col) holds (32 * row + col) % 256
    members.append((f"{FOLDER}/test_batch.bin", (bytes([0]) + plane * 3) * RECORDS, tarfile.REGTYPE))
    serve(members)
    images, _ = load_cifar10(tmp_path / "data", "test")
    pixels = torch.round((images + 1) * 127.5).long()
    assert pixels[0, 0, 0, 31] == 31 and pixels[0, 1, 1, 2] == 34 and pixels[0, 2, 7, 31] == 255


def test_extracts_only_the_expected_files_into_root_cifar10(tmp_path, batches):
    load_cifar10(tmp_path / "data")
    expected = ["cifar10", *(f"cifar10/{name}" for name in [*EXTRACTED, "cifar-10-binary.tar.gz"])]
    assert all_files(tmp_path / "data") == sorted(expected)
    assert (tmp_path / "data" / "cifar10" / "batches.meta.txt").read_bytes() == META


@pytest.mark.parametrize("kwargs, shown", [({}, True), ({"progress": False}, False)])
def test_the_tarball_download_shows_progress_unless_asked_not_to(tmp_path, batches, monkeypatch, kwargs, shown):
    calls = []
    real = cifar_module.downloads.download
    monkeypatch.setattr(cifar_module.downloads, "download", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    load_cifar10(tmp_path / "data", "test", **kwargs)
    assert [call["progress"] for call in calls] == [shown]


def test_extracted_files_are_reused_without_the_tarball(tmp_path, batches):
    first, _ = load_cifar10(tmp_path / "data", "test")
    (tmp_path / "server" / "cifar-10-binary.tar.gz").unlink()  # a new fetch would now fail
    (tmp_path / "data" / "cifar10" / "cifar-10-binary.tar.gz").unlink()
    again, _ = load_cifar10(tmp_path / "data", "test", download=True)
    offline, _ = load_cifar10(tmp_path / "data", "test", download=False)
    assert torch.equal(first, again) and torch.equal(first, offline)


def test_a_truncated_extracted_file_is_extracted_again(tmp_path, batches):
    first, _ = load_cifar10(tmp_path / "data", "test")
    (tmp_path / "server" / "cifar-10-binary.tar.gz").unlink()  # the cached tarball is enough
    path = tmp_path / "data" / "cifar10" / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-100])
    again, _ = load_cifar10(tmp_path / "data", "test")
    assert torch.equal(first, again)


def test_a_truncated_extracted_file_without_download_raises(tmp_path, batches):
    load_cifar10(tmp_path / "data", "test")
    path = tmp_path / "data" / "cifar10" / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"test_batch\.bin: 6046 bytes is not a whole number of 3073-byte"):
        load_cifar10(tmp_path / "data", "test", download=False)


def test_an_extracted_file_with_the_wrong_record_count_without_download_raises(tmp_path, batches):
    load_cifar10(tmp_path / "data", "test")
    path = tmp_path / "data" / "cifar10" / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:3073])
    with pytest.raises(ValueError, match=r"test_batch\.bin: 1 records, expected 2"):
        load_cifar10(tmp_path / "data", "test", download=False)


def test_without_download_a_missing_file_names_it_and_how_to_download(tmp_path, batches):
    match = r"cifar10/data_batch_1\.bin not found; call load_cifar10\(root, download=True\) to fetch file://"
    with pytest.raises(FileNotFoundError, match=match):
        load_cifar10(tmp_path / "data", download=False)


def test_rejects_an_unknown_split(tmp_path):
    with pytest.raises(ValueError, match=r"split must be one of train, test; got 'valid'"):
        load_cifar10(tmp_path, "valid", download=False)


# --- a bad tarball is refused and leaves nothing ---------------------------------------------------------------------


def test_wrong_hash_raises_and_leaves_nothing(tmp_path, serve):
    serve(standard_members(fake_batches()), sha256="0" * 64)
    with pytest.raises(ValueError, match=r"SHA-256 mismatch for cifar-10-binary\.tar\.gz"):
        load_cifar10(tmp_path / "data")
    assert all_files(tmp_path / "data") in ([], ["cifar10"])


def assert_nothing_extracted(tmp_path):
    """Only the checked tarball is in the cache: no extracted file, no temporary file, nothing outside it."""
    assert all_files(tmp_path / "data") == ["cifar10", "cifar10/cifar-10-binary.tar.gz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "server"]


@pytest.mark.parametrize(
    "name", ["../evil.bin", f"{FOLDER}/../../evil.bin", f"{FOLDER}/../data_batch_1.bin", "/tmp/evil.bin"]
)
def test_refuses_a_path_traversal_member(tmp_path, serve, name):
    serve([(name, b"x" * 3073, tarfile.REGTYPE), *standard_members(fake_batches())])
    with pytest.raises(ValueError, match=r"refusing unsafe member name .*'\.\.'.*outside the extraction folder"):
        load_cifar10(tmp_path / "data")
    assert_nothing_extracted(tmp_path)


def test_refuses_a_traversal_member_even_after_the_expected_ones(tmp_path, serve):
    serve([*standard_members(fake_batches()), ("../evil.bin", b"x", tarfile.REGTYPE)])
    with pytest.raises(ValueError, match=r"refusing unsafe member name '\.\./evil\.bin'"):
        load_cifar10(tmp_path / "data")
    assert_nothing_extracted(tmp_path)


@pytest.mark.parametrize("name", [f"{FOLDER}/extra.bin", "data_batch_1.bin", f"other/{TRAIN[0]}", f"{FOLDER}/a/b"])
def test_refuses_an_unexpected_member(tmp_path, serve, name):
    serve([*standard_members(fake_batches()), (name, b"x", tarfile.REGTYPE)])
    with pytest.raises(ValueError, match=rf"unexpected member '{name}'"):
        load_cifar10(tmp_path / "data")
    assert_nothing_extracted(tmp_path)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.DIRTYPE])
def test_refuses_an_expected_name_that_is_not_a_regular_file(tmp_path, serve, kind):
    members = [m for m in standard_members(fake_batches()) if m[0] != f"{FOLDER}/{TRAIN[0]}"]
    serve([(f"{FOLDER}/{TRAIN[0]}", None, kind), *members])
    with pytest.raises(ValueError, match=r"data_batch_1\.bin' is not a regular file"):
        load_cifar10(tmp_path / "data")
    assert_nothing_extracted(tmp_path)


def test_refuses_a_member_that_appears_twice(tmp_path, serve):
    members = standard_members(fake_batches())
    serve([*members, members[1]])
    with pytest.raises(ValueError, match=r"data_batch_1\.bin' appears twice"):
        load_cifar10(tmp_path / "data")
    assert_nothing_extracted(tmp_path)


def test_refuses_a_tarball_that_lacks_a_member(tmp_path, serve):
    serve([m for m in standard_members(fake_batches()) if not m[0].endswith("test_batch.bin")])
    with pytest.raises(ValueError, match=r"lacks cifar-10-batches-bin/test_batch\.bin"):
        load_cifar10(tmp_path / "data")
    assert_nothing_extracted(tmp_path)


def test_refuses_a_truncated_batch_in_the_tarball(tmp_path, serve):
    members = standard_members(fake_batches())
    members = [(n, d[:-1] if n.endswith("data_batch_3.bin") else d, k) for n, d, k in members]
    serve(members)
    with pytest.raises(ValueError, match=r"data_batch_3\.bin: 6145 bytes is not a whole number of 3073-byte"):
        load_cifar10(tmp_path / "data")
    assert_nothing_extracted(tmp_path)


def test_refuses_a_batch_with_the_wrong_number_of_records(tmp_path, serve):
    members = standard_members(fake_batches())
    members = [(n, d + d if n.endswith("test_batch.bin") else d, k) for n, d, k in members]
    serve(members)
    with pytest.raises(ValueError, match=r"test_batch\.bin: 4 records, expected 2"):
        load_cifar10(tmp_path / "data")
    assert_nothing_extracted(tmp_path)


def test_refuses_a_label_above_9(tmp_path, serve):
    arrays = fake_batches()
    arrays["data_batch_2.bin"][1][1] = 10
    serve(standard_members(arrays))
    with pytest.raises(ValueError, match=r"data_batch_2\.bin: record 1 has label 10; CIFAR-10 labels are 0\.\.9"):
        load_cifar10(tmp_path / "data")
    assert_nothing_extracted(tmp_path)


def test_refuses_a_file_that_is_not_a_tarball(tmp_path, monkeypatch):
    path = tmp_path / "server" / "cifar-10-binary.tar.gz"
    path.parent.mkdir()
    path.write_bytes(b"<html>not found</html>")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    archive = dataclasses.replace(cifar_module.ARCHIVE, url=path.as_uri(), sha256=digest, records_per_batch=RECORDS)
    monkeypatch.setattr(cifar_module, "ARCHIVE", archive)
    with pytest.raises(ValueError, match=r"is not a readable tar\.gz file"):
        load_cifar10(tmp_path / "data")
    assert_nothing_extracted(tmp_path)


# --- the batch reader -----------------------------------------------------------------------------------------------


def test_read_cifar_batch_returns_uint8_images_and_labels(tmp_path):
    images, labels = fake_batches()["test_batch.bin"]
    (tmp_path / "b.bin").write_bytes(batch_bytes(images, labels))
    back_images, back_labels = read_cifar_batch(tmp_path / "b.bin")
    assert back_images.dtype == np.uint8 and back_labels.dtype == np.uint8
    np.testing.assert_array_equal(back_images, images)
    np.testing.assert_array_equal(back_labels, labels)


def test_read_cifar_batch_rejects_a_size_that_is_not_a_multiple_of_3073(tmp_path):
    (tmp_path / "short.bin").write_bytes(bytes(3073 * 2 - 5))
    with pytest.raises(ValueError, match=r"short\.bin: 6141 bytes is not a whole number of 3073-byte"):
        read_cifar_batch(tmp_path / "short.bin")


# --- the table and the package ------------------------------------------------------------------------------------


def test_archive_is_the_binary_version_with_its_published_hash():
    archive = cifar_module.ARCHIVE
    assert archive.url == "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    assert archive.sha256 == "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
    assert archive.folder == FOLDER and list(archive.train) == TRAIN and archive.test == ("test_batch.bin",)
    assert archive.meta == ("batches.meta.txt",) and archive.records_per_batch == 10_000
    assert CIFAR10_CLASSES == (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
    )  # fmt: skip


def test_library_never_unpickles():
    package = Path(diffusion_lib.__file__).parent
    sources = sorted(package.rglob("*.py"))
    assert len(sources) > 5
    offenders = [
        f"{path.relative_to(package)}: {needle}"
        for path in sources
        for needle in ("import pickle", "pickle.load", "torch.load(")
        if needle in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
