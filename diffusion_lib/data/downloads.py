"""Checked downloads and the IDX file format.

`download` fetches a file once, verifies its SHA-256 and only then moves it into place (the atomic write and the
hash of :mod:`diffusion_lib.checkpoints`), so a file at the target
path is always complete and correct. A transfer has a deadline as a whole, not only a timeout per read, so a server
that trickles bytes, in its headers or its data, cannot hold a call forever. `read_idx` parses the IDX format of
MNIST-like data sets.
"""

import gzip
import http.client
import math
import os
import re
import socket
import struct
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from diffusion_lib.checkpoints import atomic_write, sha256_of

_CHUNK = 1 << 20

# The default deadline of a transfer: `timeout` plus the announced size at MIN_RATE bytes per second
# (170 MB of CIFAR-10: about an hour), or NO_SIZE_DEADLINE seconds when the server announces no size.
MIN_RATE = 50_000
NO_SIZE_DEADLINE = 3600.0

# IDX type codes (third byte of the magic number) and their big-endian numpy dtypes.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _announced_size(response) -> int | None:
    """The Content-Length of a response, None when absent or malformed."""
    try:
        size = int(response.headers.get("Content-Length"))
    except (TypeError, ValueError):
        return None
    return size if size >= 0 else None


class _Overdue(Exception):
    """The transfer passed its deadline."""


class _Watchdog:
    """Ends a transfer at its deadline wherever it waits: the sockets of its connections are shut down when the
    timer fires, which ends a read that is waiting on the server (for a header line or for data) at once."""

    def __init__(self):
        self.sockets: list[socket.socket] = []
        self.fired = False
        self._timer: threading.Timer | None = None

    def start(self, seconds: float) -> None:
        """(Re)arm the timer to fire ``seconds`` from now."""
        self.stop()
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _fire(self) -> None:
        self.fired = True
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed
                pass

    def opener(self) -> urllib.request.OpenerDirector:
        """A urllib opener whose HTTP and HTTPS connections register their sockets with this watchdog."""
        watchdog = self

        def watched(connection_class):
            class Watched(connection_class):
                def connect(self):
                    super().connect()
                    watchdog.sockets.append(self.sock)
            return Watched

        class HTTP(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(watched(http.client.HTTPConnection), req)

        class HTTPS(urllib.request.HTTPSHandler):
            def https_open(self, req):
                return self.do_open(watched(http.client.HTTPSConnection), req, context=self._context)

        return urllib.request.build_opener(HTTP, HTTPS)


def _copy(response, out, stop_at: float, bar) -> None:
    """Copy `response` to `out` as the bytes arrive; raise _Overdue once time.monotonic() passes `stop_at`."""
    read = getattr(response, "read1", response.read)  # read1: what has arrived, not a full 1 MiB chunk
    while True:
        if time.monotonic() > stop_at:
            raise _Overdue
        chunk = read(_CHUNK)
        if not chunk:
            return
        out.write(chunk)
        bar.update(len(chunk))


def download(
    url: str,
    path: str | os.PathLike,
    sha256: str,
    *,
    timeout: float = 60,
    deadline: float | None = None,
    progress: bool = False,
) -> Path:
    """Download `url` to `path` unless a file with the expected SHA-256 is already there.

    The data goes to a temporary file in the same directory, is verified, then renamed onto `path` with
    `os.replace` (atomic). A file already at `path` with another hash is deleted and downloaded again. On any failure
    no temporary file remains and nothing is at `path`.

    Args:
        url: where to fetch the file (any scheme urllib supports: https, http, file).
        path: where to store it; missing parent directories are created.
        sha256: expected SHA-256, 64 hexadecimal characters.
        timeout: seconds to wait for the server to answer, and for each read of the data.
        deadline: seconds for the whole transfer, from the request to the last byte. None: `timeout` plus the
            announced size (Content-Length) at `MIN_RATE` bytes per second, or `NO_SIZE_DEADLINE` seconds when the
            server announces no size. A timer shuts the connection down when it passes, wherever the transfer
            waits (the headers included).
        progress: show a ``tqdm.auto`` progress bar of the bytes received (total: the announced size).

    Returns:
        `path` as a Path.

    Raises:
        ValueError: the downloaded data does not have the expected SHA-256, or `timeout` or `deadline` is not a
            positive number.
        TimeoutError: the transfer did not finish within the deadline (an OSError; the message names the URL and
            the deadline).
        OSError: the download failed.
    """
    path = Path(path)
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise ValueError(f"sha256 must be 64 hexadecimal characters, got {sha256!r}")
    expected = sha256.lower()
    if deadline is not None and not (isinstance(deadline, int | float) and 0 < deadline < math.inf):
        raise ValueError(f"deadline must be a positive number of seconds or None, got {deadline!r}")
    if isinstance(timeout, bool) or not (isinstance(timeout, int | float) and 0 < timeout < math.inf):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if path.is_file():
        if sha256_of(path) == expected:
            return path
        path.unlink()  # known bad: never leave it where it could be mistaken for the real file
    path.parent.mkdir(parents=True, exist_ok=True)

    def fetch_and_verify(tmp: str) -> None:
        with open(tmp, "wb") as out:
            start = time.monotonic()
            limit = NO_SIZE_DEADLINE if deadline is None else deadline  # until the size is announced
            watchdog = _Watchdog()
            watchdog.start(limit)
            try:
                with watchdog.opener().open(url, timeout=timeout) as response:
                    size = _announced_size(response)
                    if deadline is None and size is not None:
                        limit = timeout + size / MIN_RATE
                        watchdog.start(start + limit - time.monotonic())
                    with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=path.name,
                              disable=not progress) as bar:
                        _copy(response, out, start + limit, bar)
                if watchdog.fired:  # the socket was shut down: what arrived is cut short
                    raise _Overdue
            except (_Overdue, OSError, http.client.HTTPException) as err:
                if watchdog.fired or isinstance(err, _Overdue):
                    raise TimeoutError(
                        f"could not download {url} to {path}: not finished within the deadline of {limit:g} s "
                        f"({out.tell()} bytes received)"
                    ) from None
                raise OSError(f"could not download {url} to {path}: {err}") from err
            finally:
                watchdog.stop()
        actual = sha256_of(tmp)
        if actual != expected:
            raise ValueError(f"SHA-256 mismatch for {path.name} from {url}: expected {expected}, got {actual}")

    atomic_write(path, fetch_and_verify)
    return path


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, gzip.BadGzipFile) as err:
        raise ValueError(f"{path} is not a complete gzip file: {err}") from err


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gunzipping it first when its name ends in ".gz".

    Layout: magic number (two zero bytes, a type code, the number of dimensions), one big-endian uint32 per
    dimension, then the values in C order, big-endian. Type codes: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64.

    Returns:
        array of shape (d_1, ..., d_ndim) with the file's dtype in native byte order.

    Raises:
        ValueError: bad magic number, unknown type code, or a size that differs from what the header says.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{path} is not an IDX file: expected a magic number starting with bytes 00 00, found {data[:4].hex(' ')}"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02X}, expected one of {known}")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(f"{path} is truncated: expected a {header_size}-byte header, found {len(data)} bytes")
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    dtype = np.dtype(IDX_DTYPES[code])
    expected_size = header_size + math.prod(shape) * dtype.itemsize
    if len(data) != expected_size:
        problem = "is truncated" if len(data) < expected_size else "has trailing bytes"
        raise ValueError(
            f"{path} {problem}: header says shape {shape} of {dtype.name}, which needs {expected_size} bytes; "
            f"found {len(data)} bytes"
        )
    values = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=header_size)
    return values.reshape(shape).astype(dtype.newbyteorder("="))
