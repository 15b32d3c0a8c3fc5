"""Where a shipped model's weights come from: the package's folder in a clone, else a cache, else the book's release.

    python -m diffusion_lib.weights           # the release's weight files: name, bytes, SHA-256 (uploads nothing)
    python -m diffusion_lib.weights --paths   # their paths, one per line, for the publishing workflow

Every shipped model is two files (:mod:`diffusion_lib.checkpoints`): its JSON record, kilobytes, travels with the
package; its tensor file ``NAME.safetensors`` does not, so the wheel holds code, configs and the small data only.
The record holds the tensor file's SHA-256 (``tensors_sha256``), so the package knows the hash of every file it may
fetch. :func:`tensor_file` finds the file, in this order:

1. ``diffusion_lib/pretrained/NAME.safetensors``: a clone of the book's repository has them all, so the tests and
   the notebooks never touch the network;
2. the cache, ``DIFFUSION_LIB_CACHE`` or the platform's cache folder (``~/.cache/diffusion_lib`` on Linux), under
   ``weights/``, one file per hash, so two versions of a model can sit side by side;
3. else it is downloaded from the release of this version of the library (:data:`RELEASE_URL`; another base address,
   a mirror or a test server, with ``DIFFUSION_LIB_WEIGHTS_URL``) by `pooch <https://www.fatiando.org/pooch>`_:
   into a temporary file beside its place in the cache, checked against the record's SHA-256, then moved into place,
   so the cache never holds a partial or wrong file. A progress bar shows on standard error; the download must end
   within ``DIFFUSION_LIB_DOWNLOAD_DEADLINE`` seconds (default :data:`DEADLINE_S`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

from diffusion_lib import __version__, checkpoints

RELEASE_URL = f"https://github.com/diffusion-from-scratch/diffusion-from-scratch/releases/download/v{__version__}/"
URL_VARIABLE = "DIFFUSION_LIB_WEIGHTS_URL"
CACHE_VARIABLE = "DIFFUSION_LIB_CACHE"
DEADLINE_VARIABLE = "DIFFUSION_LIB_DOWNLOAD_DEADLINE"
DEADLINE_S = 600.0  # the largest file, 18 MB, in ten minutes: 30 kB/s
STALL_S = 30.0  # a connection that sends nothing for this long has failed
SHA256 = re.compile(r"[0-9a-f]{64}")


def tensor_file(path: str | os.PathLike, *, progress: bool = True) -> Path:
    """The tensor file of checkpoint ``path`` (as :func:`diffusion_lib.checkpoints.resolve` returns it): the file
    beside the record when it is there, else, for a shipped model, the cached or downloaded copy (see the module's
    docstring). The caller checks the file against the record (:func:`diffusion_lib.checkpoints.load` does).

    Raises:
        OSError: the file must be downloaded and cannot be (offline, not on the server, too slow); the message says
            from where and what to do.
        ValueError: the record holds no valid ``tensors_sha256``, or the download does not match it.
    """
    json_file, beside = checkpoints.files(path)
    if beside.is_file() or json_file.parent.resolve() != checkpoints.PRETRAINED.resolve():
        return beside
    return download(beside.stem, recorded_sha256(json_file), progress=progress)


def recorded_sha256(json_file: Path) -> str:
    """The SHA-256 of the tensor file that the record ``json_file`` names (its ``tensors_sha256``)."""
    try:
        sha256 = json.loads(json_file.read_text()).get("tensors_sha256")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise ValueError(f"{json_file} is not a checkpoint record: {err}") from err
    if not (isinstance(sha256, str) and SHA256.fullmatch(sha256)):
        raise ValueError(f"{json_file}: tensors_sha256 must be 64 lowercase hexadecimal characters, got {sha256!r}")
    return sha256


def cache_folder() -> Path:
    """Where downloaded weights are kept: ``$DIFFUSION_LIB_CACHE/weights``, or the platform's cache folder for
    diffusion_lib (``~/.cache/diffusion_lib/weights`` on Linux)."""
    import pooch

    root = os.environ.get(CACHE_VARIABLE) or pooch.os_cache("diffusion_lib")
    return Path(root).expanduser() / "weights"


def download(name: str, sha256: str, *, base_url: str | None = None, cache: Path | None = None,
             deadline_s: float | None = None, progress: bool = True) -> Path:
    """Fetch ``NAME.safetensors`` from ``base_url`` (default: ``DIFFUSION_LIB_WEIGHTS_URL``, else
    :data:`RELEASE_URL`) into ``cache`` (default :func:`cache_folder`) unless a file of that SHA-256 is there already,
    and return its path. Atomic and verified: nothing is left in the cache unless it has the hash ``sha256``.

    Raises:
        OSError: the server cannot be reached, has no such file, or the download outlives ``deadline_s`` (default:
            ``DIFFUSION_LIB_DOWNLOAD_DEADLINE``, else :data:`DEADLINE_S`); the message names the model and the URL.
        ValueError: the downloaded file's SHA-256 is not ``sha256`` (nothing is kept).
    """
    import pooch
    import requests

    base_url = base_url or os.environ.get(URL_VARIABLE) or RELEASE_URL
    url = base_url.rstrip("/") + f"/{name}.safetensors"
    cache = cache_folder() if cache is None else Path(cache)
    if deadline_s is None:
        deadline_s = _deadline_from_environment()
    target = cache / f"{name}.{sha256[:16]}.safetensors"  # pooch re-downloads it if its hash differs
    try:
        fetched = pooch.retrieve(url, known_hash=f"sha256:{sha256}", fname=target.name, path=cache,
                                 downloader=DeadlineDownloader(deadline_s, progress, name))
    except requests.RequestException as err:
        raise OSError(f"could not download the weights of {name!r} from {url}: {err}. Offline? In a clone of the "
                      f"book's repository they are in {checkpoints.PRETRAINED}; else put {name}.safetensors (SHA-256 "
                      f"{sha256}) at {target}, or point {URL_VARIABLE} at a copy of the release") from err
    except ValueError as err:  # pooch: the hash does not match; it has removed the file
        raise ValueError(f"the weights of {name!r} downloaded from {url} are not the file this library's record "
                         f"names (SHA-256 {sha256}): {err}") from err
    return Path(fetched)


class DeadlineDownloader:
    """A pooch downloader (``downloader(url, output_file, pooch)``) that streams with requests, shows a byte
    progress bar titled ``name``, and raises TimeoutError once ``deadline_s`` seconds have passed or the server has
    sent nothing for :data:`STALL_S` seconds."""

    def __init__(self, deadline_s: float, progress: bool, name: str) -> None:
        self.deadline_s, self.progress, self.name = deadline_s, progress, name

    def __call__(self, url: str, output_file, pooch_object, check_only: bool = False) -> bool | None:
        import requests
        from tqdm.auto import tqdm

        start = time.monotonic()
        wait = min(STALL_S, self.deadline_s)
        with requests.get(url, stream=True, timeout=(wait, wait)) as response:
            if check_only:
                return response.ok
            response.raise_for_status()
            total = int(response.headers.get("content-length", 0)) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=self.name, disable=not self.progress) as bar, \
                    open(output_file, "wb") as out:
                for chunk in response.iter_content(chunk_size=1 << 16):
                    if time.monotonic() - start > self.deadline_s:
                        raise requests.Timeout(f"the download did not end within its deadline of "
                                               f"{self.deadline_s:g} s ({DEADLINE_VARIABLE})")
                    out.write(chunk)
                    bar.update(len(chunk))
        return None


def _deadline_from_environment() -> float:
    text = os.environ.get(DEADLINE_VARIABLE)
    if text is None:
        return DEADLINE_S
    try:
        deadline = float(text)
    except ValueError:
        deadline = float("nan")
    if not deadline > 0 or deadline == float("inf"):
        raise ValueError(f"{DEADLINE_VARIABLE} must be a number of seconds > 0, got {text!r}")
    return deadline


def release_files() -> list[tuple[Path, int, str]]:
    """The files a release attaches: every shipped model's tensor file, with its size and SHA-256, after checking
    that each is in the package folder and is the file its record names.

    Raises:
        FileNotFoundError: a record's tensor file is missing (not a clone with the weights).
        ValueError: a tensor file differs from its record.
    """
    rows = []
    for json_file in sorted(checkpoints.PRETRAINED.glob("*.json")):
        file = json_file.with_suffix(".safetensors")
        if not file.is_file():
            raise FileNotFoundError(f"{file} is missing: the release is made from a clone with every model's weights")
        sha256 = checkpoints.sha256_of(file)
        if sha256 != recorded_sha256(json_file):
            raise ValueError(f"{file} has SHA-256 {sha256}, but {json_file} records {recorded_sha256(json_file)}")
        rows.append((file, file.stat().st_size, sha256))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="List the weight files of this version's release (uploads nothing).")
    parser.add_argument("--paths", action="store_true", help="print only their paths, one per line")
    args = parser.parse_args(argv)
    rows = release_files()
    for file, size, sha256 in rows:
        print(file if args.paths else f"{file.name:40} {size:>11,} {sha256}")
    if not args.paths:
        print(f"{len(rows)} files, {sum(size for _, size, _ in rows):,} bytes, for {RELEASE_URL}")


if __name__ == "__main__":
    main()
