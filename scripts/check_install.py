"""The package as a user gets it: build the wheel and the sdist, check their size and contents, install the wheel in a
fresh virtual environment, and draw emoji there with the weights served from the loopback address, then again
offline from the cache.

    python scripts/check_install.py            # CI runs this after the tests
    python scripts/check_install.py --keep DIR # keep the builds, the environment and the cache in DIR

The fresh environment gets PyTorch first (``pip install torch==TORCH``, the build the machine's package index gives),
then the wheel with its ``[book]`` extra, from the package registry like any user's. The draw runs from a folder
outside the clone, so that the library comes from the installed wheel, and the clone's weights are reached only
through the server. Prints each step's time; exits 1 with one line on the first failure.
"""

from __future__ import annotations

import argparse
import http.server
import json
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRETRAINED = ROOT / "diffusion_lib" / "pretrained"
MAX_BYTES = 10_000_000  # the goal for the wheel and the sdist: code, configs and the small data
TORCH = "2.13.0"
DRAW = """
import hashlib, sys
import torch
import diffusion_lib

assert "site-packages" in diffusion_lib.__file__, diffusion_lib.__file__
pipe = diffusion_lib.load_pipeline("text-to-emoji", progress=False)
images = pipe(["cat face", "red apple"], num_images_per_prompt=2, steps=10, generator=torch.Generator().manual_seed(0))
assert images.shape == (4, 3, 32, 32) and images.min() >= -1 and images.max() <= 1, images.shape
path = diffusion_lib.save_images(images, "emoji.png")
print(hashlib.sha256(path.read_bytes()).hexdigest())
"""


class Failure(Exception):
    pass


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode:
        raise Failure(f"{' '.join(map(str, command))} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result


def timed(label: str, start: float) -> None:
    print(f"{label}: {time.perf_counter() - start:.1f} s", flush=True)


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, list[str]]:
    """A server of ``folder`` on the loopback address, in a thread; returns it and the list of paths asked for."""
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def do_GET(self):
            asked.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, asked


def check_archives(dist: Path) -> Path:
    """The wheel's path, after checking both archives' sizes and that they hold every record and no weights."""
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    for archive in (wheel, sdist):
        size = archive.stat().st_size
        print(f"{archive.name}: {size:,} bytes")
        if size > MAX_BYTES:
            raise Failure(f"{archive.name} is {size:,} bytes, over the goal of {MAX_BYTES:,}")
    names = zipfile.ZipFile(wheel).namelist()
    if any(name.endswith(".safetensors") for name in names):
        raise Failure(f"{wheel.name} holds weight files")
    records = {f"diffusion_lib/pretrained/{p.name}" for p in PRETRAINED.glob("*.json")}
    if not records <= set(names):
        raise Failure(f"{wheel.name} lacks the records {sorted(records - set(names))[:3]}")
    tar = run(["tar", "tzf", str(sdist)]).stdout
    if ".safetensors" in tar:
        raise Failure(f"{sdist.name} holds weight files")
    return wheel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="check_install-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        run([sys.executable, "-m", "build", "--outdir", str(work / "dist"), str(ROOT)])
        timed("build", start)
        wheel = check_archives(work / "dist")
        venv = work / "venv"
        python = venv / "bin" / "python"
        start = time.perf_counter()
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(python), "-m", "pip", "install", "-q", f"torch=={TORCH}"])
        timed(f"fresh environment with torch {TORCH}", start)
        start = time.perf_counter()
        run([str(python), "-m", "pip", "install", "-q", f"{wheel}[book]"])
        timed(f"pip install {wheel.name}[book]", start)
        version = run([str(venv / "bin" / "diffusion-train"), "--version"]).stdout.strip()
        print(f"diffusion-train --version: {version}")

        server, asked = serve(PRETRAINED)
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        environment = {"PATH": "/usr/bin:/bin", "HOME": str(work), "DIFFUSION_LIB_WEIGHTS_URL": url,
                       "DIFFUSION_LIB_CACHE": str(work / "cache"), "OMP_NUM_THREADS": "1"}
        (work / "draw").mkdir(exist_ok=True)
        start = time.perf_counter()
        first = run([str(python), "-c", DRAW], cwd=work / "draw", env=environment).stdout.strip()
        timed("emoji drawn with weights from the loopback server", start)
        server.shutdown()
        server.server_close()
        wanted = {"/emoji_text_v.safetensors", "/emoji_autoencoder.safetensors"}
        if set(asked) != wanted:
            raise Failure(f"the server was asked for {sorted(asked)}, expected {sorted(wanted)}")
        cached = sorted(p.name for p in (work / "cache" / "weights").iterdir())
        print(f"cache: {cached}")
        start = time.perf_counter()
        again = run([str(python), "-c", DRAW], cwd=work / "draw", env=environment).stdout.strip()
        timed("emoji drawn again offline, from the cache", start)
        if again != first:
            raise Failure("the offline draw from the cache differs from the first draw")
        print(json.dumps({"wheel": wheel.name, "draw_sha256": first}))
    except Failure as err:
        print(f"check_install: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
