"""download-params against an HTTP server on 127.0.0.1 that serves a small params tar.

The tar holds real ``.npz`` files written with numpy; the server counts its requests and
can cut a response half-way, ignore ``Range``, or answer 404.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from uni_fold import download
from uni_fold.download import DownloadError, download_params, find_params, main

MAX_REQUESTS = 20  # a client stuck in a loop fails the test instead of hanging it


def _npz_bytes(seed: int) -> tuple[bytes, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    arrays = {"alphafold/alphafold_iteration/evoformer/preprocess_1d//weights":
              rng.standard_normal((22, 16)).astype(np.float32),
              "alphafold/alphafold_iteration/evoformer/preprocess_1d//bias":
              rng.standard_normal(16).astype(np.float32)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue(), arrays


def _tar_bytes(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def params_tar() -> tuple[bytes, dict[str, dict[str, np.ndarray]]]:
    members, arrays = {}, {}
    for seed, model in enumerate(("model_1", "model_1_ptm", "model_2")):
        data, arrays[model] = _npz_bytes(seed)
        members[f"params_{model}.npz"] = data
    members["LICENSE"] = b"Creative Commons Attribution 4.0 International\n"
    return _tar_bytes(members), arrays


class _Server:
    """What the handler serves and how it misbehaves; records every request's headers."""

    def __init__(self) -> None:
        self.body = b""
        self.status = 200
        self.cut_first = False  # first response: half the body, then close
        self.honour_range = True
        self.requests: list[dict[str, str]] = []
        self.lock = threading.Lock()


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        state = self.server.state  # type: ignore[attr-defined]
        with state.lock:
            state.requests.append(dict(self.headers))
            count = len(state.requests)
        if count > MAX_REQUESTS or state.status != 200:
            self.send_error(404 if state.status == 404 else 500)
            return
        body, start = state.body, 0
        range_header = self.headers.get("Range")
        if range_header and state.honour_range:
            start = int(range_header.removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if state.cut_first and count == 1:
            payload = payload[: len(payload) // 2]
            self.close_connection = True
        self.wfile.write(payload)
        self.wfile.flush()


@pytest.fixture()
def server() -> Iterator[tuple[_Server, str]]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = _Server()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/alphafold_params_test.tar"
    try:
        yield httpd.state, url  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _check_unpacked(params_dir: Path, arrays: dict[str, dict[str, np.ndarray]]) -> None:
    for model, expected in arrays.items():
        path = find_params(params_dir, model)
        with np.load(path) as loaded:
            assert sorted(loaded.files) == sorted(expected)
            for key, value in expected.items():
                np.testing.assert_array_equal(loaded[key], value)
    assert (params_dir / "LICENSE").read_bytes().startswith(b"Creative Commons")
    leftovers = [p.name for p in params_dir.iterdir() if p.name.endswith(".part")
                 or p.name.startswith(".unpack-") or p.suffix == ".tar"]
    assert leftovers == []


def test_full_download_unpacks_and_then_skips(server, params_tar, tmp_path):
    state, url = server
    state.body, arrays = params_tar
    params_dir = tmp_path / "params"
    sha = hashlib.sha256(state.body).hexdigest()
    assert main(["--params-dir", str(params_dir), "--url", url, "--sha256", sha,
                 "--quiet"]) == 0
    _check_unpacked(params_dir, arrays)
    assert len(state.requests) == 1
    assert state.requests[0]["User-Agent"].startswith("uni-fold/")
    # a second run finds the files and makes no request; --force downloads again
    files = download_params(params_dir, url=url, progress=False)
    assert len(state.requests) == 1
    assert sorted(f.name for f in files) == ["LICENSE", "params_model_1.npz",
                                             "params_model_1_ptm.npz", "params_model_2.npz"]
    download_params(params_dir, url=url, force=True, progress=False)
    assert len(state.requests) == 2
    _check_unpacked(params_dir, arrays)


def test_env_var_sets_default_params_dir(server, params_tar, tmp_path, monkeypatch):
    state, url = server
    state.body, arrays = params_tar
    monkeypatch.setenv("UNI_FOLD_PARAMS", str(tmp_path / "from_env"))
    assert main(["--url", url, "--quiet"]) == 0
    _check_unpacked(tmp_path / "from_env", arrays)
    assert find_params(None, "model_2") == tmp_path / "from_env" / "params_model_2.npz"


def test_resume_in_a_later_run_after_cut_connection(server, params_tar, tmp_path):
    state, url = server
    state.body, arrays = params_tar
    state.cut_first = True
    params_dir = tmp_path / "params"
    with pytest.raises(DownloadError, match="run the command again to resume"):
        download_params(params_dir, url=url, retries=0, progress=False)
    part = params_dir / "alphafold_params_test.tar.part"
    half = len(state.body) // 2
    assert part.stat().st_size == half
    assert not list(params_dir.glob("*.npz"))
    download_params(params_dir, url=url, retries=0, progress=False,
                    sha256=hashlib.sha256(state.body).hexdigest())
    assert state.requests[1]["Range"] == f"bytes={half}-"
    _check_unpacked(params_dir, arrays)


def test_resume_within_one_run(server, params_tar, tmp_path):
    state, url = server
    state.body, arrays = params_tar
    state.cut_first = True
    download_params(tmp_path, url=url, retries=2, backoff=0.01, progress=False)
    assert len(state.requests) == 2
    assert "Range" not in state.requests[0] and state.requests[1]["Range"].startswith("bytes=")
    _check_unpacked(tmp_path, arrays)


def test_server_without_range_support_restarts(server, params_tar, tmp_path):
    state, url = server
    state.body, arrays = params_tar
    state.cut_first, state.honour_range = True, False
    download_params(tmp_path, url=url, retries=1, backoff=0.01, progress=False)
    assert len(state.requests) == 2
    _check_unpacked(tmp_path, arrays)


def test_checksum_mismatch_leaves_nothing(server, params_tar, tmp_path, capsys):
    state, url = server
    state.body, _ = params_tar
    params_dir = tmp_path / "params"
    wrong = hashlib.sha256(b"not the archive").hexdigest()
    assert main(["--params-dir", str(params_dir), "--url", url, "--sha256", wrong,
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "does not match the expected" in err and wrong in err
    assert not params_dir.exists()
    # an existing directory keeps only what it had
    params_dir.mkdir()
    (params_dir / "mine.txt").write_text("x")
    with pytest.raises(DownloadError, match="SHA-256"):
        download_params(params_dir, url=url, sha256=wrong, progress=False)
    assert [p.name for p in params_dir.iterdir()] == ["mine.txt"]


def test_404_is_a_clear_error(server, tmp_path, capsys):
    state, url = server
    state.status = 404
    assert main(["--params-dir", str(tmp_path / "p"), "--url", url, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "HTTP 404" in err and "--url" in err
    assert len(state.requests) == 1  # not retried
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("bad_member", ["../evil", "/tmp/evil_abs", "sub/../../evil"])
def test_path_traversal_member_rejected(server, tmp_path, bad_member):
    state, url = server
    data, _ = _npz_bytes(0)
    state.body = _tar_bytes({"params_model_1.npz": data, bad_member: b"owned"})
    params_dir = tmp_path / "inner" / "params"
    with pytest.raises(ValueError, match="outside the params directory"):
        download_params(params_dir, url=url, progress=False)
    assert not (tmp_path / "inner" / "evil").exists() and not (tmp_path / "evil").exists()
    assert not Path("/tmp/evil_abs").exists()
    assert not params_dir.exists()  # nothing unpacked, archive deleted, new folder removed


def test_symlink_member_rejected(server, tmp_path):
    state, url = server
    state.body = _tar_bytes({}, symlinks={"params_model_1.npz": "/etc/passwd"})
    with pytest.raises(ValueError, match="not a regular file"):
        download_params(tmp_path, url=url, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_find_params_names_the_file_and_the_command(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        find_params(tmp_path, "model_3_ptm")
    message = str(info.value)
    assert "params_model_3_ptm.npz" in message and "download-params" in message
    assert str(tmp_path) in message
    with pytest.raises(ValueError, match="not a model name"):
        find_params(tmp_path, "../model_1")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="SHA-256 digest"):
        download_params(tmp_path, url="http://127.0.0.1:1/x.tar", sha256="abc")
    with pytest.raises(ValueError, match="file name"):
        download_params(tmp_path, url="http://127.0.0.1:1/")
    with pytest.raises(SystemExit):
        main(["--retries", "-1"])


def test_official_file_names():
    assert len(download.AF2_MODEL_NAMES) == 15
    assert download.DEFAULT_URL.endswith("/alphafold/alphafold_params_2022-12-06.tar")
