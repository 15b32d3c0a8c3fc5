"""CIFAR-10 from its binary version: one checked tarball, only the expected files extracted, parsed with numpy.

The source is the dataset authors' "binary version (suitable for C programs)",
https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz (170,052,171 bytes). The Python version of the data set is
never used: it is pickled, and unpickling a downloaded file can run arbitrary code. The binary files are plain
fixed-size records that numpy reads as bytes.

Where the SHA-256 comes from (three independent projects publish the same value for this URL):
- TensorFlow Datasets, tensorflow_datasets/url_checksums/cifar10.txt (size 170,052,171 bytes, same URL);
- torchvision-ruby (ankane/torchvision-ruby), lib/torchvision/datasets/cifar10.rb, constant SHA256;
- MLDatasets.jl (JuliaML/MLDatasets.jl), src/datasets/vision/cifar10.jl, the DataDep registration.

Layout of the tarball: a folder cifar-10-batches-bin/ holding data_batch_1.bin .. data_batch_5.bin (training set,
10,000 images each), test_batch.bin (10,000 images), batches.meta.txt (the ten class names, one per line) and
readme.html. Each .bin file is a sequence of 3,073-byte records: one label byte (0..9), then 3,072 pixel bytes,
the red plane, the green plane and the blue plane, each 32x32 in row-major order.

Files on disk: ROOT/cifar10/cifar-10-binary.tar.gz (kept, so a damaged extracted file can be re-extracted without
the network) and the extracted ROOT/cifar10/{data_batch_1..5.bin, test_batch.bin, batches.meta.txt}.

Cache policy: the SHA-256 of the tarball is what guarantees integrity, checked by `downloads.download` before the
tarball is moved into place. Extraction reads only the named regular-file members, checks each batch's format and
record count, writes every file to a temporary name and renames them all into place only once the whole tarball
has been read, so an extracted file is always a complete copy of its member. The extracted files are therefore not
hashed again on each load; a batch file is reused when it exists and has exactly the recorded size,
`ARCHIVE.records_per_batch` x 3,073 bytes (30,730,000 bytes for the real data). With download=True a missing or
wrong-sized file triggers a fresh extraction; with download=False it is an error. Labels are range-checked on
every load.

`ARCHIVE` is the table of what to fetch and extract; tests replace it with a tiny tarball of their own.
"""

import os
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from . import downloads

SPLITS = ("train", "test")
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

IMAGE_SHAPE = (3, 32, 32)
RECORD_SIZE = 1 + 3 * 32 * 32  # one label byte, then the R, G and B planes


@dataclass(frozen=True)
class CifarArchive:
    """What to fetch and which members of the tarball to extract.

    Member names are relative to `folder`, the one top-level folder of the tarball. `train`, `test` and `meta` are
    extracted; `ignored` members are known to be there and are skipped; any other member is refused.
    """

    url: str
    sha256: str
    filename: str
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: tuple[str, ...]
    ignored: tuple[str, ...]
    records_per_batch: int

    @property
    def batches(self) -> tuple[str, ...]:
        return self.train + self.test

    @property
    def extracted(self) -> tuple[str, ...]:
        return self.batches + self.meta


# The authors' page (https://www.cs.toronto.edu/~kriz/cifar.html) also lists the tarball's MD5,
# c32a1d4ab5d03f1284b67883e8d87530; we check the SHA-256 only.
ARCHIVE = CifarArchive(
    url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    sha256="c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    filename="cifar-10-binary.tar.gz",
    folder="cifar-10-batches-bin",
    train=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    test=("test_batch.bin",),
    meta=("batches.meta.txt",),
    ignored=("readme.html",),
    records_per_batch=10_000,
)


def _parse_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    if len(data) % RECORD_SIZE != 0:
        raise ValueError(
            f"{name}: {len(data)} bytes is not a whole number of {RECORD_SIZE}-byte CIFAR-10 records "
            f"(1 label byte + 3072 pixel bytes); the file is truncated or not a CIFAR-10 batch"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_SIZE)
    labels = records[:, 0]
    bad = np.flatnonzero(labels > 9)
    if len(bad):
        raise ValueError(f"{name}: record {bad[0]} has label {labels[bad[0]]}; CIFAR-10 labels are 0..9")
    return records[:, 1:].reshape(-1, *IMAGE_SHAPE), labels


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 binary batch file (data_batch_*.bin, test_batch.bin).

    Returns:
        images: (N, 3, 32, 32) uint8, channels R, G, B.
        labels: (N,) uint8 in 0..9.

    Raises:
        ValueError: the size is not a multiple of 3,073 bytes, or a label byte is greater than 9.
    """
    path = Path(path)
    return _parse_batch(path.read_bytes(), str(path))


def _check_record_count(n: int, name: str, archive: CifarArchive) -> None:
    if n != archive.records_per_batch:
        raise ValueError(f"{name}: {n} records, expected {archive.records_per_batch}")


def _member_name(member: tarfile.TarInfo, archive: CifarArchive, tarball: Path) -> str | None:
    """The file name of an expected member, None for a known member to skip; refuse anything else."""
    path = PurePosixPath(member.name)
    if member.name.startswith(("/", "\\")) or "\\" in member.name or ".." in path.parts or ":" in member.name:
        raise ValueError(
            f"{tarball}: refusing unsafe member name {member.name!r} (absolute path or '..', backslash or drive "
            f"letter: it could point outside the extraction folder)"
        )
    if path == PurePosixPath(archive.folder) and member.isdir():
        return None
    if len(path.parts) != 2 or path.parts[0] != archive.folder:
        raise ValueError(f"{tarball}: unexpected member {member.name!r}; expected only files in {archive.folder}/")
    name = path.parts[1]
    if name in archive.ignored:
        return None
    if name not in archive.extracted:
        expected = ", ".join(archive.extracted + archive.ignored)
        raise ValueError(f"{tarball}: unexpected member {member.name!r}; expected only {expected}")
    if not member.isfile():
        raise ValueError(f"{tarball}: member {member.name!r} is not a regular file (link or special file)")
    return name


def _extract(tarball: Path, target: Path, archive: CifarArchive) -> None:
    """Extract the expected members of `tarball` into `target`, all or nothing."""
    staged: dict[str, str] = {}  # member file name -> temporary path in target
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar:  # sequential: the gzip stream is read once
                name = _member_name(member, archive, tarball)
                if name is None:
                    continue
                if name in staged:
                    raise ValueError(f"{tarball}: member {member.name!r} appears twice")
                source = tar.extractfile(member)
                if source is None:  # cannot happen for a regular file; never write what we could not read
                    raise ValueError(f"{tarball}: cannot read member {member.name!r}")
                data = source.read()
                if name in archive.batches:
                    images, _ = _parse_batch(data, f"{tarball}:{member.name}")
                    _check_record_count(len(images), f"{tarball}:{member.name}", archive)
                with tempfile.NamedTemporaryFile(delete=False, dir=target, prefix=f".{name}.", suffix=".part") as f:
                    staged[name] = f.name
                    f.write(data)
        missing = [name for name in archive.extracted if name not in staged]
        if missing:
            raise ValueError(f"{tarball} lacks {', '.join(f'{archive.folder}/{m}' for m in missing)}")
        for name, tmp in staged.items():
            os.replace(tmp, target / name)
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise ValueError(f"{tarball} is not a readable tar.gz file: {err}") from err
    finally:
        for tmp in staged.values():
            Path(tmp).unlink(missing_ok=True)


def _is_cached(path: Path, archive: CifarArchive) -> bool:
    if not path.is_file():
        return False
    return path.name not in archive.batches or path.stat().st_size == archive.records_per_batch * RECORD_SIZE


def load_cifar10(
    root, split: str = "train", *, download: bool = True, progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 colour images (50,000 train, 10,000 test), 32x32 RGB, scaled from 0..255 to [-1, 1] by x / 127.5 - 1.

    Args:
        root: directory for the data; files go to root/cifar10/.
        split: "train" (data_batch_1..5) or "test" (test_batch).
        download: fetch the tarball (SHA-256 checked) and extract it when the extracted files are missing or have the
            wrong size. If False, a missing file raises FileNotFoundError.
        progress: show a progress bar of the bytes received while downloading the 170 MB tarball.

    Returns:
        images: (N, 3, 32, 32) float32 in [-1, 1], channels R, G, B.
        labels: (N,) int64 classes 0..9, named by CIFAR10_CLASSES.

    Raises:
        FileNotFoundError: download=False and an extracted file is missing.
        ValueError: wrong SHA-256, an unsafe or unexpected member in the tarball, or a malformed batch file.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    archive = ARCHIVE
    target = Path(root) / "cifar10"
    paths = [target / name for name in getattr(archive, split)]
    if not all(_is_cached(path, archive) for path in paths):
        if download:
            tarball = downloads.download(archive.url, target / archive.filename, archive.sha256, progress=progress)
            _extract(tarball, target, archive)
        else:
            missing = next((path for path in paths if not path.is_file()), None)
            if missing is not None:
                raise FileNotFoundError(
                    f"{missing} not found; call load_cifar10(root, download=True) to fetch {archive.url} "
                    f"(SHA-256 checked) and extract it"
                )
    batches = [read_cifar_batch(path) for path in paths]
    for path, (batch_images, _) in zip(paths, batches, strict=True):
        _check_record_count(len(batch_images), str(path), archive)
    images = np.concatenate([batch_images for batch_images, _ in batches])
    labels = np.concatenate([batch_labels for _, batch_labels in batches])
    x = torch.from_numpy(images).float().div_(127.5).sub_(1.0)  # x / 127.5 - 1, in place: 600 MB for train
    return x, torch.from_numpy(labels).long()
