"""Shipped weights out of the package: found in a clone, else in the cache, else downloaded from the release, verified.

Every download test runs against a server on the loopback address that serves a folder, counts its requests and can
send a file slowly; the package folder is a temporary one that holds the records but not the weights, as an
installed wheel's does."""

from __future__ import annotations

import http.server
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch

from diffusion_lib import checkpoints, weights
from diffusion_lib.pretrained import load

NAME = "digits_classifier"  # a small shipped model (0.2 MB)


class Server:
    """A loopback HTTP server of ``folder`` in a thread: ``url``, ``requests`` (paths asked for), and ``trickle``
    (seconds to wait between 16 kB pieces; 0 sends at once)."""

    def __init__(self, folder: Path) -> None:
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self):
                server.requests.append(self.path)
                if not server.trickle:
                    return super().do_GET()
                body = (folder / self.path.lstrip("/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for start in range(0, len(body), 16384):
                    self.wfile.write(body[start:start + 16384])
                    self.wfile.flush()
                    time.sleep(server.trickle)

            def log_message(self, *args):
                pass

        self.requests: list[str] = []
        self.trickle = 0.0
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A package folder with the records and no weights, a release folder served on the loopback address, and an
    empty cache; yields (server, release folder, cache)."""
    package, release, cache = tmp_path / "package", tmp_path / "release", tmp_path / "cache"
    package.mkdir()
    release.mkdir()
    for json_file in checkpoints.PRETRAINED.glob("*.json"):
        shutil.copy(json_file, package)
    shutil.copy(checkpoints.PRETRAINED / f"{NAME}.safetensors", release)
    monkeypatch.setattr(checkpoints, "PRETRAINED", package)
    server = Server(release)
    monkeypatch.setenv(weights.URL_VARIABLE, server.url)
    monkeypatch.setenv(weights.CACHE_VARIABLE, str(cache))
    monkeypatch.delenv(weights.DEADLINE_VARIABLE, raising=False)
    yield server, release, cache
    server.stop()


def cached_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("*") if p.is_file())


def test_a_model_not_in_the_package_is_downloaded_once_verified_and_then_loaded_offline_from_the_cache(installed):
    server, _, cache = installed
    model = load(NAME, progress=False).model
    shipped, _ = checkpoints.load(Path(weights.__file__).parent / "pretrained" / NAME)
    assert all(torch.equal(model.state_dict()[key], value.float()) for key, value in shipped.items())
    assert server.requests == [f"/{NAME}.safetensors"]
    assert cached_files(cache) == [f"{NAME}.{weights.recorded_sha256(checkpoints.PRETRAINED / (NAME + '.json'))[:16]}"
                                   ".safetensors"]
    server.stop()  # offline from here on
    again = load(NAME, progress=False).model
    assert all(torch.equal(again.state_dict()[key], value.float()) for key, value in shipped.items())
    assert server.requests == [f"/{NAME}.safetensors"]


def test_a_download_that_is_not_the_recorded_file_is_refused_and_leaves_nothing_in_the_cache(installed):
    server, release, cache = installed
    tampered = bytearray((release / f"{NAME}.safetensors").read_bytes())
    tampered[-1] ^= 1
    (release / f"{NAME}.safetensors").write_bytes(bytes(tampered))
    with pytest.raises(ValueError, match=rf"weights of '{NAME}' downloaded from {server.url}{NAME}.safetensors are "
                                         r"not the file this library's record names \(SHA-256 [0-9a-f]{64}\)"):
        load(NAME, progress=False)
    assert cached_files(cache) == []


def test_offline_or_a_missing_file_is_one_clear_error_that_says_where_else_the_weights_can_come_from(
        installed, monkeypatch):
    server, release, cache = installed
    (release / f"{NAME}.safetensors").unlink()
    with pytest.raises(OSError, match=rf"could not download the weights of '{NAME}' from {server.url}{NAME}"
                                      r"\.safetensors: 404 .*Offline\? .* or point DIFFUSION_LIB_WEIGHTS_URL"):
        load(NAME, progress=False)
    server.stop()
    with pytest.raises(OSError, match=rf"could not download the weights of '{NAME}' .*Offline\? In a clone of the "
                                      rf"book's repository they are in .*; else put {NAME}.safetensors \(SHA-256"):
        load(NAME, progress=False)
    assert cached_files(cache) == []


def test_a_download_slower_than_its_deadline_stops_at_the_deadline_and_leaves_nothing(installed, monkeypatch):
    server, release, cache = installed
    big = {"weight": torch.zeros(512, 1024)}  # 2 MB: 128 pieces of 16 kB, 0.05 s apart, would take over 6 s
    sha256 = checkpoints.sha256_of(checkpoints.save(release / "big", big, {}).with_suffix(".safetensors"))
    server.trickle = 0.05
    start = time.monotonic()
    with pytest.raises(OSError, match=r"'big' .*did not end within its deadline of 1 s "
                                      r"\(DIFFUSION_LIB_DOWNLOAD_DEADLINE\)"):
        weights.download("big", sha256, deadline_s=1.0, progress=False)
    assert time.monotonic() - start < 4
    assert cached_files(cache) == []
    monkeypatch.setenv(weights.DEADLINE_VARIABLE, "soon")
    with pytest.raises(ValueError, match="DIFFUSION_LIB_DOWNLOAD_DEADLINE must be a number of seconds > 0, got 'soon'"):
        weights.download("big", sha256, progress=False)


def test_a_checkpoint_of_ones_own_is_read_from_beside_its_record_and_never_downloaded(installed, tmp_path):
    server, _, _ = installed
    (tmp_path / "mine").mkdir()
    checkpoints.save(tmp_path / "mine" / "model", {"w": torch.ones(2)}, {})
    assert weights.tensor_file(tmp_path / "mine" / "model") == tmp_path / "mine" / "model.safetensors"
    (tmp_path / "mine" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors does not exist"):
        checkpoints.load(tmp_path / "mine" / "model", weights.tensor_file(tmp_path / "mine" / "model"))
    assert server.requests == []


def test_the_release_lists_every_shipped_models_weights_with_the_hash_its_record_holds(capsys):
    weights.main([])
    lines = capsys.readouterr().out.splitlines()
    records = sorted(checkpoints.PRETRAINED.glob("*.json"))
    assert len(lines) == len(records) + 1 and lines[-1].startswith(f"{len(records)} files, ")
    for line, json_file in zip(lines, records, strict=False):
        name, _, sha256 = line.split()
        assert name == json_file.stem + ".safetensors" and sha256 == weights.recorded_sha256(json_file)
    weights.main(["--paths"])
    paths = capsys.readouterr().out.split()
    assert [Path(p).name for p in paths] == [json_file.stem + ".safetensors" for json_file in records]


def test_the_release_workflow_attaches_every_weight_file_where_the_library_downloads_from():
    import yaml

    from diffusion_lib import __version__

    root = Path(__file__).resolve().parent.parent
    repository = yaml.safe_load((root / "_config.yml").read_text())["repository"]["url"]
    assert weights.RELEASE_URL == f"{repository}/releases/download/v{__version__}/"
    workflow = yaml.safe_load((root / ".github" / "workflows" / "release.yml").read_text())
    assert workflow[True]["push"]["tags"] == ["v*"]  # YAML reads the key `on` as True
    runs = [step.get("run", "") for step in workflow["jobs"]["release"]["steps"]]
    assert any("v$(python -c 'import diffusion_lib; print(diffusion_lib.__version__)')" in r for r in runs)
    upload = next(r for r in runs if "gh release create" in r)
    assert "release/dist/*" in upload and "$(python -m diffusion_lib.weights --paths)" in upload
    assert any(r.startswith("python scripts/check_install.py --keep release") for r in runs)


def test_a_frozen_part_stored_once_loads_from_the_model_it_belongs_to_while_that_model_is_unchanged(tmp_path):
    """Half the bytes: a ControlNet holds its frozen base model by reference (``shared`` in its record) and float16
    weights load into the float32 model they were rounded from."""
    from diffusion_lib.pretrained import load

    base_tensors, base_record = checkpoints.load(checkpoints.PRETRAINED / "shapes_text")
    full_tensors, full_record = checkpoints.load(checkpoints.PRETRAINED / "shapes_control")
    for record in (base_record, full_record):
        for key in ("format", "library_version", "tensors_sha256", "record_sha256"):
            record.pop(key)
    half = {key: value.half() for key, value in base_tensors.items()}
    base = checkpoints.save(tmp_path / "base", half, base_record)
    own = {key: value for key, value in full_tensors.items() if not key.startswith("base.")}
    part = {"model": "base", "from": "", "to": "base.", "tensors_sha256": checkpoints.load(base)[1]["tensors_sha256"]}
    checkpoints.save(tmp_path / "control", own, {**full_record, "shared": [part]})
    model = load(tmp_path / "control").model
    expected = {**own, **{f"base.{key}": value.half().float() for key, value in base_tensors.items()}}
    state = model.state_dict()
    assert set(state) == set(expected) and all(torch.equal(state[k], expected[k].float()) for k in expected)
    assert model.base.unet.conv_in.weight.dtype == torch.float32
    checkpoints.save(tmp_path / "base", {**half, "unet.conv_in.bias": half["unet.conv_in.bias"] + 1}, base_record)
    with pytest.raises(ValueError, match=r"control\.json holds the weights of 'base' as they were when it was made "
                                         r".* the two no longer belong together"):
        load(tmp_path / "control")
    checkpoints.save(tmp_path / "odd", own, {**full_record, "shared": [{"model": "base"}]})
    with pytest.raises(ValueError, match=r"odd\.json: each entry of shared must name model, from, to and "
                                         r"tensors_sha256, got \{'model': 'base'\}"):
        load(tmp_path / "odd")
