"""Hugging Face model folders (``export --format hf``, ``hf:ORG/NAME``, ``push``) and W&B model
artifacts (``fit --model_artifact.enabled true``, ``wandb:ENTITY/PROJECT/NAME:ALIAS``).

No test reaches the network: huggingface_hub runs offline on a cache under tmp_path, its upload
calls are replaced, and W&B runs offline (conftest)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard, constants as hf_constants, errors as hf_errors
from PIL import Image
from safetensors.torch import load_file, save_file

import cyclegan
from cyclegan import CheckpointError
from cyclegan.cli import run as cli_run
from cyclegan.inference import remote
from cyclegan.inference.hub import FILES, load_folder
from cyclegan.inference.hub_model import HubGenerator
from cyclegan.inference.translator import load_translator
from cyclegan.models.networks import GeneratorConfig, build_generator
from conftest import write_images
from test_translate import make_checkpoint
from wandb_records import records, run_file

REPO = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch, tmp_path):
    """huggingface_hub offline, its cache and token file under tmp_path, no token; our cache too."""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("CYCLEGAN_CACHE", str(tmp_path / "cyclegan-cache"))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "rgb.ckpt")


@pytest.fixture(scope="module")
def folder(ckpt, tmp_path_factory) -> Path:
    """The b2a generator of ``ckpt`` exported with --format hf."""
    out = tmp_path_factory.mktemp("hf") / "horse2zebra"
    assert cli_run(["export", "--checkpoint", str(ckpt), "--direction", "b2a", "--format", "hf",
                    "--output", str(out)]) == 0
    return out


def _hub_cache(tmp_path: Path, folder: Path, repo_id: str = "org/h2z") -> Path:
    """``folder`` laid out as huggingface_hub's cache holds a downloaded snapshot of ``repo_id``."""
    storage = tmp_path / "hf-home" / "hub" / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, storage / "snapshots" / COMMIT)
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(COMMIT)
    return storage / "snapshots" / COMMIT


def _pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


# --------------------------------------------------------------------------- the folder


def test_folder_gives_the_checkpoints_pixels_and_huggingface_hub_builds_it(ckpt, folder, tmp_path):
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "cyclegan-generator" and config["direction"] == "b2a" and config["kind"] == "cyclegan"
    assert config["generator"]["ngf"] == 8 and config["input_nc"] == config["output_nc"] == 3 and config["stride"] == 4
    assert config["normalization"]["input"]["range"] == [-1.0, 1.0]

    # Weights only, under the generator's own names: they load into a plain network.
    state = load_file(folder / "model.safetensors")
    plain = build_generator(GeneratorConfig(**config["generator"]), input_nc=3, output_nc=3)
    assert state.keys() == plain.state_dict().keys()

    # The same pixels as the checkpoint, through translate (fp32) and the Python API.
    images = tmp_path / "in"
    write_images(images, 3, size=(45, 31))
    for source, out in ((str(ckpt), "from-ckpt"), (str(folder), "from-folder")):
        assert cli_run(["translate", "--checkpoint", source, "--direction", "b2a", "--input", str(images),
                        "--output", str(tmp_path / out), "--precision", "32", "--workers", "0", "--quiet"]) == 0
    a, b = _pixels(tmp_path / "from-ckpt"), _pixels(tmp_path / "from-folder")
    assert a.keys() == b.keys() and len(a) == 3
    assert all(np.array_equal(a[k], b[k]) for k in a)

    x = torch.rand(2, 3, 36, 28) * 2 - 1
    expected = cyclegan.load_generator(ckpt, "b2a")(x)
    torch.testing.assert_close(cyclegan.load_generator(folder)(x), expected, rtol=0, atol=0)
    translator = load_translator(folder, precision="32")
    assert translator.metadata["direction"] == "b2a" and translator.path == folder / "model.safetensors"
    torch.testing.assert_close(translator.forward(x), expected, rtol=0, atol=0)

    # huggingface_hub's own from_pretrained builds it from config.json and model.safetensors.
    hub_model = HubGenerator.from_pretrained(str(folder))
    assert not hub_model.training and hub_model.config["direction"] == "b2a"
    with torch.no_grad():
        torch.testing.assert_close(hub_model(x), expected, rtol=0, atol=0)


def test_export_replaces_its_own_folder_but_not_other_files(ckpt, folder, tmp_path, capsys):
    out = tmp_path / "m"
    shutil.copytree(folder, out)
    assert cli_run(["export", "--checkpoint", str(ckpt), "--format", "hf", "--output", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["direction"] == "a2b"  # replaced
    other = tmp_path / "other"
    write_images(other, 1)
    capsys.readouterr()
    assert cli_run(["export", "--checkpoint", str(ckpt), "--format", "hf", "--output", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --output {other} is a folder holding other files") and "\n" not in err
    assert not list(tmp_path.glob(".*tmp*"))


def test_folder_whose_config_does_not_match_its_weights_is_refused_in_one_line(folder, tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    config = json.loads((bad / "config.json").read_text())
    config["generator"]["ngf"] = 16
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config.json does not match .*model.safetensors: \d+ tensors differ"):
        load_translator(bad)
    with pytest.raises(CheckpointError, match="does not match"):
        HubGenerator.from_pretrained(str(bad))  # strict, unlike the mixin's default
    capsys.readouterr()
    assert cli_run(["translate", "--checkpoint", str(bad), "--input", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "does not match" in err and "\n" not in err

    # A tensor left out, a config that is not ours, a folder of something else: each one line.
    state = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in list(state.items())[1:]}, str(bad / "model.safetensors"))
    (bad / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(CheckpointError, match="1 tensors missing, 0 unexpected"):
        cyclegan.load_generator(bad)
    (bad / "config.json").write_text(json.dumps({"architectures": ["Other"]}))
    with pytest.raises(CheckpointError, match="does not describe a cyclegan generator"):
        load_translator(bad)
    with pytest.raises(CheckpointError, match="folder without config.json"):
        load_translator(tmp_path / "o" if (tmp_path / "o").is_dir() else tmp_path)


def test_loading_a_folder_never_unpickles(folder, tmp_path, monkeypatch):
    def no_pickles(*args, **kwargs):
        raise AssertionError("torch.load called while loading a model folder")

    monkeypatch.setattr(torch, "load", no_pickles)
    cyclegan.load_generator(folder)
    load_translator(folder)
    # A pickled pytorch_model.bin instead of safetensors is refused, not read.
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(folder / "config.json", pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        load_translator(pickled)


# --------------------------------------------------------------------------- hf:ORG/NAME


def test_hf_name_comes_from_huggingface_hubs_cache(folder, tmp_path):
    _hub_cache(tmp_path, folder)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    expected = cyclegan.load_generator(folder)(x)
    for name in ("hf:org/h2z", f"hf:org/h2z@{COMMIT}", "hf:org/h2z@main"):
        torch.testing.assert_close(cyclegan.load_generator(name)(x), expected, rtol=0, atol=0)
        assert load_translator(name).metadata["direction"] == "b2a"
    out = tmp_path / "exported.pt"  # and export takes it like any checkpoint
    assert cli_run(["export", "--checkpoint", "hf:org/h2z", "--format", "torchscript", "--output", str(out)]) == 0


@pytest.mark.parametrize("name, message", [
    ("hf:org/absent", "error: hf:org/absent: not in the Hugging Face cache ("),
    ("hf:org/h2z@v9", "error: hf:org/h2z@v9: not in the Hugging Face cache ("),
    ("hf:bad--name", "error: hf:bad--name: not a Hub repository name ("),
])
def test_hf_name_that_cannot_be_had_is_one_error_line(folder, tmp_path, capsys, name, message):
    _hub_cache(tmp_path, folder)
    assert cli_run(["translate", "--checkpoint", name, "--input", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err, err


def test_repository_that_does_not_exist_is_one_error_line(tmp_path, capsys, monkeypatch):
    import huggingface_hub

    def not_found(*args, **kwargs):
        error = hf_errors.RepositoryNotFoundError.__new__(hf_errors.RepositoryNotFoundError)  # no HTTP response
        error.args = ("404 Client Error: Repository Not Found",)
        raise error

    monkeypatch.setattr(huggingface_hub, "snapshot_download", not_found)
    assert cli_run(["evaluate", "--checkpoint", "hf:org/nope", "--input", str(tmp_path), "--features", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: hf:org/nope: no such repository on the Hugging Face Hub (or it is private: log in with "
                   "`hf auth login` or set HF_TOKEN)")


def test_hf_home_and_hf_hub_offline_are_honoured_by_the_command(folder, tmp_path):
    # A fresh process: huggingface_hub reads HF_HOME and HF_HUB_OFFLINE from the environment.
    images = tmp_path / "in"
    write_images(images, 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "cyclegan.cli", "translate", "--checkpoint", "hf:org/h2z", "--input", str(images),
               "--output", str(tmp_path / "out"), "--workers", "0", "--quiet"]
    missing = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith(f"error: hf:org/h2z: not in the Hugging Face cache ({tmp_path / 'hf-home'}")
    _hub_cache(tmp_path, folder)
    found = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr
    assert (tmp_path / "out" / "img000.png").is_file()


# --------------------------------------------------------------------------- push


def test_push_without_a_token_is_one_line_and_uploads_nothing(ckpt, tmp_path, capsys, monkeypatch):
    from huggingface_hub import HfApi

    monkeypatch.setattr(HfApi, "upload_folder", lambda *a, **k: pytest.fail("uploaded without a token"))
    assert cli_run(["push", "--checkpoint", str(ckpt), "--repo", "org/h2z", "--output", str(tmp_path / "f")]) == 2
    assert capsys.readouterr().err.strip() == "error: no Hugging Face token: log in with `hf auth login` or set HF_TOKEN"
    assert not (tmp_path / "f").exists()  # refused before any work


def test_push_exports_and_uploads_the_folder(ckpt, tmp_path, capsys, monkeypatch):
    from huggingface_hub import HfApi

    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, self.token, kwargs))

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        card = ModelCard.load(folder / "README.md")
        calls.append(("upload_folder", kwargs["repo_id"], sorted(p.name for p in folder.iterdir()), card, kwargs))
        return type("Commit", (), {"commit_url": "https://huggingface.co/org/h2z/commit/abc"})()

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    assert cli_run(["push", "--checkpoint", str(ckpt), "--repo", "org/h2z", "--direction", "b2a", "--private",
                    "--license", "mit"]) == 0
    (_, repo, token, create), (_, repo2, files, card, upload) = calls
    assert repo == repo2 == "org/h2z" and token == "hf_test_token" and create == {"private": True, "exist_ok": True}
    assert files == sorted(FILES) and sorted(upload["allow_patterns"]) == sorted(FILES)
    assert card.data.license == "mit" and card.data.library_name == "cyclegan"
    assert 'cyclegan.load_generator("hf:org/h2z")' in card.text and "b2a" in card.text
    out = capsys.readouterr().out
    assert "uploaded config.json, model.safetensors, README.md to https://huggingface.co/org/h2z" in out


def test_push_dry_run_writes_the_folder_and_lists_it(ckpt, tmp_path, capsys, monkeypatch):
    from huggingface_hub import HfApi

    monkeypatch.setattr(HfApi, "upload_folder", lambda *a, **k: pytest.fail("a dry run uploaded"))
    out = tmp_path / "dry"
    assert cli_run(["push", "--checkpoint", str(ckpt), "--repo", "org/h2z", "--dry-run", "--output", str(out)]) == 0
    printed = capsys.readouterr()
    assert "dry run: would upload to https://huggingface.co/org/h2z:" in printed.out
    for name in FILES:
        assert f"  {name}  {(out / name).stat().st_size:,} bytes" in printed.out
    assert "no Hugging Face token" in printed.err
    load_folder(out)


# --------------------------------------------------------------------------- fit's model artifacts


@pytest.fixture(scope="module")
def artifact_run(tmp_path_factory):
    """A tiny offline CycleGAN fit with --model_artifact.enabled true (and validation metrics)."""
    from test_cli import _fit

    tmp = tmp_path_factory.mktemp("artifact-run")
    root = tmp / "data"
    write_images(root / "trainA", 6, seed=1)
    write_images(root / "trainB", 5, seed=2)
    write_images(root / "testA", 2, seed=3)
    write_images(root / "testB", 2, seed=4)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONFIG_DIR": str(tmp / "wb-config"),
                           "WANDB_CACHE_DIR": str(tmp / "wb-cache"), "WANDB_DATA_DIR": str(tmp / "wb-data")}.items():
            mp.setenv(key, value)
        mp.delenv("WANDB_API_KEY", raising=False)
        cli = _fit("cyclegan", root, tmp / "runs", "--trainer.max_steps", "4", "--trainer.limit_train_batches", "2",
                   "--val_metrics.every_n_epochs", "1", "--model_artifact.enabled", "true")
    ckpt = Path(cli.trainer.checkpoint_callback.dirpath) / "last.ckpt"
    artifact = next(c for c in cli.trainer.callbacks if type(c).__name__ == "ModelArtifact")
    return tmp / "runs", ckpt, dict(artifact.logged)


def test_model_card_states_the_checkpoints_facts(artifact_run):
    runs, ckpt, _ = artifact_run
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    run = ckpt.parent.parent
    folder = run / "model" / f"step-{checkpoint['global_step']:07d}" / "a2b"
    card = ModelCard.load(folder / "README.md")
    config = json.loads((folder / "config.json").read_text())
    data = checkpoint["datamodule_hyper_parameters"]

    assert config["image_size"] == data["crop_size"] == 32 and config["kind"] == checkpoint["translator"]["kind"]
    assert config["generator"] == {**GeneratorConfig().__dict__, **checkpoint["translator"]["generator"]}
    assert card.data.library_name == "cyclegan" and card.data.license == "bsd-3-clause"
    assert {"cyclegan", "a2b", "pytorch_model_hub_mixin"} <= set(card.data.tags)
    text = card.text
    assert "domain A (`trainA`, 6 images) into domain B (`trainB`, 5 images)" in text
    assert f"{checkpoint['global_step']} iterations" in text
    assert f"W&B run: `{checkpoint['wandb_run_id']}` (project `cyclegan`)" in text
    assert f"lr {checkpoint['hyper_parameters']['lr']}" in text and "gan_mode lsgan" in text
    assert "@inproceedings{zhu2017unpaired" in text and "cyclegan.load_generator(" in text

    # The last validation in the run folder, as the card's table and its model-index.
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if any(k.startswith("val/") for k in r)]
    assert val, "the fit ran no validation"
    last = {k: v for r in val if r["step"] == val[-1]["step"] for k, v in r.items() if k.startswith("val/")}
    assert f"Last validation of the run, at iteration {val[-1]['step']}:" in text
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert results and set(results) == {k for k in last if k.endswith("_ab")}
    assert all(results[k] == pytest.approx(last[k], abs=1e-6) for k in results)
    assert f"| `val/kid_ab` | {last['val/kid_ab']:.4g} |" in text


def test_offline_wandb_run_holds_the_model_artifacts(artifact_run):
    runs, ckpt, logged = artifact_run
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    run_id, step = checkpoint["wandb_run_id"], checkpoint["global_step"]
    assert logged == {"a2b": f"cyclegan-a2b-{run_id}", "b2a": f"cyclegan-b2a-{run_id}"}
    found = {r.artifact.name: r.artifact for r in records(run_file(runs)) if r.WhichOneof("record_type") == "artifact"}
    assert set(found) == set(logged.values())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    for direction, name in logged.items():
        artifact = found[name]
        assert artifact.type == "model" and set(artifact.aliases) == {"latest", f"step-{step}"}
        assert artifact.run_id == run_id and json.loads(artifact.metadata)["direction"] == direction
        files = {c.path: Path(c.local_path) for c in artifact.manifest.contents}
        assert set(files) == set(FILES) and all(p.is_file() for p in files.values())
        (folder,) = {p.parent for p in files.values()}
        torch.testing.assert_close(cyclegan.load_generator(folder)(x), cyclegan.load_generator(ckpt, direction)(x),
                                   rtol=0, atol=0)


# --------------------------------------------------------------------------- wandb:ENTITY/PROJECT/NAME:ALIAS


def test_wandb_name_uses_the_api_when_reachable_else_the_cache(folder, tmp_path, capsys, monkeypatch):
    import wandb

    name = "wandb:me/cyclegan/cyclegan-b2a-abc:latest"
    assert cli_run(["translate", "--checkpoint", name, "--input", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {name}: W&B is offline (WANDB_MODE=offline or no login), and it is not cached in "
                   f"{tmp_path / 'cyclegan-cache' / 'wandb' / 'me' / 'cyclegan' / 'cyclegan-b2a-abc:latest'}")

    asked = []

    class FakeArtifact:
        type = "model"

        def download(self, root):
            shutil.copytree(folder, root, dirs_exist_ok=True)
            return root

    class FakeApi:
        def __init__(self, timeout=None):
            pass

        def artifact(self, artifact_name):
            asked.append(artifact_name)
            return FakeArtifact()

    import cyclegan.training.wandb_runs as wandb_runs

    monkeypatch.setattr(wandb_runs, "offline_by_default", lambda: False)
    monkeypatch.setattr(wandb, "Api", FakeApi)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    expected = cyclegan.load_generator(folder)(x)
    torch.testing.assert_close(cyclegan.load_generator(name)(x), expected, rtol=0, atol=0)
    assert asked == ["me/cyclegan/cyclegan-b2a-abc:latest"]

    monkeypatch.setattr(wandb_runs, "offline_by_default", lambda: True)  # W&B gone: the cached copy serves
    torch.testing.assert_close(load_translator(name, precision="32").forward(x), expected, rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="name a W&B model artifact as wandb:ENTITY/PROJECT/NAME:ALIAS"):
        remote.resolve("wandb:just-a-name")
