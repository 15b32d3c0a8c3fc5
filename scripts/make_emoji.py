"""Remake the shipped emoji arrays (diffusion_lib/data/emoji/emoji32.npz) from the five npm packages, byte for byte
(with the same zlib and resvg-py; with another zlib, the same arrays, differently compressed).

    python scripts/make_emoji.py                        # fetches the tarballs with `npm pack` into a temporary folder
    python scripts/make_emoji.py --tarballs DIR         # or reads them from DIR (as `npm pack` names them)
    python scripts/make_emoji.py --size 64 --out emoji64.npz   # the 64x64 arrays, for a GPU (load_emoji(path=...))

Each tarball's SHA-256 is checked against diffusion_lib.data.emoji.PACKAGES before anything is read.
"""

import argparse
import hashlib
import subprocess
import tempfile
from pathlib import Path

from diffusion_lib.data.emoji import SHIPPED, build_arrays, write_arrays
from diffusion_lib.data.emoji_sources import PACKAGES


def fetch(folder: Path) -> dict[str, Path]:
    """`npm pack NAME@VERSION` of each style's package into ``folder``; style → tarball."""
    for package in PACKAGES.values():
        subprocess.run(["npm", "pack", f"{package.name}@{package.version}", "--pack-destination", str(folder)],
                       check=True, capture_output=True)
    return {style: folder / package.tarball for style, package in PACKAGES.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarballs", type=Path, help="a folder holding the five tarballs (default: fetch with npm)")
    parser.add_argument("--size", type=int, default=32, choices=(16, 32, 64), help="image side (default 32)")
    parser.add_argument("--out", type=Path, default=SHIPPED, help=f"the .npz to write (default {SHIPPED})")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.tarballs:
            tarballs = {style: args.tarballs / package.tarball for style, package in PACKAGES.items()}
        else:
            tarballs = fetch(Path(tmp))
        arrays = build_arrays(tarballs, args.size)
    path = write_arrays(arrays, args.out)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    print(f"{len(arrays['images'])} images of {len(arrays['codes'])} emoji ({int(arrays['test'].sum())} test images) "
          f"at {args.size}x{args.size}; wrote {path} ({path.stat().st_size:,} bytes, SHA-256 {digest})")


if __name__ == "__main__":
    main()
