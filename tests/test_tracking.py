"""The W&B logger, through its public face: what ``wandb.init`` is called with, the fallbacks when a
run cannot start, and where run folders go. (What it reaches into Lightning for lives in
cyclegan/training/lightning_internals.py.)"""

import warnings

import pytest
import wandb

from cyclegan.training.wandb_logger import WandbLogger


@pytest.fixture
def init_calls(monkeypatch):
    """``wandb.init`` recorded: each call's keyword arguments. The first ``failures[0]`` calls raise
    as an unreachable server would; later ones start a real run, always disabled (no files, no
    network; set by argument, since a process-wide wandb setup may outlive WANDB_MODE)."""
    calls, failures, real_init = [], [0], wandb.init

    def spy(**kwargs):
        calls.append(dict(kwargs))
        if len(calls) <= failures[0]:
            raise OSError("cannot reach api.wandb.ai\n(a library's multi-line dump)")
        return real_init(**{**kwargs, "mode": "disabled"})

    monkeypatch.setattr(wandb, "init", spy)
    return calls, failures


def test_anonymous_is_left_out_of_wandb_init(tmp_path, monkeypatch, init_calls):
    # Lightning passes anonymous=None to wandb.init, and wandb then warns "The anonymous setting
    # has no effect" whatever the value: a line the user can do nothing about, on every fit.
    calls, _ = init_calls
    warned = []
    monkeypatch.setattr(wandb, "termwarn", lambda message, *args, **kwargs: warned.append(message))
    run = WandbLogger(save_dir=str(tmp_path), offline=False).experiment
    try:
        assert run.disabled and len(calls) == 1
        assert "anonymous" not in calls[0], calls[0]
        assert not [m for m in warned if "anonymous" in m.lower()], warned
    finally:
        run.finish()


@pytest.mark.parametrize("offline, failures, modes, warned", [
    # online fails: offline; that fails too (a full disk): disabled
    (False, 2, [None, "offline", "disabled"], ["W&B could not start online (cannot reach api.wandb.ai); continuing with W&B offline",
                                               "W&B could not start offline (cannot reach api.wandb.ai); continuing with W&B disabled"]),
    # offline fails: disabled at once
    (True, 1, [None, "disabled"], ["W&B could not start offline (cannot reach api.wandb.ai); continuing with W&B disabled"]),
])
def test_a_run_that_cannot_start_falls_back_and_training_goes_on(tmp_path, monkeypatch, init_calls, offline, failures,
                                                                  modes, warned):
    calls, fail = init_calls
    fail[0] = failures
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the logger's own mode decides
    logger = WandbLogger(save_dir=str(tmp_path), offline=offline)
    assert logger.offline is offline and not logger.disabled  # nothing started yet
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = logger.experiment
    try:
        assert [c.get("mode") for c in calls] == modes  # what each try asked wandb.init for
        assert run.disabled and logger.disabled
        assert [str(w.message) for w in caught if "W&B" in str(w.message)] == warned  # one line each
        assert logger.experiment is run and len(calls) == len(modes)  # started once: no further tries
    finally:
        run.finish()


def test_run_folder_is_named_by_folder_not_project(tmp_path):
    logger = WandbLogger(save_dir=str(tmp_path), folder="method1", version="abc123")
    assert logger.name == "method1" and logger.run_dir == tmp_path / "method1" / "abc123"
    assert WandbLogger(save_dir=str(tmp_path), version="x").run_dir == tmp_path / "cyclegan" / "x"
