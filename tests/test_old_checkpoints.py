"""Checkpoints written before the architecture step still load and give the same outputs."""

from pathlib import Path

import pytest
import torch

import cyclegan

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("kind, direction", [("cyclegan", "a2b"), ("cyclegan", "b2a"), ("method1", "a2b")])
def test_old_checkpoint_generator_gives_recorded_output(kind, direction):
    recorded = torch.load(FIXTURES / "v0_outputs.pt")
    g = cyclegan.load_generator(FIXTURES / f"v0_{kind}.ckpt", direction)
    with torch.no_grad():
        out = g(recorded["input"])
    # Equal up to float32 rounding: CPUs with other SIMD kernels differ in the last bit (3e-8 seen on
    # an AMD EPYC against outputs recorded elsewhere); a wrongly loaded layer is off by orders more.
    torch.testing.assert_close(out, recorded[f"{kind}_{direction}"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["cyclegan", "method1"])
def test_training_resumes_from_an_old_checkpoint(kind, tiny_root, tmp_path):
    from cyclegan.cli import build_cli

    old = torch.load(FIXTURES / f"v0_{kind}.ckpt", weights_only=True)
    configs = Path(__file__).resolve().parents[1] / "configs"
    cli = build_cli([
        "fit", "--config", str(configs / f"{kind}.yaml"), "--config", str(configs / "tiny.yaml"),
        "--data.root", str(tiny_root), "--trainer.default_root_dir", str(tmp_path / "runs"), "--seed_everything", "0",
        "--model.init_args.generator.ngf", "4", "--model.init_args.generator.n_blocks", "1",
        "--model.init_args.discriminator.ndf", "4", "--trainer.max_steps", str(old["global_step"] + 2),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--samples.every_n_steps", "0", "--ckpt_path", str(FIXTURES / f"v0_{kind}.ckpt"),
    ])
    assert cli.trainer.global_step == old["global_step"] + 2
    assert cli.trainer.logger.version == old["wandb_run_id"]  # the same W&B run continues
    for name, state in old["image_pools"].items():  # the pools came back, then grew
        pool = cli.model.pools[name].images
        assert len(pool) == len(state["images"]) + 2
        for restored, kept in zip(pool, state["images"]):
            torch.testing.assert_close(restored.cpu(), kept)
    new = Path(cli.trainer.checkpoint_callback.dirpath) / "last.ckpt"
    assert torch.load(new, weights_only=True)["global_step"] == old["global_step"] + 2
    assert cyclegan.load_generator(new, "a2b") is not None


def test_a_checkpoint_from_another_version_is_one_error_naming_the_file(tmp_path):
    checkpoint = torch.load(FIXTURES / "v0_cyclegan.ckpt", weights_only=True)
    checkpoint["translator"]["generator"]["attention"] = True  # a setting this version does not know
    path = tmp_path / "newer.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(cyclegan.CheckpointError, match=r"newer\.ckpt: generator settings this version cannot build "
                                                        r"\(.*'attention'\)"):
        cyclegan.load_generator(path)


def test_a_config_saved_by_the_flat_layout_still_loads(tiny_root, tmp_path):
    # config.yaml of an earlier run names its logger by the module it lived in then.
    from cyclegan.cli import build_cli
    from cyclegan.training.wandb_logger import WandbLogger

    saved = tmp_path / "config.yaml"
    saved.write_text(
        "model:\n  class_path: cyclegan.cycle_gan.CycleGAN\n"
        "trainer:\n  logger:\n    class_path: cyclegan.tracking.WandbLogger\n    init_args:\n"
        f"      save_dir: {tmp_path / 'runs'}\n"
    )
    configs = Path(__file__).resolve().parents[1] / "configs"
    cli = build_cli(["--config", str(saved), "--config", str(configs / "tiny.yaml"),
                     "--data.root", str(tiny_root)], run=False)
    assert type(cli.trainer.logger) is WandbLogger and type(cli.model) is cyclegan.CycleGAN
    import importlib

    from cyclegan.evaluation.validation import ValidationMetrics
    old_callbacks = importlib.import_module("cyclegan.callbacks")  # callbacks could be named by class path too
    assert old_callbacks.ValidationMetrics is ValidationMetrics and old_callbacks.__name__ == "cyclegan.callbacks"
