import pytest
import torch

from cyclegan.models.image_pool import ImagePool


def _images(start, n):
    # image k is filled with the value k, so returned images identify themselves
    return torch.arange(start, start + n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 2, 2).clone()


def _ids(batch):
    return [int(v) for v in batch[:, 0, 0, 0]]


def test_fills_to_its_size_returning_the_inputs():
    pool = ImagePool(4, seed=0)
    assert _ids(pool.query(_images(0, 3))) == [0, 1, 2]
    assert _ids(pool.query(_images(3, 1))) == [3]
    assert len(pool) == 4


def test_full_pool_returns_history_half_the_time_and_swaps_it_in():
    pool = ImagePool(10, seed=123)
    pool.query(_images(0, 10))
    history_hits, n = 0, 2000
    for k in range(10, 10 + n):
        before = set(_ids(torch.stack(pool.images)))
        (out,) = _ids(pool.query(_images(k, 1)))
        if out != k:  # came from history: it was stored, and k took its place
            history_hits += 1
            assert out in before
            assert k in _ids(torch.stack(pool.images)) and out not in _ids(torch.stack(pool.images))
        else:
            assert set(_ids(torch.stack(pool.images))) == before
        assert len(pool) == 10
    # p = 1/2, n = 2000: mean 1000, std ~22
    assert 900 < history_hits < 1100


def test_size_zero_passes_through_and_state_round_trips():
    assert _ids(ImagePool(0).query(_images(5, 2))) == [5, 6]

    a = ImagePool(3, seed=7)
    a.query(_images(0, 5))
    b = ImagePool(3, seed=99)
    b.load_state_dict(a.state_dict())
    for k in range(20, 40):  # same images and same random stream: same answers
        assert _ids(a.query(_images(k, 1))) == _ids(b.query(_images(k, 1)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])  # bf16: fakes under bf16-mixed
def test_history_from_a_smaller_size_is_resampled_to_the_new_one(dtype):
    # A run resumed at 4x4 after training at 2x2 (progressive resizing): stored fakes keep their
    # content (flat images stay flat at their value) at the new size, and the pool keeps working.
    pool = ImagePool(3, seed=0)
    pool.query(_images(0, 3).to(dtype))  # full, at 2x2
    out = pool.query(_images(10, 8).repeat_interleave(2, 2).repeat_interleave(2, 3).to(dtype))  # 4x4
    assert out.shape == (8, 3, 4, 4) and out.dtype == dtype
    assert all(im.shape == (3, 4, 4) and im.dtype == dtype for im in pool.images)
    for image in out:
        assert torch.all(image == image[0, 0, 0]) and int(image[0, 0, 0]) in {0, 1, 2, *range(10, 18)}
    assert any(int(image[0, 0, 0]) < 3 for image in out)  # some came from the resampled history
