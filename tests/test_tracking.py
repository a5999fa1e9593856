"""The one place that reaches into Lightning's WandbLogger (tracking._set_mode_before_start
and its two readers): fails here, by name, when a Lightning release renames what it uses."""

from cyclegan.training.wandb_logger import WandbLogger, _drop_anonymous, _mode, _offline_flag, _set_mode_before_start


def test_mode_can_be_changed_before_the_run_starts(tmp_path):
    logger = WandbLogger(save_dir=str(tmp_path), offline=False)
    assert not _offline_flag(logger) and _mode(logger) is None and not logger.disabled
    assert logger._experiment is None  # not started: the next .experiment access starts it

    _set_mode_before_start(logger, "offline")
    assert _offline_flag(logger) and logger.offline and not logger.disabled

    _set_mode_before_start(logger, "disabled")
    assert logger.disabled and not _offline_flag(logger)
    run = logger.experiment  # wandb.init(mode="disabled"): no files, no network
    try:
        assert run.disabled
    finally:
        run.finish()


def test_anonymous_is_left_out_of_wandb_init(tmp_path):
    # wandb warns "The anonymous setting has no effect" whenever the key is passed.
    logger = WandbLogger(save_dir=str(tmp_path))
    assert "anonymous" not in logger._wandb_init
    _drop_anonymous(logger)  # idempotent


def test_run_folder_is_named_by_folder_not_project(tmp_path):
    logger = WandbLogger(save_dir=str(tmp_path), folder="method1", version="abc123")
    assert logger.name == "method1" and logger.run_dir == tmp_path / "method1" / "abc123"
    assert WandbLogger(save_dir=str(tmp_path), version="x").run_dir == tmp_path / "cyclegan" / "x"
