"""bench/maps.py builds the two `cyclegan fit` command lines it compares: the same for both models but
for the model config and the settings that belong to one model only."""

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def maps():
    spec = importlib.util.spec_from_file_location("bench_maps", REPO / "bench" / "maps.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_maps"] = module
    spec.loader.exec_module(module)
    return module


def _value(argv: list[str], flag: str):
    return argv[argv.index(flag) + 1] if flag in argv else None


def test_lambda_a_goes_to_cyclegan_only_and_method1_identity_to_method1_only(maps, tmp_path):
    args = maps.parse_args(["--data", "maps", "--minutes", "55", "--lambda-a", "2", "--method1-identity", "0.5"])
    cyc = maps.fit_arguments("cyclegan", args, tmp_path, iterations=1000)
    m1 = maps.fit_arguments("method1", args, tmp_path, iterations=1000)
    assert _value(cyc, "--model.init_args.lambda_a") == "2.0" and "--model.init_args.lambda_a" not in m1
    assert _value(m1, "--model.init_args.lambda_identity") == "0.5" and "--model.init_args.lambda_identity" not in cyc
    assert _value(cyc, "--config").endswith("cyclegan.yaml") and _value(m1, "--config").endswith("method1.yaml")
    shared = [a for a in cyc if "lambda" not in a and a not in ("2.0", "0.5") and "yaml" not in a and "cyclegan" not in a]
    assert shared == [a for a in m1 if "lambda" not in a and a not in ("2.0", "0.5") and "yaml" not in a
                      and "method1" not in a]
    default = maps.parse_args(["--data", "maps", "--minutes", "55"])
    assert "--model.init_args.lambda_a" not in maps.fit_arguments("cyclegan", default, tmp_path, iterations=1000)


def test_a_recipe_overlay_sets_the_bench_settings_and_comes_after_the_model_config(maps, tmp_path):
    args = maps.parse_args(["--data", "maps", "--minutes", "5", "--recipe", str(REPO / "configs" / "fast.yaml")])
    assert (args.batch_size, args.ngf, args.load_size, args.crop_size, args.precision) == (4, 16, 64, 64, "bf16-mixed")
    argv = maps.fit_arguments("cyclegan", args, tmp_path, iterations=100)
    configs = [argv[i + 1] for i, a in enumerate(argv) if a == "--config"]
    assert [Path(c).name for c in configs] == ["cyclegan.yaml", "fast.yaml"]
    assert _value(argv, "--data.batch_size") == "4"


def _saved_checkpoint(maps, model, args, out, *, seconds):
    """A checkpoint as `train` keeps it, with the settings `args` asks for and `seconds` on its Timer."""
    import torch

    from cyclegan.cli import build_cli
    cli = build_cli(maps.train_arguments(model, args, out)[1:] + ["--trainer.logger", "false"], run=False)
    kept = out / f"{model}.ckpt"
    torch.save({"global_step": 1234, "hyper_parameters": dict(cli.model.hparams),
                "datamodule_hyper_parameters": dict(cli.datamodule.hparams),
                "callbacks": {"Timer": {"time_elapsed": {"train": seconds}}}}, kept)
    return kept


def test_reuse_keeps_a_checkpoint_with_the_same_settings_and_refuses_one_with_others(maps, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))  # the --minutes clock callback is imported as maps._ClockSchedule
    args = maps.parse_args(["--minutes", "2", "--lambda-a", "2", "--reuse", "--data", str(tmp_path)])
    kept = _saved_checkpoint(maps, "cyclegan", args, tmp_path, seconds=120.0)
    assert maps.reused("cyclegan", args, tmp_path) == (kept, 120.0, 1234)

    other = maps.parse_args(["--minutes", "2", "--reuse", "--data", str(tmp_path)])  # lambda_a 10, not 2
    with pytest.raises(SystemExit, match=r"cyclegan\.ckpt was trained with other settings \(model\.lambda_a: 2\.0 there, 10\.0 here"):
        maps.reused("cyclegan", other, tmp_path)

    _saved_checkpoint(maps, "cyclegan", args, tmp_path, seconds=50.0)  # stopped before its 2 minutes
    with pytest.raises(SystemExit, match=r"trained 0\.8 min, not the 2 asked"):
        maps.reused("cyclegan", args, tmp_path)

    kept.write_text("not a checkpoint")
    with pytest.raises(SystemExit, match=r"cyclegan\.ckpt is not a checkpoint this bench wrote \(UnpicklingError"):
        maps.reused("cyclegan", args, tmp_path)


def test_the_data_folder_is_required_with_one_line_saying_what_it_holds(tmp_path):
    import subprocess
    import sys

    for argv, said in (([], "error: --data DIR is required: the maps folder with trainA, trainB"),
                       (["--data", str(tmp_path)], f"error: maps data not found: {tmp_path} lacks trainA, trainB, devA, devB")):
        result = subprocess.run([sys.executable, str(REPO / "bench" / "maps.py"), *argv], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith(said)
