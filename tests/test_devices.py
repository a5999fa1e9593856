"""Speed defaults: bf16 detected from the hardware, batch size per device and size,
the CLI defaults that follow from them, and bf16 inference staying close to float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan import devices
from cyclegan.cli.commands import _translate_parser
from cyclegan.errors import TranslateError
from cyclegan.models.networks import GeneratorConfig, build_generator, init_weights
from cyclegan.inference.translator import Translator, translate_image

EMOJI = Path(__file__).resolve().parents[1] / "datasets" / "emoji" / "testA"


def _cpuinfo_says_bf16() -> bool | None:
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


def test_cpu_bf16_is_detected_from_the_instruction_set_flags():
    expected = _cpuinfo_says_bf16()
    if expected is None:
        pytest.skip("no /proc/cpuinfo to compare with")
    assert devices.native_bf16("cpu") is expected
    assert devices.inference_precision("auto", "cpu") == ("bf16" if expected else "32")
    assert devices.training_precision("cpu") == ("bf16-mixed" if expected else "32-true")


def test_cpu_without_bf16_flags_defaults_to_float32(monkeypatch):
    monkeypatch.setattr(devices, "cpu_bf16", lambda: False)
    assert devices.inference_precision("auto", "cpu") == "32"
    assert devices.training_precision("cpu") == "32-true"
    monkeypatch.setattr(devices, "cpu_bf16", lambda: True)
    assert devices.inference_precision("auto", "cpu") == "bf16"
    assert devices.inference_precision("32", "cpu") == "32"  # an explicit choice is kept
    assert devices.training_precision("mps") == "32-true"  # not a device we measured


def test_batch_size_defaults_per_device_and_image_size():
    assert devices.default_batch_size("cpu", 64) == 8  # small images: batches pay on a CPU too
    assert devices.default_batch_size("cpu", 256) == devices.default_batch_size("cpu", (768, 1024)) == 1
    assert devices.default_batch_size("cuda", 256) == devices.MAX_BATCH
    assert devices.default_batch_size("cuda", (768, 1024)) == 1  # about a megapixel per batch
    assert devices.default_batch_size("cuda", 512) == 4


def test_a_chosen_batch_size_is_capped_at_about_a_megapixel_on_any_device():
    assert devices.capped_batch_size(16, 256) == 16 and devices.capped_batch_size(16, 512) == 4
    assert devices.capped_batch_size(3, (2048, 2048)) == 1  # never below one image


def test_device_names_resolve_in_one_place_with_one_line_errors(monkeypatch):
    assert devices.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(TranslateError, match=r"unknown device 'gpu0' \(try cpu, cuda, cuda:1\)"):
        devices.resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.resolve_device(None) == torch.device("cpu")
    with pytest.raises(TranslateError, match="--device cuda:1: CUDA is not available here"):
        devices.resolve_device("cuda:1")
    # The speed defaults answer for a GPU without one here.
    assert devices.resolve_device("cuda", must_exist=False) == torch.device("cuda")
    assert devices.default_batch_size("cuda", 512) == 4 and devices.native_bf16("cuda") is False


def test_translate_defaults_are_auto_and_an_explicit_value_wins():
    args = _translate_parser().parse_args(["--checkpoint", "c", "--input", "i", "--output", "o"])
    assert (args.precision, args.batch_size) == ("auto", None)
    args = _translate_parser().parse_args(["--checkpoint", "c", "--input", "i", "--output", "o",
                                           "--precision", "32", "--batch-size", "3"])
    assert (args.precision, args.batch_size) == ("32", 3)


def test_bf16_inference_is_within_one_grey_level_of_float32_on_the_emoji_test_images():
    # README: a random-init tiny ResNet gives 0.42 mean 8-bit levels over all 20 images (ResNet-9
    # ngf 64: 1.1); bf16 autocast runs anywhere (emulated where the CPU lacks it).
    files = sorted(EMOJI.glob("*.png"))[:4]
    torch.manual_seed(0)
    net = init_weights(build_generator(GeneratorConfig(ngf=8, n_blocks=2), input_nc=3, output_nc=3)).eval()
    fp32, bf16 = Translator.from_module(net, precision="32"), Translator.from_module(net, precision="bf16")
    differences = []
    for f in files:
        image = Image.open(f).convert("RGB")
        a = np.asarray(translate_image(fp32, image), dtype=np.float64)
        b = np.asarray(translate_image(bf16, image), dtype=np.float64)
        assert a.std() > 10  # a real picture, not a constant
        differences.append(np.abs(a - b).mean())
    assert 0 < max(differences) < 1.0, differences  # bf16 ran (not identical), and stayed close


def test_worker_defaults_count_the_cpus_this_process_may_use(monkeypatch):
    # Under `taskset -c 0` or a one-CPU container the machine may have 16 CPUs and the process 1:
    # more decoding workers than that only thrash (torch warns "DataLoader running slow or even freeze").
    import os

    from cyclegan.inference.convert import ConvertSettings
    from cyclegan.devices import usable_cpus

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert usable_cpus() == 1
    assert ConvertSettings().n_workers == 1 and ConvertSettings(workers=3).n_workers == 3
