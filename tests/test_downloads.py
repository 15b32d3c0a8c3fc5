"""downloads.download over real HTTP: a local server that trickles bytes, the transfer deadline, the progress bar."""

import hashlib
import http.server
import io
import threading
import time

import pytest

from diffusion_lib.data import downloads

PAYLOAD = bytes(range(256)) * 4  # 1,024 bytes
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    delay = 0.0  # seconds between bytes; 0 sends the payload at once
    header_delay = 0.0  # seconds between the bytes of the status line and headers; 0 sends them at once

    def do_GET(self):
        if self.header_delay:
            head = f"HTTP/1.0 200 OK\r\nContent-Length: {len(PAYLOAD)}\r\n" + "X-Padding: slow\r\n" * 20 + "\r\n"
            try:
                for byte in head.encode():
                    if self.server.stopping.is_set():
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(self.header_delay)
            except OSError:  # the client gave up
                return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        try:
            if not self.delay:
                self.wfile.write(PAYLOAD)
                return
            for i in range(len(PAYLOAD)):
                if self.server.stopping.is_set():
                    return
                self.wfile.write(PAYLOAD[i : i + 1])
                self.wfile.flush()
                time.sleep(self.delay)
        except OSError:  # the client gave up
            pass

    def log_message(self, format, *args):
        pass


@pytest.fixture
def serve():
    """serve(delay) starts an HTTP server on 127.0.0.1 that sends PAYLOAD a byte every `delay` s; returns its URL."""
    servers = []

    def _serve(delay: float = 0.0, header_delay: float = 0.0) -> str:
        handler = type("Handler", (_Handler,), {"delay": delay, "header_delay": header_delay})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        server.stopping = threading.Event()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/payload.bin"

    yield _serve
    for server in servers:
        server.stopping.set()
        server.shutdown()
        server.server_close()


def test_a_trickling_server_is_cut_off_at_the_deadline_leaving_no_file(tmp_path, serve):
    url = serve(delay=0.05)  # 20 bytes/s: the whole payload would take 51 s, and every read returns within 0.05 s
    target = tmp_path / "cache" / "payload.bin"
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=rf"could not download {url} .*deadline of 0\.5 s"):
        downloads.download(url, target, DIGEST, timeout=5, deadline=0.5)
    elapsed = time.monotonic() - start
    assert 0.5 <= elapsed < 1.5
    assert list(target.parent.iterdir()) == []  # no .part file, nothing at the target


def test_the_default_deadline_allows_the_announced_size_at_the_minimum_rate(tmp_path, serve, monkeypatch):
    monkeypatch.setattr(downloads, "MIN_RATE", 2048)  # 1,024 bytes: timeout + 0.5 s
    url = serve(delay=0.05)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"deadline of 1\.5 s"):
        downloads.download(url, tmp_path / "payload.bin", DIGEST, timeout=1)
    assert time.monotonic() - start < 3
    assert list(tmp_path.iterdir()) == []


def test_download_over_http_puts_the_verified_file_in_place(tmp_path, serve):
    target = tmp_path / "payload.bin"
    assert downloads.download(serve(), target, DIGEST, deadline=30) == target
    assert target.read_bytes() == PAYLOAD


@pytest.fixture
def bars(monkeypatch):
    """The progress bars `download` creates, drawn into a string instead of the terminal."""
    created = []

    class Recorded(downloads.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, file=io.StringIO(), **kwargs)
            self.shown = not kwargs.get("disable", False)  # closing a bar sets its .disable
            created.append(self)

    monkeypatch.setattr(downloads, "tqdm", Recorded)
    return created


def test_the_progress_bar_counts_every_byte_of_the_announced_size(tmp_path, serve, bars):
    downloads.download(serve(), tmp_path / "payload.bin", DIGEST, progress=True)
    (bar,) = bars
    assert bar.shown
    assert bar.total == bar.n == len(PAYLOAD)
    assert bar.desc == "payload.bin"


def test_no_progress_bar_unless_asked(tmp_path, serve, bars):
    downloads.download(serve(), tmp_path / "payload.bin", DIGEST)
    assert [bar.shown for bar in bars] == [False]


def test_a_server_that_trickles_its_headers_is_cut_off_at_the_deadline_too(tmp_path, serve):
    """A byte of the status line and headers every 0.2 s (over 100 s for all of them), each within the per-read
    timeout: the deadline of 1 s ends the call after about 1 s, leaving no file."""
    url, target = serve(header_delay=0.2), tmp_path / "data" / "payload.bin"
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=rf"could not download {url} .*deadline of 1 s"):
        downloads.download(url, target, DIGEST, timeout=2, deadline=1)
    assert time.monotonic() - start < 3
    assert not target.exists() and list(target.parent.iterdir()) == []


@pytest.mark.parametrize("timeout", [-1, 0, float("inf"), float("nan"), "5", True])
def test_timeout_must_be_a_positive_number(tmp_path, timeout):
    with pytest.raises(ValueError, match=r"timeout must be a positive number of seconds, got"):
        downloads.download("http://127.0.0.1:9/x", tmp_path / "x", DIGEST, timeout=timeout)


def test_deadline_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match=r"deadline must be a positive number of seconds or None, got 0"):
        downloads.download("http://127.0.0.1:9/x", tmp_path / "x", DIGEST, deadline=0)
