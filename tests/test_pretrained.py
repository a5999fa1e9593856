"""The published generators: names, cache location, and fetching them from a local HTTP server
(no network): resume after a cut, nothing half-written in the cache, the offline message; the
CUT authors' six, unpacked from their one tar (only those members, never a path of the tar's)."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
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

CYCLEGAN_NAMES = [
    "horse2zebra", "zebra2horse", "monet2photo", "style_monet", "style_cezanne", "style_ukiyoe", "style_vangogh",
    "apple2orange", "orange2apple", "summer2winter_yosemite", "winter2summer_yosemite", "sat2map", "map2sat",
    "cityscapes_photo2label", "cityscapes_label2photo", "facades_photo2label", "facades_label2photo",
    "iphone2dslr_flower",
]
CUT_NAMES = [
    "horse2zebra_cut", "horse2zebra_fastcut", "cat2dog_cut", "cat2dog_fastcut", "cityscapes_label2photo_cut",
    "cityscapes_label2photo_fastcut",
]
CUT_RUNS = [
    "horse2zebra_cut_pretrained", "horse2zebra_fastcut_pretrained", "cat2dog_cut_pretrained",
    "cat2dog_fastcut_pretrained", "cityscapes_cut_pretrained", "cityscapes_fastcut_pretrained",
]
NAMES = CYCLEGAN_NAMES + CUT_NAMES  # every published name


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


def test_the_eighteen_cyclegan_and_six_cut_names_each_with_a_description():
    assert sorted(pretrained.PRETRAINED_MODELS) == sorted(NAMES)
    assert list(pretrained.CUT_MODELS) == CUT_NAMES and [run for run, _ in pretrained.CUT_MODELS.values()] == CUT_RUNS
    assert [pretrained.method(n) for n in CUT_NAMES] == ["CUT", "FastCUT"] * 3
    assert {pretrained.method(n) for n in CYCLEGAN_NAMES} == {"CycleGAN"}
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


# --------------------------------------------------------------------------
# The CUT authors' six, from their one tar
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cut_bytes() -> bytes:
    """A small generator in the CUT authors' antialiased layout (with 'filt' buffers)."""
    torch.manual_seed(0)
    net = build_generator(GeneratorConfig(ngf=4, n_blocks=9, antialias=True, upsample="antialias"), input_nc=3, output_nc=3)
    buffer = io.BytesIO()
    torch.save(authors_state_dict(init_weights(net, gain=0.3)), buffer)
    return buffer.getvalue()


def make_tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def cut_members(data: bytes, prefix: str = "checkpoints/") -> dict[str, bytes]:
    """The six generators as the authors' tar holds them, beside files that must never be unpacked."""
    members = {f"{prefix}{run}/latest_net_G.pth": data for run in CUT_RUNS}
    members[f"{prefix}horse2zebra_cut_pretrained/train_opt.txt"] = b"options"
    members["../outside.txt"] = b"never written"
    return members


@pytest.fixture
def cut_mirror(server, cut_bytes, monkeypatch):  # noqa: F811 (the fixture imported above)
    server.files["/cut/pretrained_models.tar"] = make_tar(cut_members(cut_bytes))
    monkeypatch.setenv(pretrained.CUT_URL_ENV_VAR, f"{server.base}/cut/")
    return server


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_cut_urls_the_mirror_variable_and_cache_paths(cache, monkeypatch):
    monkeypatch.delenv(pretrained.CUT_URL_ENV_VAR, raising=False)
    monkeypatch.setenv(pretrained.URL_ENV_VAR, "http://mirror.invalid/cyclegan/")  # the CycleGAN mirror is not the CUT one
    assert pretrained.model_url("cat2dog_cut") == "http://efrosgans.eecs.berkeley.edu/CUT/pretrained_models.tar"
    monkeypatch.setenv(pretrained.CUT_URL_ENV_VAR, "http://mirror.invalid/cut/")
    assert pretrained.model_url("cityscapes_label2photo_fastcut") == "http://mirror.invalid/cut/pretrained_models.tar"
    assert pretrained.cut_archive_url("http://other.invalid") == "http://other.invalid/pretrained_models.tar"
    assert pretrained.cached_path("horse2zebra_fastcut") == cache / "cut" / "horse2zebra_fastcut.pth"


def test_a_cut_name_downloads_the_tar_once_and_unpacks_only_the_six(cut_mirror, cache, cut_bytes, tmp_path):
    messages = []
    path = pretrained.fetch("cat2dog_fastcut", progress=False, notify=messages.append)
    assert path == cache / "cut" / "cat2dog_fastcut.pth" and path.read_bytes() == cut_bytes
    # the six generators and nothing else: no tar, no .part, no other member, nothing outside the cache
    assert files_under(cache) == ["cut", *sorted(f"cut/{n}.pth" for n in CUT_NAMES)]
    assert files_under(tmp_path) == ["cache", *(f"cache/{p}" for p in files_under(cache))]
    _, spec = load_authors_generator(cache / "cut" / "horse2zebra_cut.pth")
    assert spec.config.antialias and spec.config.upsample == "antialias"
    assert any(m.startswith("downloading ") for m in messages) and any(m.startswith("unpacking 6 ") for m in messages)

    for name in CUT_NAMES:
        assert pretrained.resolve(f"pretrained:{name}", progress=False) == cache / "cut" / f"{name}.pth"
    assert cut_mirror.seen_ranges == [None]  # one download for all six


def test_any_directory_prefix_in_the_tar_is_found(cut_mirror, cache, cut_bytes):
    cut_mirror.files["/cut/pretrained_models.tar"] = make_tar(cut_members(cut_bytes, prefix="./pretrained_models/x/"))
    assert pretrained.fetch("horse2zebra_cut", progress=False).read_bytes() == cut_bytes


def test_a_cut_tar_download_resumes_and_is_then_unpacked(cut_mirror, cache, cut_bytes, monkeypatch):
    monkeypatch.setattr(cyclegan.inference.download, "MAX_ATTEMPTS", 1)
    cut_mirror.cut_after = 300_000
    with pytest.raises(DownloadError, match="interrupted.*run the same command again to resume"):
        pretrained.fetch("horse2zebra_cut", progress=False)
    assert files_under(cache) == ["cut", "cut/pretrained_models.tar.part"]

    assert pretrained.fetch("horse2zebra_cut", progress=False).read_bytes() == cut_bytes
    assert cut_mirror.seen_ranges == [None, "bytes=300000-"]
    assert len(files_under(cache / "cut")) == 6


def test_a_tar_missing_a_member_is_one_line_naming_both_and_is_deleted(cut_mirror, cache, cut_bytes):
    members = cut_members(cut_bytes)
    del members["checkpoints/cityscapes_fastcut_pretrained/latest_net_G.pth"]
    cut_mirror.files["/cut/pretrained_models.tar"] = make_tar(members)
    with pytest.raises(CheckpointError) as error:
        pretrained.fetch("horse2zebra_cut", progress=False)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{cut_mirror.base}/cut/pretrained_models.tar has no member")
    assert "'cityscapes_fastcut_pretrained/latest_net_G.pth'" in message and "the download was deleted" in message
    assert files_under(cache) == ["cut"]


def test_a_tar_saved_by_hand_is_unpacked_and_checked_the_same_way(cache, cut_bytes, monkeypatch):
    monkeypatch.setenv(pretrained.CUT_URL_ENV_VAR, f"http://127.0.0.1:{unused_port()}/cut")  # never asked
    members = cut_members(cut_bytes)
    del members["checkpoints/cat2dog_cut_pretrained/latest_net_G.pth"]
    archive = cache / "cut" / "pretrained_models.tar"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(make_tar(members))
    with pytest.raises(CheckpointError, match=rf"^{archive} has no member 'cat2dog_cut_pretrained/latest_net_G.pth'.*the archive was deleted$"):
        pretrained.fetch("horse2zebra_cut", progress=False)
    assert files_under(cache) == ["cut"]

    archive.write_bytes(make_tar(cut_members(cut_bytes)))
    assert pretrained.fetch("cat2dog_cut", progress=False).read_bytes() == cut_bytes
    assert len(files_under(cache / "cut")) == 6


@pytest.mark.parametrize("evil", ["../up/horse2zebra_cut_pretrained/latest_net_G.pth", "/abs/horse2zebra_cut_pretrained/latest_net_G.pth"])
def test_a_member_that_would_leave_the_cache_is_refused(cut_mirror, cache, cut_bytes, tmp_path, evil):
    members = cut_members(cut_bytes)
    del members["checkpoints/horse2zebra_cut_pretrained/latest_net_G.pth"]
    cut_mirror.files["/cut/pretrained_models.tar"] = make_tar({evil: cut_bytes, **members})
    with pytest.raises(CheckpointError, match=f"refusing member '{evil}' of .*pretrained_models.tar"):
        pretrained.fetch("cat2dog_cut", progress=False)
    assert files_under(tmp_path) == ["cache", "cache/cut"]


def test_a_link_member_is_refused(cut_mirror, cache, cut_bytes):
    members = cut_members(cut_bytes)
    del members["checkpoints/horse2zebra_cut_pretrained/latest_net_G.pth"]
    links = {"checkpoints/horse2zebra_cut_pretrained/latest_net_G.pth": "/etc/passwd"}
    cut_mirror.files["/cut/pretrained_models.tar"] = make_tar(members, links)
    with pytest.raises(CheckpointError, match="refusing member .* not a regular file"):
        pretrained.fetch("horse2zebra_cut", progress=False)
    assert files_under(cache) == ["cut"]


def test_a_member_that_is_no_generator_deletes_the_tar(cut_mirror, cache, cut_bytes):
    members = cut_members(cut_bytes)
    members["checkpoints/cat2dog_cut_pretrained/latest_net_G.pth"] = b"<html>not a model</html>"
    cut_mirror.files["/cut/pretrained_models.tar"] = make_tar(members)
    with pytest.raises(CheckpointError) as error:
        pretrained.fetch("cat2dog_cut", progress=False)
    message = str(error.value)
    assert "\n" not in message and "member 'checkpoints/cat2dog_cut_pretrained/latest_net_G.pth' of " in message
    assert "is not a usable generator" in message and message.endswith("the archive was deleted")
    assert files_under(cache) == ["cut", "cut/horse2zebra_cut.pth", "cut/horse2zebra_fastcut.pth"]  # the good ones before it


def test_an_interrupted_unpacking_keeps_the_tar_and_finishes_without_a_download(cut_mirror, cache, cut_bytes, monkeypatch):
    from cyclegan.inference import unpack

    copies = []

    def copy_then_fail(source, out):
        copies.append(1)
        if len(copies) == 3:
            raise OSError(28, "No space left on device")
        out.write(source.read())

    monkeypatch.setattr(unpack.shutil, "copyfileobj", copy_then_fail)
    with pytest.raises(CycleGANError, match="^cannot unpack 'checkpoints/cat2dog_cut_pretrained/latest_net_G.pth' of .*: No space left on device$"):
        pretrained.fetch("horse2zebra_cut", progress=False)
    assert files_under(cache) == ["cut", "cut/horse2zebra_cut.pth", "cut/horse2zebra_fastcut.pth", "cut/pretrained_models.tar"]

    monkeypatch.undo()
    monkeypatch.setenv(pretrained.CACHE_ENV_VAR, str(cache))
    monkeypatch.setenv(pretrained.CUT_URL_ENV_VAR, f"{cut_mirror.base}/cut/")
    assert pretrained.fetch("cityscapes_label2photo_cut", progress=False).read_bytes() == cut_bytes
    assert cut_mirror.seen_ranges == [None]
    assert files_under(cache) == ["cut", *sorted(f"cut/{n}.pth" for n in CUT_NAMES)]


def test_a_download_that_is_no_tar_never_reaches_the_cache(cut_mirror, cache):
    cut_mirror.files["/cut/pretrained_models.tar"] = b"<html>moved</html>" * 100
    with pytest.raises(CheckpointError, match=r"cannot read http://.*/pretrained_models.tar as a tar archive.*the download was deleted"):
        pretrained.fetch("horse2zebra_cut", progress=False)
    assert files_under(cache) == ["cut"]


def test_cut_offline_is_one_line_naming_the_tar_and_where_to_put_it(cache, monkeypatch):
    url_base = f"http://127.0.0.1:{unused_port()}/cut"
    monkeypatch.setenv(pretrained.CUT_URL_ENV_VAR, url_base)
    with pytest.raises(DownloadError) as error:
        pretrained.fetch("cat2dog_cut", progress=False, timeout=5)
    message = str(error.value)
    assert "\n" not in message and message.startswith("cannot reach 127.0.0.1")
    assert f"download {url_base}/pretrained_models.tar by hand and save it as {cache / 'cut' / 'pretrained_models.tar'}" in message


def test_the_pretrained_command_marks_the_cut_models_and_fetches_one(cut_mirror, cache, capsys):
    from cyclegan.cli import run as cli_run

    assert cli_run(["pretrained", "--list"]) == 0
    rows = [line.split(None, 2) for line in capsys.readouterr().out.strip().splitlines()]
    assert [row[0] for row in rows] == list(pretrained.PRETRAINED_MODELS)
    assert {row[0]: row[1] for row in rows if row[1] != "CycleGAN"} == dict(zip(CUT_NAMES, ["CUT", "FastCUT"] * 3))
    assert cli_run(["pretrained", "cityscapes_label2photo_fastcut", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(cache / "cut" / "cityscapes_label2photo_fastcut.pth")
    assert "unpacking 6 generators" in captured.err
