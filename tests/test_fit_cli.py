"""What a user sees from ``cyclegan fit``: logged sample grids, resuming the right run, one-line
argument errors, a short terminal output, run folders, the README's commands, fast start-up."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from cyclegan.cli import app as cli
from wandb_records import run_info

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}


def _args(model: str, root: Path, runs: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(CONFIGS / f"{model}.yaml"), "--config", str(CONFIGS / "tiny.yaml"),
            "--data.root", str(root), "--trainer.default_root_dir", str(runs), "--trainer.enable_progress_bar", "false",
            "--trainer.max_steps", "2", "--samples.every_n_steps", "1", "--val_metrics.every_n_epochs", "0",
            "--trainer.log_every_n_steps", "1", *extra]


def _wandb_runs(runs: Path) -> list[Path]:
    return sorted((runs / "wandb").glob("offline-run-*"))


def test_logged_sample_grids_have_the_local_grids_pixels(tiny_root, tmp_path):
    runs = tmp_path / "runs"
    trained = cli.build_cli(_args("cyclegan", tiny_root, runs))
    (wandb_run,) = _wandb_runs(runs)
    # wandb names the files samples_<its own step>_<hash>.png: pair them in logging order.
    logged = sorted((wandb_run / "files/media/images").glob("samples_*.png"), key=lambda p: int(p.name.split("_")[1]))
    local_files = sorted((Path(trained.trainer.checkpoint_callback.dirpath).parent / "samples").glob("step_*.png"))
    assert len(logged) == len(local_files) >= 2
    for path, local_file in zip(logged, local_files):
        pixels = np.asarray(Image.open(path).convert("RGB"))
        local = np.asarray(Image.open(local_file).convert("RGB"))
        assert pixels.shape == local.shape
        assert abs(pixels.mean() - local.mean()) < 0.5 and abs(pixels.std() - local.std()) < 0.5
        np.testing.assert_array_equal(pixels, local)
        assert pixels.std() > 20 and len(np.unique(pixels)) > 100, "flat grid"


def test_run_folders_by_kind_with_their_config_and_name(tiny_root, tmp_path):
    runs = tmp_path / "runs"
    first = cli.build_cli(_args("method1", tiny_root, runs, "--name", "my test"))
    second = cli.build_cli(_args("cyclegan", tiny_root, runs))
    one, two = (Path(c.trainer.checkpoint_callback.dirpath).parent for c in (first, second))
    assert one.parent == runs / "method1" and re.fullmatch(r"my-test-[0-9a-f]{8}", one.name)
    assert two.parent == runs / "cyclegan"
    for folder, kind in ((one, "Method1"), (two, "CycleGAN")):
        config = yaml.safe_load((folder / "config.yaml").read_text())
        assert config["model"]["class_path"].endswith(kind) and config["data"]["root"] == str(tiny_root)
        assert (folder / "checkpoints/last.ckpt").is_file() and list((folder / "samples").glob("*.png"))
        assert (folder / "metrics.jsonl").is_file()
    assert not (runs / "config.yaml").exists()
    names = {run_info(next(r.glob("run-*.wandb"))).display_name for r in _wandb_runs(runs)}
    assert "my test" in names


def test_ckpt_path_last_resumes_the_same_kind_and_refuses_one_that_does_not_fit(tiny_root, tmp_path, capsys):
    runs = tmp_path / "runs"
    m1 = cli.build_cli(_args("method1", tiny_root, runs))
    m1_ckpt = Path(m1.trainer.checkpoint_callback.dirpath) / "last.ckpt"
    cyc = cli.build_cli(_args("cyclegan", tiny_root, runs))  # the newest last.ckpt is CycleGAN's
    cyc_ckpt = Path(cyc.trainer.checkpoint_callback.dirpath) / "last.ckpt"
    capsys.readouterr()

    resumed = cli.build_cli(_args("method1", tiny_root, runs, "--trainer.max_steps", "3", "--ckpt_path", "last"))
    assert resumed.trainer.global_step == 3 and resumed.trainer.ckpt_path == str(m1_ckpt)
    assert resumed.trainer.logger.version == m1.trainer.logger.version  # the same W&B run, same folder
    assert Path(resumed.trainer.checkpoint_callback.dirpath) == m1_ckpt.parent
    said = capsys.readouterr().err
    assert f"resuming the method1 run in {m1_ckpt.parent.parent} from last.ckpt" in said
    assert "note: resuming keeps" not in said  # the same settings: nothing to say

    # A changed LR is not applied on resume (Lightning restores the checkpoint's): the user is told.
    again = cli.build_cli(_args("method1", tiny_root, runs, "--trainer.max_steps", "4", "--ckpt_path", "last",
                                "--model.init_args.lr", "0.001"))
    assert again.model.hparams.lr == m1.model.hparams.lr != 0.001
    assert f"note: resuming keeps the checkpoint's model settings: lr {m1.model.hparams.lr!r} (the config says 0.001)" \
        in capsys.readouterr().err

    n_runs = len(_wandb_runs(runs))
    bad = [("--ckpt_path", str(cyc_ckpt)),  # another kind
           ("--ckpt_path", str(m1_ckpt), "--model.init_args.generator.ngf", "4")]  # other shapes
    for extra in bad:
        assert cli.run(_args("method1", tiny_root, runs, "--trainer.max_steps", "5", *extra)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
    assert len(_wandb_runs(runs)) == n_runs  # refused before any W&B run was created or resumed


def test_wrong_kind_and_shape_messages(tiny_root, tmp_path, capsys):
    runs = tmp_path / "runs"
    cyc = cli.build_cli(_args("cyclegan", tiny_root, runs))
    ckpt = Path(cyc.trainer.checkpoint_callback.dirpath) / "last.ckpt"
    capsys.readouterr()
    assert cli.run(_args("method1", tiny_root, runs, "--ckpt_path", str(ckpt))) == 2
    assert f"error: {ckpt} is a cyclegan checkpoint, but this fit trains method1" in capsys.readouterr().err
    assert cli.run(_args("cyclegan", tiny_root, runs, "--ckpt_path", str(ckpt),
                         "--model.init_args.generator.n_blocks", "3")) == 2  # Lightning would take the checkpoint's
    assert f"error: {ckpt} does not fit the model: " in capsys.readouterr().err
    assert cli.run(_args("method1", tiny_root, runs, "--ckpt_path", "last")) == 2
    assert "error: --ckpt_path last: no method1 last.ckpt under" in capsys.readouterr().err
    assert len(_wandb_runs(runs)) == 1


@pytest.mark.parametrize("extra, message", [
    (["--data.rot", "x"], "error: unrecognized arguments: --data.rot x (did you mean --data.root?)"),
    (["--trainer.max_stpes", "3"], "(did you mean --trainer.max_steps?)"),
    (["--config", "missing.yaml"], "missing.yaml"),
    (["--trainer.max_steps", "abc"], "error: "),
    (["--model.init_args.gan_mode", "nope"],
     "error: --model.init_args.gan_mode: Expected a typing.Literal['lsgan', 'vanilla', 'hinge', 'wgangp']. Got value: nope"),
    (["--model.init_args.diff_augment", "[colour]"], "error: --model.init_args.diff_augment: Expected a typing.Literal["),
    (["--model.init_args.generator.ngf", "x"], "error: --model.init_args.generator.ngf: Expected a <class 'int'>."),
    (["--model.init_args.lambda_idt", "1"],
     "error: --model.init_args.lambda_idt: CycleGAN has no such setting (did you mean --model.init_args.lambda_identity?)"),
    (["--model.init_args.max_nonfinte", "3"],  # a setting every model has, from the shared base
     "error: --model.init_args.max_nonfinte: CycleGAN has no such setting (did you mean --model.init_args.max_nonfinite?)"),
    (["--data.crop_size", "-"], "error: "),
    (["--model.init_args.generator.arch", "unet", "--model.init_args.generator.n_downs", "6"],  # tiny: 32 px crops
     "error: --data.crop_size 32 is not a multiple of 64, which this generator needs (it downsamples 64x): use 64"),
    (["--model.init_args.generator.arch", "unet", "--model.init_args.generator.n_downs", "5", "--data.preprocess", "none"],
     "error: --data.preprocess none keeps each image's size (padded to a multiple of 4), but this generator needs "
     "multiples of 32"),
])
def test_bad_fit_arguments_are_one_error_line(tiny_root, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*_args("cyclegan", tiny_root, tmp_path / "runs"), *extra])
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0]


def test_unknown_command_lists_every_command_and_suggests_one(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["translte"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and line.endswith("did you mean 'translate'?")
    for name in cli.commands():
        assert name in line
    assert {"fit", "validate", "translate", "export", "evaluate", "compare"} <= set(cli.commands())
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert all(re.search(rf"^  {name} ", text, re.M) for name in cli.commands())
    assert "test" not in cli.commands() and "predict" not in cli.commands()


def test_tiny_fit_prints_a_few_lines_and_verbose_brings_the_rest_back(tiny_root, tmp_path):
    def fit(*extra: str) -> list[str]:
        result = subprocess.run([sys.executable, "-m", "cyclegan.cli", *_args("method1", tiny_root, tmp_path / "runs"),
                                 "--trainer.max_steps", "6", *extra], capture_output=True, text=True, env=ENV,
                                cwd=tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        return (result.stdout + result.stderr).strip().splitlines()

    lines = fit()
    assert len(lines) <= 8, "\n".join(lines)
    text = "\n".join(lines)
    for wanted in ("run: ", "W&B: run ", "speed: ", "last checkpoint: ", "--ckpt_path last", "wandb sync "):
        assert wanted in text, wanted
    assert text.count("wandb sync") == 1 and "wandb:" not in text and "Warning" not in text
    assert len(fit("--verbose")) > len(lines) + 10


def test_readme_csvlogger_command_works_as_written(tmp_path, monkeypatch):
    readme = (REPO / "README.md").read_text()
    (command,) = [block for block in re.findall(r"```bash\n(.*?)```", readme, re.S) if "CSVLogger" in block]
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[0] == "cyclegan"
    monkeypatch.chdir(REPO)  # the README's paths are relative to the repository
    root = tmp_path / "runs"
    argv = [a if a != "runs" else str(root) for a in argv[1:]]  # keep the repository clean
    trained = cli.build_cli([*argv, "--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1",
                             "--trainer.limit_val_batches", "1"])
    assert trained.trainer.global_step == 2
    (metrics,) = root.glob("method1/version_*/metrics.csv")  # run folders by kind, whatever the logger
    assert "train/loss_d_b" in metrics.read_text().splitlines()[0]


def test_help_and_tools_do_not_import_lightning():
    code = ("import sys; from cyclegan.cli import app as cli\n"
            "for argv in (['--help'], ['translate', '--help']):\n"
            "    try: cli.main(argv)\n"
            "    except SystemExit: pass\n"
            "heavy = [m for m in ('pytorch_lightning', 'lightning_fabric', 'wandb', 'albumentations', 'torchmetrics')"
            " if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert "HEAVY []" in result.stdout, result.stdout[-500:] + result.stderr[-500:]


def test_fast_overlay_builds_small_resize_conv_networks_fed_whole_images(tmp_path):
    # configs/fast.yaml over configs/cyclegan.yaml, the demo's recipe (tests/test_demo.py trains it):
    # what the overlay changes, seen in what gets built and fed, beside the published recipe.
    demo = REPO / "datasets" / "emoji2lineart"

    def build(*overlay: str):
        return cli.build_cli(["--config", str(CONFIGS / "cyclegan.yaml"), *overlay, "--data.root", str(demo),
                              "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false"], run=False)

    fast, published = build("--config", str(CONFIGS / "fast.yaml")), build()

    def size(net: torch.nn.Module) -> int:
        return sum(p.numel() for p in net.parameters())

    def transposed(net: torch.nn.Module) -> int:
        return sum(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())

    for direction in ("G_AB", "G_BA"):
        small, full = getattr(fast.model, direction), getattr(published.model, direction)
        assert size(small) * 5 < size(full), (size(small), size(full))  # minutes on a CPU, not hours
        assert transposed(small) == 0 and transposed(full) > 0  # resize-conv: no checkerboard artefacts
        with torch.no_grad():
            assert small(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)  # a whole 64 px image goes through
    assert size(fast.model.D_A) * 5 < size(published.model.D_A)

    # The discriminators are shown augmented images while training (DiffAugment), the published ones not.
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    fast.model.train(), published.model.train()
    assert not torch.equal(fast.model.augment(x), x) and torch.equal(published.model.augment(x), x)

    # Whole images, four at a time: each is its file's pixels, or their mirror image (flips only).
    dm = fast.datamodule
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["A"].shape == batch["B"].shape == (4, 3, 64, 64)
    for side in ("A", "B"):
        for image, path in zip(batch[side], batch[f"{side}_path"]):
            pixels = ((image.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(int)
            on_disk = np.asarray(Image.open(path).convert("RGB")).astype(int)
            assert min(np.abs(pixels - on_disk).max(), np.abs(pixels - on_disk[:, ::-1]).max()) <= 1, path


def test_speed_line_says_where_max_time_stops_the_run():
    from cyclegan.cli.summary import speed_line

    # 0.05 s/iteration: 1000 iterations are 50 s, inside a 10-minute max_time: the schedule ends first.
    assert speed_line(0.05, 1000, "cpu", time_left=600) == "speed: 0.05 s/iteration on cpu; 1000 iterations left, about 0h00m"
    # An open-ended schedule (max_epochs 100000) under max_time 55 min: the clock decides, not 380 hours.
    line = speed_line(0.05, 27_400_000, "cpu", time_left=3300)
    assert line == ("speed: 0.05 s/iteration on cpu; max_time stops training in about 0h55m, "
                    "after about 66000 of the 27400000 iterations left")
    assert "smoke run" in speed_line(2.0, 100_000, "cpu") and "smoke run" in speed_line(2.0, 100_000, "cpu", time_left=7200)
