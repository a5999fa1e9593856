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
    torch.testing.assert_close(out, recorded[f"{kind}_{direction}"], rtol=0, atol=0)
