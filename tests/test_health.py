"""Training-health signals: D accuracy, generator gradient norm, diversity, and their warnings."""

import pytest
import torch
from torch import nn

from cyclegan.training.callbacks import TrainingHealth, _mean_pairwise_l1
from cyclegan.models.losses import discriminator_loss
from cyclegan.training.base import D_ACCURACY


def test_discriminator_accuracy_counts_patches_on_the_right_side():
    class Fixed(nn.Module):  # scores the real batch 0.9 everywhere, the fake batch 0.9 in one of four patches
        def forward(self, x):
            return x[:, :1]

    real = torch.full((1, 1, 2, 2), 0.9)
    fake = torch.tensor([[[[0.9, 0.1], [0.1, 0.1]]]])
    out = discriminator_loss(Fixed(), real, fake, mode="lsgan")
    assert out.accuracy.item() == pytest.approx(0.5 * (1.0 + 0.75))
    out = discriminator_loss(Fixed(), real - 1, fake - 1, mode="vanilla")  # logits: threshold 0
    assert out.accuracy.item() == pytest.approx(0.5 * (0.0 + 1.0))


def test_diversity_is_one_for_identity_and_zero_for_a_constant_map():
    x = torch.rand(6, 3, 8, 8)
    assert (_mean_pairwise_l1(x) / _mean_pairwise_l1(x)).item() == pytest.approx(1.0)
    assert _mean_pairwise_l1(torch.ones(6, 3, 8, 8)).item() == 0.0
    # pairs of images differing by exactly 0.5 everywhere: mean L1 0.5
    assert _mean_pairwise_l1(torch.stack([torch.zeros(3, 4, 4), torch.full((3, 4, 4), 0.5)])).item() == pytest.approx(0.5)


def _step(accuracy):
    """What a training_step returns, as TrainingHealth receives it in on_train_batch_end."""
    return {D_ACCURACY: {"D_B": torch.tensor(accuracy)}}


def test_warns_once_when_the_discriminator_wins_outright():
    health = TrainingHealth(window=5, max_d_accuracy=0.99)
    for _ in range(49):  # the window is read every 50 iterations
        health.on_train_batch_end(None, None, _step(1.0), None, 0)
    with pytest.warns(UserWarning, match="D_B has classified 100.0% of patches right over the last 5 iterations"):
        health.on_train_batch_end(None, None, _step(1.0), None, 0)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        health.on_train_batch_end(None, None, _step(1.0), None, 0)
    balanced = TrainingHealth(window=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(100):
            balanced.on_train_batch_end(None, None, _step(0.7), None, 0)
