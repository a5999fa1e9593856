"""``cyclegan fit --init_from DIR``: carry on a run of the authors' code (four weight files,
no optimizer state) with its networks in the right places and the LR schedule at its epoch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cyclegan import CycleGAN
from cyclegan.cli import build_cli, main as cli_main
from cyclegan.models.networks import DiscriminatorConfig, GeneratorConfig
from test_published import authors_state, random_net, same_weights, save

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY_G = GeneratorConfig(ngf=8, n_blocks=2)  # configs/tiny.yaml
TINY_D = DiscriminatorConfig(ndf=8, n_layers=2)


def authors_run(folder: Path, *, epoch="latest", g=TINY_G, d=TINY_D, seed=0) -> CycleGAN:
    """A model with distinct random weights in all four networks, saved as the authors' code
    saves it: their G_A is our G_AB, their D_A judges domain B (our D_B)."""
    model = CycleGAN(generator=g, discriminator=d)
    folder.mkdir(parents=True, exist_ok=True)
    for i, (theirs, net) in enumerate({"G_A": model.G_AB, "G_B": model.G_BA, "D_A": model.D_B, "D_B": model.D_A}.items()):
        random_net(net, seed=seed + i)
        save(authors_state(net, pre_0_4=True), folder / f"{epoch}_net_{theirs}.pth", legacy=True)
    return model


def fit(root: Path, runs: Path, *extra: str):
    return build_cli([
        "fit", "--config", str(CONFIGS / "cyclegan.yaml"), "--config", str(CONFIGS / "tiny.yaml"),
        "--data.root", str(root), "--trainer.default_root_dir", str(runs), "--seed_everything", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--val_metrics.every_n_epochs", "0", *extra,
    ])


def test_init_from_puts_the_four_networks_in_place_then_trains_at_the_saved_epoch(tiny_root, tmp_path, monkeypatch):
    run = authors_run(tmp_path / "checkpoints" / "emoji", epoch=4)
    assert not same_weights(run.D_A, run.D_B)  # distinct discriminators: a swap would show

    loaded = {}

    def snapshot(self):  # the networks as training starts, after --init_from
        loaded.update({name: {k: v.clone() for k, v in getattr(self, name).state_dict().items()}
                       for name in ("G_AB", "G_BA", "D_A", "D_B")})
    monkeypatch.setattr(CycleGAN, "on_train_start", snapshot, raising=False)

    cli = fit(tiny_root, tmp_path / "runs", "--init_from", str(tmp_path / "checkpoints" / "emoji"),
              "--init_epoch", "4", "--trainer.max_steps", "4")

    for name in ("G_AB", "G_BA", "D_A", "D_B"):
        expected = getattr(run, name).state_dict()
        assert all(torch.equal(loaded[name][k], expected[k]) for k in expected), name
    assert cli.trainer.global_step == 4
    # tiny.yaml: 3 epochs at 2e-4, 3 of decay; epoch 4 is the second decay epoch: 2e-4 * (1 - 2/4)
    opt_g, opt_d = cli.model.optimizers()
    assert opt_g.param_groups[0]["lr"] == pytest.approx(1e-4) and opt_d.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert cli.trainer.max_epochs == 2  # the 6 epochs of the schedule less the 4 done
    assert not same_weights(cli.model.G_AB, run.G_AB)  # it trained


def test_init_from_a_run_of_another_width_is_refused_before_training(tiny_root, tmp_path, capsys):
    authors_run(tmp_path / "run", g=GeneratorConfig(ngf=16, n_blocks=2))
    with pytest.raises(SystemExit) as exit_:
        cli_main(["fit", "--config", str(CONFIGS / "cyclegan.yaml"), "--config", str(CONFIGS / "tiny.yaml"),
                  "--data.root", str(tiny_root), "--trainer.default_root_dir", str(tmp_path / "runs"),
                  "--init_from", str(tmp_path / "run")])
    assert exit_.value.code == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error")]
    assert len(err) == 1 and err[0].startswith("error: ")  # (beside the schedule note)
    assert "latest_net_G_A.pth (their G_A, our G_AB)" in err[0] and "ngf 16" in err[0] and "ngf 8" in err[0]
    assert not list((tmp_path / "runs").rglob("*.ckpt"))
