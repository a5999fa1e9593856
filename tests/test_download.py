"""Offline tests for datasets/download.py (no network: only a local server on 127.0.0.1).

The script is not a package module, so it is loaded from its file. It is looked
for, in order, at $CYCLEGAN_DOWNLOAD_SCRIPT, at ../datasets/download.py relative
to this file (tests/ -> datasets/), and at ./datasets/download.py relative to
the current directory.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import socket
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


def _script_path() -> Path:
    candidates = []
    if os.environ.get("CYCLEGAN_DOWNLOAD_SCRIPT"):
        candidates.append(Path(os.environ["CYCLEGAN_DOWNLOAD_SCRIPT"]))
    candidates.append(Path(__file__).resolve().parent.parent / "datasets" / "download.py")
    candidates.append(Path.cwd() / "datasets" / "download.py")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"datasets/download.py not found; tried {[str(c) for c in candidates]}")


def _load_script():
    spec = importlib.util.spec_from_file_location("cyclegan_datasets_download", _script_path())
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


dl = _load_script()


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def make_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def dataset_zip(name: str) -> bytes:
    return make_zip({f"{name}/{split}/{i}.jpg": f"{split}-{i}".encode() for split in dl.SPLITS for i in range(2)})


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RangeHandler(BaseHTTPRequestHandler):
    """Serves server.files[path]; honours 'Range: bytes=N-' when server.honor_range."""

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        server = self.server
        server.seen_ranges.append(self.headers.get("Range"))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start, status = 0, 200
        requested = self.headers.get("Range")
        if requested and server.honor_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cut_after is not None:  # simulate a dropped connection once
            body, server.cut_after = body[: server.cut_after], None
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.files, httpd.seen_ranges, httpd.honor_range, httpd.cut_after = {}, [], True, None
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


PAYLOAD = bytes(range(256)) * 1000  # 256 000 bytes


# --------------------------------------------------------------------------
# name validation / URLs
# --------------------------------------------------------------------------


def test_unknown_name_exits_2_and_lists_names(tmp_path, capsys):
    assert dl.main(["nosuch", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "nosuch" in err
    for name in ("horse2zebra", "maps", "iphone2dslr_flower"):
        assert name in err
    assert list(tmp_path.iterdir()) == []


def test_known_names():
    assert set(dl.DATASETS) == {
        "horse2zebra", "maps", "apple2orange", "summer2winter_yosemite", "monet2photo",
        "cezanne2photo", "ukiyoe2photo", "vangogh2photo", "facades", "iphone2dslr_flower",
    }


def test_base_url_override(monkeypatch):
    monkeypatch.delenv(dl.URL_ENV_VAR, raising=False)
    assert dl.dataset_url("maps") == "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/maps.zip"
    monkeypatch.setenv(dl.URL_ENV_VAR, "http://mirror.invalid/cg/")
    assert dl.dataset_url("maps") == "http://mirror.invalid/cg/maps.zip"
    assert dl.dataset_url("maps", "http://other.invalid") == "http://other.invalid/maps.zip"


# --------------------------------------------------------------------------
# safe extraction
# --------------------------------------------------------------------------


def test_safe_extract_unwraps_top_folder(tmp_path):
    zip_path = tmp_path / "horse2zebra.zip"
    zip_path.write_bytes(dataset_zip("horse2zebra"))
    dest = dl.safe_extract(zip_path, tmp_path / "horse2zebra")
    assert sorted(p.name for p in dest.iterdir()) == sorted(dl.SPLITS)
    assert (dest / "trainA" / "0.jpg").read_bytes() == b"trainA-0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["horse2zebra", "horse2zebra.zip"]  # no staging left


def test_safe_extract_flat_archive(tmp_path):
    zip_path = tmp_path / "flat.zip"
    zip_path.write_bytes(make_zip({f"{split}/x.jpg": b"x" for split in dl.SPLITS}))
    dest = dl.safe_extract(zip_path, tmp_path / "flat")
    assert sorted(p.name for p in dest.iterdir()) == sorted(dl.SPLITS)


@pytest.mark.parametrize("evil", ["../evil", "maps/../../evil", "/tmp/evil_abs", "..\\evil", "C:/evil"])
def test_safe_extract_rejects_escaping_entries(tmp_path, evil):
    root = tmp_path / "root"
    root.mkdir()
    zip_path = root / "maps.zip"
    zip_path.write_bytes(make_zip({"maps/trainA/ok.jpg": b"ok", evil: b"evil"}))
    with pytest.raises(dl.DownloadError, match="refusing"):
        dl.safe_extract(zip_path, root / "maps")
    assert not (tmp_path / "evil").exists()
    assert sorted(p.name for p in root.iterdir()) == ["maps.zip"]  # nothing extracted at all


def test_bad_zip_is_reported(tmp_path):
    zip_path = tmp_path / "maps.zip"
    zip_path.write_bytes(b"not a zip")
    with pytest.raises(dl.DownloadError, match="not a valid zip"):
        dl.safe_extract(zip_path, tmp_path / "maps")


# --------------------------------------------------------------------------
# resumable download
# --------------------------------------------------------------------------


def test_download_resumes_partial_file(server, tmp_path):
    server.files["/f.zip"] = PAYLOAD
    dest = tmp_path / "f.zip"
    part = tmp_path / "f.zip.part"
    part.write_bytes(PAYLOAD[:100_000])
    dl.download(f"{server.base}/f.zip", dest, timeout=5, progress=False)
    assert server.seen_ranges == ["bytes=100000-"]
    assert dest.read_bytes() == PAYLOAD
    assert not part.exists()


def test_download_restarts_when_range_ignored(server, tmp_path, capsys):
    server.honor_range = False
    server.files["/f.zip"] = PAYLOAD
    dest = tmp_path / "f.zip"
    (tmp_path / "f.zip.part").write_bytes(b"stale bytes that must not survive")
    dl.download(f"{server.base}/f.zip", dest, timeout=5, progress=False)
    assert server.seen_ranges == ["bytes=33-"]
    assert dest.read_bytes() == PAYLOAD
    assert "restarting" in capsys.readouterr().out


def test_download_complete_part_gets_416(server, tmp_path):
    server.files["/f.zip"] = PAYLOAD
    dest = tmp_path / "f.zip"
    (tmp_path / "f.zip.part").write_bytes(PAYLOAD)
    dl.download(f"{server.base}/f.zip", dest, timeout=5, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_download_retries_dropped_connection(server, tmp_path, capsys):
    server.files["/f.zip"] = PAYLOAD
    server.cut_after = 50_000
    dest = tmp_path / "f.zip"
    dl.download(f"{server.base}/f.zip", dest, timeout=5, progress=False)
    assert server.seen_ranges == [None, "bytes=50000-"]
    assert dest.read_bytes() == PAYLOAD


def test_download_http_404_is_one_line_error(server, tmp_path):
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.download(f"{server.base}/missing.zip", tmp_path / "missing.zip", timeout=5, progress=False)


# --------------------------------------------------------------------------
# command line end to end
# --------------------------------------------------------------------------


def test_main_downloads_extracts_and_skips(server, tmp_path, capsys):
    server.files["/facades.zip"] = dataset_zip("facades")
    argv = ["facades", "--root", str(tmp_path), "--base-url", server.base, "--no-progress"]
    assert dl.main(argv) == 0
    assert sorted(p.name for p in (tmp_path / "facades").iterdir()) == sorted(dl.SPLITS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["facades"]  # zip and .part removed
    capsys.readouterr()

    assert dl.main(argv) == 0  # second run: reported and skipped, no request
    assert "already present" in capsys.readouterr().out
    assert len(server.seen_ranges) == 1


def test_offline_prints_one_line_and_exits_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(dl.URL_ENV_VAR, f"http://127.0.0.1:{unused_port()}/datasets")
    assert dl.main(["horse2zebra", "--root", str(tmp_path), "--no-progress"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: cannot reach 127.0.0.1")
    assert "horse2zebra.zip by hand" in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert list(tmp_path.iterdir()) == []
