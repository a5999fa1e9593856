"""End to end: ``cyclegan fit`` through the CLI on tiny folders, offline W&B."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cyclegan import CheckpointError, load_generator
from cyclegan.cli import build_cli
from conftest import write_images
from wandb_records import config, history, run_file, run_info

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _fit(model: str, root: Path, runs: Path, *extra: str):
    return build_cli([
        "fit", "--config", str(CONFIGS / f"{model}.yaml"), "--config", str(CONFIGS / "tiny.yaml"),
        "--data.root", str(root), "--trainer.default_root_dir", str(runs), "--seed_everything", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.log_every_n_steps", "1", "--samples.every_n_steps", "2", *extra,
    ])


@pytest.mark.parametrize("model, directions, keys", [
    ("cyclegan", ["a2b", "b2a"], ["train/loss_g_adv_ab", "train/loss_g_adv_ba", "train/loss_cycle_a",
                                  "train/loss_cycle_b", "train/loss_idt_a", "train/loss_idt_b", "train/loss_d_a",
                                  "train/loss_d_b", "train/d_b_real", "train/d_b_fake", "train/lr_g",
                                  "train/d_a_acc", "train/grad_norm_g"]),
    ("method1", ["a2b"], ["train/loss_g_adv_ab", "train/loss_d_b", "train/d_b_real", "train/d_b_fake", "train/lr_d",
                            "train/d_b_acc", "train/grad_norm_g"]),
    ("cut", ["a2b"], ["train/loss_g_adv_ab", "train/loss_nce_ab", "train/loss_nce_idt_b", "train/loss_d_b",
                      "train/d_b_real", "train/d_b_acc", "train/grad_norm_g"]),
    ("fastcut", ["a2b"], ["train/loss_g_adv_ab", "train/loss_nce_ab", "train/loss_d_b", "train/grad_norm_g"]),
])
def test_fit_writes_checkpoint_that_load_generator_reproduces_and_offline_wandb_run(
    tiny_root, tmp_path, model, directions, keys
):
    runs = tmp_path / "runs"
    cli = _fit(model, tiny_root, runs, "--trainer.max_steps", "3", "--trainer.logger.init_args.group", "exp1")
    assert cli.trainer.global_step == 3
    ckpt = Path(cli.trainer.checkpoint_callback.dirpath) / "last.ckpt"
    assert ckpt.is_file()

    x = torch.rand(2, 3, 32, 32) * 2 - 1
    trained = cli.model.eval()
    for direction, net in zip(directions, [trained.G_AB, getattr(trained, "G_BA", None)]):
        g = load_generator(ckpt, direction)
        assert not g.training
        torch.testing.assert_close(g(x), net(x), rtol=0, atol=0)
    if directions == ["a2b"]:
        with pytest.raises(CheckpointError, match=f"{model} checkpoint has no 'b2a' generator"):
            load_generator(ckpt, "b2a")

    samples = sorted((ckpt.parent.parent / "samples").glob("*.png"))
    assert [p.name for p in samples][:2] == ["step_0000002.png", "step_0000003.png"]

    wandb_file = run_file(runs)
    rows = history(wandb_file)
    logged = set().union(*rows)
    assert set(keys) <= logged
    assert any(r.get("samples", {}).get("_type") == "images/separated" or "samples/_type" in r for r in rows)
    assert list(wandb_file.parent.glob("files/media/images/samples_*.png"))
    info = run_info(wandb_file)
    assert model in info.tags and info.run_group == "exp1"
    cfg = config(wandb_file)
    assert cfg["config"]["data"]["root"] == str(tiny_root)  # the full resolved CLI config
    assert cfg["config"]["model"]["init_args"]["generator"]["ngf"] == 8


def test_resume_continues_steps_lr_schedule_optimizer_state_and_pools(tmp_path):
    runs, root = tmp_path / "runs", tmp_path / "data"
    write_images(root / "trainA", 4, seed=1)  # 4 iterations an epoch
    write_images(root / "trainB", 3, seed=2)
    # LR constant for 1 epoch, then decays over 2.
    schedule = ["--model.init_args.n_epochs", "1", "--model.init_args.n_epochs_decay", "2"]
    first = _fit("cyclegan", root, runs, "--trainer.max_steps", "4", *schedule)
    ckpt = Path(first.trainer.checkpoint_callback.dirpath) / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    assert saved["global_step"] == 4
    saved_pool = saved["image_pools"]["a"]["images"]
    assert len(saved_pool) == 4

    second = _fit("cyclegan", root, runs, "--trainer.max_steps", "8", "--ckpt_path", str(ckpt), *schedule)
    assert second.trainer.global_step == 8
    assert second.trainer.current_epoch == 2  # epochs 0 and 1 done
    opt_g, opt_d = (o.optimizer for o in second.model.optimizers())
    for opt in (opt_g, opt_d):
        assert {int(s["step"]) for s in opt.state.values()} == {8}  # Adam continued, not restarted
        # epoch 1 is the first decay epoch: factor 1 - 1/3
        assert opt.param_groups[0]["lr"] == pytest.approx(2e-4 * 2 / 3)
    # The pool was restored: its first four images are the ones saved at step 4.
    pool = second.model.pool_a.images
    assert len(pool) == 8
    for restored, kept in zip(pool[:4], saved_pool):
        torch.testing.assert_close(restored.cpu(), kept)


def test_cli_reports_empty_folder_in_one_line(tmp_path):
    (tmp_path / "trainA").mkdir()
    (tmp_path / "trainB").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "cyclegan.cli", "fit", "--config", str(CONFIGS / "tiny.yaml"),
         "--data.root", str(tmp_path), "--trainer.default_root_dir", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    # Both folders exist and are empty: the first one listed is named, with the extensions looked for.
    assert result.stderr.strip().splitlines()[-1] == \
        f"error: no images (bmp/gif/jpeg/jpg/png/tif/tiff/webp) in {tmp_path / 'trainA'}"
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs" / "wandb").exists()  # failed before creating a W&B run


def test_validation_kid_and_paired_metrics_select_the_best_checkpoint(tiny_root, tmp_path):
    # testA/testB hold the same file names: a paired validation set.
    cli = _fit("cyclegan", tiny_root, tmp_path / "runs", "--trainer.max_epochs", "2", "--val_metrics.every_n_epochs", "1",
               "--checkpoint.monitor", "val/kid_ab", "--checkpoint.mode", "min", "--checkpoint.save_top_k", "1",
               "--checkpoint.every_n_epochs", "1", "--trainer.logger", "false")
    metrics = cli.trainer.callback_metrics
    for key in ("val/kid_ab", "val/kid_ab_std", "val/rmse_ab", "val/pixel_acc_ab", "val/ssim_ab", "val/edge_f1_ab",
                "val/diversity_ab", "val/loss_cycle_a"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert 0 <= metrics["val/pixel_acc_ab"] <= 1 and metrics["val/rmse_ab"] > 0
    best = cli.trainer.checkpoint_callback
    assert best.best_model_path and Path(best.best_model_path).is_file()
    assert best.best_model_score == min(best.best_k_models.values())


def test_output_piped_to_a_reader_that_leaves_is_no_traceback():
    # `cyclegan --help | head -1`: head exits after one line; a write to the closed pipe must end quietly.
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", "from cyclegan.cli import main; main()", "--help"], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the interpreter has started: its first write meets a closed pipe
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
