"""DiffAugment: what each operation does to an image, that gradients pass through it, and that
the models show the discriminators augmented images only while training and only when asked."""

import pytest
import torch

from cyclegan import CycleGAN, Method1
from cyclegan.models.augment import DiffAugment, color, cutout, translation
from cyclegan.models.networks import DiscriminatorConfig, GeneratorConfig


def _ramp(n: int = 4, size: int = 16) -> torch.Tensor:
    """Images whose every pixel differs from the others (a ramp over rows and columns), in [-1, 1]."""
    ramp = torch.linspace(-1, 1, size * size).view(1, 1, size, size)
    return ramp.expand(n, 3, size, size).clone()


def test_translation_shifts_whole_images_by_at_most_an_eighth_and_fills_with_white():
    torch.manual_seed(0)
    x = _ramp(8, 16)
    y = translation(x)
    assert y.shape == x.shape
    for src, out in zip(x, y):
        # Find the shift: some (dy, dx) within +-2 px (16 / 8) makes out equal src where both are defined.
        found = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                shifted = torch.full_like(src, 1.0)
                ys, xs = slice(max(0, -dy), 16 - max(0, dy)), slice(max(0, -dx), 16 - max(0, dx))
                shifted[:, ys, xs] = src[:, max(0, dy):16 + min(0, dy), max(0, dx):16 + min(0, dx)]
                if torch.equal(shifted, out):
                    found.append((dy, dx))
        assert len(found) == 1, found
    assert not torch.equal(y, x)  # eight draws from 25 shifts: not all zero (seeded)


def test_cutout_zeroes_one_square_of_half_the_side():
    torch.manual_seed(0)
    x = torch.ones(16, 3, 16, 16)
    y = cutout(x)
    zeroed = (y == 0).all(dim=1)  # (N, H, W)
    for mask in zeroed:
        rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
        # A square of 8x8 clipped at the border: contiguous rows and columns, at most 8 of each.
        assert 0 < len(rows) <= 8 and 0 < len(cols) <= 8
        assert int(mask.sum()) == len(rows) * len(cols)
        assert rows.tolist() == list(range(rows[0], rows[-1] + 1))
    assert torch.all(y[~zeroed.unsqueeze(1).expand_as(y)] == 1)  # the rest untouched


def test_color_changes_each_image_by_its_own_draw_and_keeps_grey_images_grey():
    torch.manual_seed(0)
    grey = torch.zeros(6, 3, 8, 8)  # mid grey: saturation and contrast leave it, brightness shifts it
    y = color(grey)
    shift = y[:, 0, 0, 0]
    assert torch.all(y == shift.view(6, 1, 1, 1)) and shift.abs().max() <= 0.5 and len(set(shift.tolist())) == 6
    coloured = _ramp(2, 8)
    coloured[:, 0] = coloured[:, 0].flip(-1)  # red runs the other way: pixels are not grey
    assert not torch.allclose(color(coloured), coloured)


def test_gradients_reach_the_input_through_every_operation():
    x = _ramp(2, 16).requires_grad_(True)
    DiffAugment(("color", "translation", "cutout")).train()(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_identity_when_off_or_in_eval_mode_and_bad_names_refused():
    x = _ramp(2, 16)
    assert DiffAugment(()).train()(x) is x
    assert DiffAugment(("cutout", "color")).eval()(x) is x
    assert DiffAugment(("cutout", "color")).ops == ("color", "cutout")  # applied in the paper's order
    with pytest.raises(ValueError, match="colour"):
        DiffAugment(("colour",))


@pytest.mark.parametrize("model_class", [CycleGAN, Method1])
def test_discriminators_see_augmented_images_in_training_only(model_class, monkeypatch):
    tiny = dict(generator=GeneratorConfig(ngf=4, n_blocks=1), discriminator=DiscriminatorConfig(ndf=4, n_layers=1))
    plain, model = model_class(**tiny), model_class(**tiny, diff_augment=("translation", "cutout"))
    assert plain.state_dict().keys() == model.state_dict().keys()  # checkpoints alike: no parameters
    judged = []  # what D_B is shown of G(a) in the generator's adversarial term
    monkeypatch.setattr(model.D_B, "forward", lambda x: judged.append(x.detach().clone()) or x.mean(1, keepdim=True))
    torch.manual_seed(0)
    real_a, real_b = _ramp(2, 16), _ramp(2, 16).flip(-1)
    expected_fake_b = model.G_AB(real_a).detach()

    model.train()
    model.generator_losses(real_a, real_b)
    assert judged[0].shape == expected_fake_b.shape and not torch.equal(judged[0], expected_fake_b)
    judged.clear()
    model.eval()  # validation: the fakes as they are
    model.generator_losses(real_a, real_b)
    assert torch.equal(judged[0], expected_fake_b)
