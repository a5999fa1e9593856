"""The published generators: names, cache location, and fetching them from a local HTTP server
(no network): resume after a cut, nothing half-written in the cache, the offline message."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cyclegan.inference.download
from cyclegan.inference import pretrained
from cyclegan.inference.download import DownloadError
from cyclegan.errors import CheckpointError, CycleGANError
from cyclegan.models.networks import GeneratorConfig, build_generator, init_weights
from cyclegan.inference.authors import authors_state_dict, load_authors_generator
from test_download import server, unused_port  # noqa: F401 (server is a fixture)

NAMES = [
    "horse2zebra", "zebra2horse", "monet2photo", "style_monet", "style_cezanne", "style_ukiyoe", "style_vangogh",
    "apple2orange", "orange2apple", "summer2winter_yosemite", "winter2summer_yosemite", "sat2map", "map2sat",
    "cityscapes_photo2label", "cityscapes_label2photo", "facades_photo2label", "facades_label2photo",
    "iphone2dslr_flower",
]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(pretrained.CACHE_ENV_VAR, str(folder))
    return folder


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    """A small generator in the authors' layout, about 200 kB."""
    torch.manual_seed(0)
    net = init_weights(build_generator(GeneratorConfig(ngf=8, n_blocks=2), input_nc=3, output_nc=3), gain=0.3)
    buffer = io.BytesIO()
    torch.save(authors_state_dict(net), buffer)
    return buffer.getvalue()


@pytest.fixture
def mirror(server, model_bytes, monkeypatch):  # noqa: F811 (the fixture imported above)
    server.files["/models/horse2zebra.pth"] = model_bytes
    monkeypatch.setenv(pretrained.URL_ENV_VAR, f"{server.base}/models/")
    return server


def test_the_eighteen_published_names_each_with_a_description():
    assert sorted(pretrained.PRETRAINED_MODELS) == sorted(NAMES)
    assert all(description and "\n" not in description for description in pretrained.PRETRAINED_MODELS.values())


def test_reading_a_checkpoint_does_not_import_the_http_client():
    # Our HTTP client loads only when a download happens. (http.client itself cannot be the test:
    # torch imports it, through torch.hub and urllib.request, before any module of ours.)
    code = ("import sys, cyclegan.inference.checkpoints, cyclegan.inference.translator; "
            "print('cyclegan.inference.download' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_urls_and_the_mirror_variable(monkeypatch):
    monkeypatch.delenv(pretrained.URL_ENV_VAR, raising=False)
    assert pretrained.model_url("horse2zebra") == (
        "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/horse2zebra.pth"
    )
    monkeypatch.setenv(pretrained.URL_ENV_VAR, "http://mirror.invalid/m/")
    assert pretrained.model_url("map2sat") == "http://mirror.invalid/m/map2sat.pth"


def test_cache_dir_default_and_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(pretrained.CACHE_ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert pretrained.cache_dir() == tmp_path / "home" / ".cache" / "cyclegan"
    monkeypatch.setenv(pretrained.CACHE_ENV_VAR, str(tmp_path / "elsewhere"))
    assert pretrained.cached_path("sat2map") == tmp_path / "elsewhere" / "sat2map.pth"


def test_unknown_name_lists_the_published_ones(cache):
    with pytest.raises(CheckpointError, match="no published model 'horse2zzebra'; choose one of: apple2orange"):
        pretrained.fetch("horse2zzebra")
    assert not cache.exists()


def test_fetch_downloads_once_into_the_cache(mirror, cache, model_bytes):
    path = pretrained.fetch("horse2zebra", progress=False)
    assert path == cache / "horse2zebra.pth" and path.read_bytes() == model_bytes
    assert sorted(p.name for p in cache.iterdir()) == ["horse2zebra.pth"]  # no .part left
    load_authors_generator(path)
    assert pretrained.fetch("horse2zebra", progress=False) == path
    assert mirror.seen_ranges == [None]  # the second call made no request


def test_resolve_names_the_cached_file_and_passes_paths_through(mirror, cache, tmp_path):
    assert pretrained.resolve("pretrained:horse2zebra", progress=False) == cache / "horse2zebra.pth"
    assert pretrained.resolve(tmp_path / "run.ckpt") == tmp_path / "run.ckpt"
    assert pretrained.resolve("pretrained.ckpt") == Path("pretrained.ckpt")  # a file name, not the scheme


def test_a_cut_download_leaves_only_the_part_file_and_resumes(mirror, cache, model_bytes, monkeypatch):
    monkeypatch.setattr(cyclegan.inference.download, "MAX_ATTEMPTS", 1)  # give up after the first cut
    mirror.cut_after = 50_000
    with pytest.raises(DownloadError, match="interrupted.*run the same command again to resume"):
        pretrained.fetch("horse2zebra", progress=False)
    assert sorted(p.name for p in cache.iterdir()) == ["horse2zebra.pth.part"]  # never a half file under the name
    assert (cache / "horse2zebra.pth.part").stat().st_size == 50_000

    path = pretrained.fetch("horse2zebra", progress=False)
    assert mirror.seen_ranges == [None, "bytes=50000-"]
    assert path.read_bytes() == model_bytes
    assert sorted(p.name for p in cache.iterdir()) == ["horse2zebra.pth"]


def test_a_dropped_connection_is_resumed_within_one_call(mirror, cache, model_bytes):
    mirror.cut_after = 70_000
    assert pretrained.fetch("horse2zebra", progress=False).read_bytes() == model_bytes
    assert mirror.seen_ranges == [None, "bytes=70000-"]


def test_a_download_that_is_no_generator_never_reaches_the_cache(mirror, cache):
    mirror.files["/models/horse2zebra.pth"] = b"<html>moved</html>"
    with pytest.raises(CheckpointError, match="did not give a usable generator .* the download was deleted"):
        pretrained.fetch("horse2zebra", progress=False)
    assert list(cache.iterdir()) == []


def test_offline_is_one_line_naming_the_url_and_where_to_put_the_file(cache, monkeypatch):
    url_base = f"http://127.0.0.1:{unused_port()}/models"
    monkeypatch.setenv(pretrained.URL_ENV_VAR, url_base)
    with pytest.raises(DownloadError) as error:
        pretrained.fetch("style_monet", progress=False, timeout=5)
    message = str(error.value)
    assert "\n" not in message and message.startswith("cannot reach 127.0.0.1")
    assert f"download {url_base}/style_monet.pth by hand and save it as {cache / 'style_monet.pth'}" in message
    assert isinstance(error.value, CycleGANError) and error.value.exit_code == 2
    assert not any(cache.iterdir())
