"""Two unlabeled image folders as training data for unpaired translation.

Each training item pairs the next image of domain A (in the order of the sampler's
shuffled index) with a uniformly random image of domain B, so A and B are never
aligned; an epoch is max(|A|, |B|) items, as in the published code.

All randomness of a training item (which B, crop, flip) follows from (seed, epoch, its
place in the epoch), handed to the dataset by :class:`EpochSampler`: the batches do not
depend on how many workers load them, and a run resumed mid-epoch gets the very batches
the uninterrupted run would have (the position is saved by the DataModule's ``state_dict``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import albumentations as A
import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn, TrainerStatus
from torch.utils.data import DataLoader, Dataset, DistributedSampler, get_worker_info

from cyclegan.devices import usable_cpus
from cyclegan.errors import DataError, warn
from cyclegan.data.images import albumentations_resize, describe_error, image_problem, list_images, read_image

Preprocess = Literal["resize_and_crop", "crop", "scale_width_and_crop", "none"]


def usable_images(folder: str | os.PathLike) -> list[Path]:
    """:func:`list_images`, less the files whose header does not read, reported in one line."""
    files = list_images(folder)
    with ThreadPoolExecutor(max_workers=8) as pool:  # header reads are I/O bound
        problems = list(pool.map(image_problem, files))
    good = [f for f, problem in zip(files, problems) if problem is None]
    bad = [(f, problem) for f, problem in zip(files, problems) if problem is not None]
    if not good:
        raise DataError(f"no usable images in {folder}: all {len(files)} unreadable (e.g. {bad[0][0].name}: {bad[0][1]})")
    if bad:
        examples = "; ".join(f"{f} ({problem})" for f, problem in bad[:3])
        more = f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
        warn(f"warning: skipped {len(bad)} of {len(files)} files in {folder}: {examples}{more}")
    return good


class _UpscaleSmall(A.ImageOnlyTransform):
    """Scale an image whose short side is below ``size`` up to it (aspect kept); leave others alone."""

    def __init__(self, size: int, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.size = size

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        h, w = img.shape[:2]
        if min(h, w) >= self.size:
            return img
        scale = self.size / min(h, w)
        size = (max(self.size, round(w * scale)), max(self.size, round(h * scale)))
        return cv2.resize(img, size, interpolation=cv2.INTER_CUBIC).reshape(size[1], size[0], *img.shape[2:])


# The one resize rule (area average shrinking, bicubic enlarging), and why: cyclegan/data/images.py.
_RESIZE = albumentations_resize()


def build_transform(
    *, preprocess: Preprocess, load_size: int, crop_size: int, flip: bool, train: bool
) -> A.Compose:
    """Albumentations pipeline from uint8 (H, W, C) to a float tensor (C, H, W) in [-1, 1].

    Training follows the published options. Evaluation is deterministic: the short side is
    scaled to ``crop_size`` and the centre cropped (``none`` only pads to a multiple of 4).
    """
    if preprocess == "none":
        steps = [A.PadIfNeeded(min_height=None, min_width=None, pad_height_divisor=4, pad_width_divisor=4,
                               border_mode=cv2.BORDER_REFLECT_101)]
    elif not train:
        steps = [A.SmallestMaxSize(max_size=crop_size, **_RESIZE), A.CenterCrop(crop_size, crop_size)]
    else:
        # Images smaller than the crop are scaled up first, not a crash.
        crop = [_UpscaleSmall(crop_size), A.RandomCrop(crop_size, crop_size)]
        steps = {
            "resize_and_crop": [A.Resize(load_size, load_size, **_RESIZE), *crop],
            "crop": crop,
            "scale_width_and_crop": [A.SmallestMaxSize(max_size_hw=(None, load_size), **_RESIZE), *crop],
        }[preprocess]
    if train and flip:
        steps.append(A.HorizontalFlip(p=0.5))
    steps += [A.Normalize(mean=0.5, std=0.5, max_pixel_value=255.0), A.ToTensorV2()]
    return A.Compose(steps)


class UnpairedDataset(Dataset):
    """Item i: A image ``i mod |A|`` and B image drawn at random (or ``i mod |B|`` if ``paired_index``).

    The key is an index, or ``(index, seed)`` (what :class:`EpochSampler` yields): then the
    B draw and the augmentations follow from ``seed`` alone, not from any worker's RNG.
    Returns ``{"A": (C_a, H, W), "B": (C_b, H, W), "A_path": str, "B_path": str}``.
    """

    def __init__(
        self, files_a: list[Path], files_b: list[Path], transform: A.Compose, *,
        channels_a: int = 3, channels_b: int = 3, paired_index: bool = False,
    ) -> None:
        self.files_a, self.files_b = files_a, files_b
        self.transform = transform
        self.channels_a, self.channels_b = channels_a, channels_b
        self.paired_index = paired_index
        self._reported: set[Path] = set()  # files already reported as undecodable

    def __len__(self) -> int:
        return max(len(self.files_a), len(self.files_b))

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        if isinstance(key, tuple):
            index, seed = key
            rng = np.random.default_rng(seed)
            j = index if self.paired_index else int(rng.integers(len(self.files_b)))
            self.transform.set_random_seed(int(rng.integers(2**32)))  # albumentations' own RNG, per item
        else:
            index = key
            # torch's RNG, not Python's: DataLoader seeds it per worker and seed_everything seeds it here.
            j = index if self.paired_index else int(torch.randint(len(self.files_b), ()))
        path_a, a = self._load(self.files_a, index, self.channels_a)
        path_b, b = self._load(self.files_b, j, self.channels_b)
        return {"A": a, "B": b, "A_path": str(path_a), "B_path": str(path_b)}

    def _load(self, files: list[Path], index: int, channels: int) -> tuple[Path, torch.Tensor]:
        """Image ``index`` (mod len), or the next one that decodes: one bad file never ends an epoch."""
        for offset in range(len(files)):
            path = files[(index + offset) % len(files)]
            try:
                return path, self.transform(image=read_image(path, channels=channels))["image"]
            except Exception as e:  # any decoder failure (truncated data, bad chunks, ...): skip the file
                if path not in self._reported:
                    self._reported.add(path)
                    warn(f"warning: cannot decode {path} ({describe_error(e)}); using another image instead")
        raise DataError(f"none of the {len(files)} images in {files[0].parent} could be decoded")


def _seed_worker(worker_id: int) -> None:
    # torch.initial_seed() differs per worker (and per epoch without persistent workers) and
    # follows the base seed, so augmentations are both varied across workers and reproducible.
    get_worker_info().dataset.transform.set_random_seed(torch.initial_seed() % 2**32)


def _seed(*words: int) -> int:
    """A 63-bit seed mixed from the given integers (numpy's SeedSequence: no two tuples collide in practice)."""
    return int(np.random.SeedSequence(list(words)).generate_state(2, np.uint32).astype(np.uint64) @ [1 << 31, 1])


class EpochSampler(DistributedSampler):
    """Shuffled A indices for one rank, each with the seed of its item's randomness.

    Epoch ``e`` is a permutation of the dataset drawn from ``(seed, e)``, padded (as
    DistributedSampler does) to a multiple of ``num_replicas``; rank r takes positions
    r, r + num_replicas, ... and yields ``(index, seed of (seed, e, position))``.
    :meth:`resume_at` skips the first ``position`` places of an epoch (all ranks
    together), so a resumed run continues at the next unseen item.

    A DistributedSampler so that Lightning uses it as it is under DDP instead of wrapping it.
    With ``epoch_of`` (the trainer's ``current_epoch``), each iteration reads its epoch from
    there rather than from ``set_epoch``: Lightning passes its count of processed epochs,
    which runs one ahead after a resume from a checkpoint written at an epoch's end.
    """

    def __init__(self, size: int, *, seed: int, num_replicas: int = 1, rank: int = 0, epoch: int = 0,
                 epoch_of: Callable[[], int] | None = None) -> None:
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.size, self.epoch, self.epoch_of = size, epoch, epoch_of
        self._resume: tuple[int, int] | None = None  # (epoch, global position to start at)

    def resume_at(self, epoch: int, position: int) -> None:
        self.epoch, self._resume = epoch, (epoch, position)

    def start_position(self) -> int:
        """Where the next iteration starts in its epoch (0, or the resume position in the resumed epoch)."""
        epoch = self.epoch_of() if self.epoch_of is not None else self.epoch
        return self._resume[1] if self._resume and self._resume[0] == epoch else 0

    def __iter__(self):
        if self.epoch_of is not None:
            self.epoch = self.epoch_of()
        g = torch.Generator().manual_seed(_seed(self.seed, self.epoch))
        order = torch.randperm(self.size, generator=g).tolist()
        total = self.num_samples * self.num_replicas
        order = (order * (total // self.size + 1))[:total]  # pad by repeating, as DistributedSampler does
        start = self._resume[1] if self._resume and self._resume[0] == self.epoch else 0
        # The first place of this rank at or after ``start``: all ranks skip the same positions.
        first = start + (self.rank - start) % self.num_replicas
        for position in range(first, total, self.num_replicas):
            yield order[position], _seed(self.seed, self.epoch, position)


class ResumableDataLoader(DataLoader):
    """A DataLoader with ``state_dict``/``load_state_dict``, which Lightning saves in the
    checkpoint's loop state and loads before it iterates the resumed epoch.

    The state is the epoch its :class:`EpochSampler` is in and the position training has
    reached in it (all ranks together); loading it makes the sampler skip what was trained
    on. The loader cannot count the batches trained on as it yields them (Lightning fetches
    a batch ahead): the DataModule counts each batch as it reaches training
    (``on_after_batch_transfer``) in :attr:`batches_started`, which each epoch's iteration
    starts at the resume position. A checkpoint written after an exception (the non-finite
    guard's stop) leaves out the batch in flight, as Lightning's own loop state does: the
    resumed run trains it again.
    """

    batches_started = 0  # batches of this epoch handed to training_step, the current one included
    # () -> (batches an epoch has, 1 while an exception interrupts a batch else 0); None outside fit
    progress: Callable[[], tuple[int, int] | None] | None = None

    def __iter__(self):
        self.batches_started = self.sampler.start_position() // self._per_batch()
        return super().__iter__()

    def _per_batch(self) -> int:
        return self.batch_size * self.sampler.num_replicas  # places of the epoch one batch of all ranks takes

    def state_dict(self) -> dict[str, int]:
        progress = self.progress() if self.progress is not None else None
        if progress is None:
            return {}
        per_epoch, in_flight = progress
        batches = self.batches_started - in_flight
        if batches >= per_epoch:  # the epoch is done: the next starts afresh
            return {"epoch": self.sampler.epoch + 1, "position": 0}
        return {"epoch": self.sampler.epoch, "position": batches * self._per_batch()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if "epoch" in state:
            self.sampler.resume_at(state["epoch"], state["position"])


def loader_workers(requested: int | None, *, cuda: bool, processes: int = 1) -> int:
    """Loader processes per training process, never more than the CPUs it may use.

    By default: on a GPU, this process's share of the CPUs (``processes`` train on this machine),
    up to 8, so that decoding and augmenting keep up with a fast step (bench/gpu.py measures the
    GPU's busy share); on a CPU, where the workers take cores from the step itself, up to 4.
    """
    share = max(1, usable_cpus() // max(1, processes)) if cuda else usable_cpus()
    return min(share, requested if requested is not None else (8 if cuda else 4))


class UnpairedImageDataModule(pl.LightningDataModule):
    """Domains A and B from folders.

    Args:
        root: dataset folder holding ``trainA``/``trainB`` (and optionally ``testA``/``testB``,
            used for validation). Explicit folders below override it.
        train_a, train_b, val_a, val_b: explicit folders, searched recursively.
        preprocess: ``resize_and_crop`` (scale to ``load_size`` square, random ``crop_size`` crop),
            ``crop`` (random crop only), ``scale_width_and_crop`` (width to ``load_size``, keep
            aspect, random crop) or ``none`` (pad to a multiple of 4; needs ``batch_size=1``
            when sizes differ).
        flip: random horizontal flips during training.
        input_nc, output_nc: channels of A and B (3 = RGB, 1 = grayscale).
        num_workers: loader processes (``None``: :func:`loader_workers` decides from the CPUs
            this process may use and where it trains).
        val_images: cap on validation images per domain (``None``: all). Without
            validation folders, the first ``val_images`` (default 8) training images are used.
    """

    def __init__(
        self,
        root: str | None = None,
        *,
        train_a: str | None = None,
        train_b: str | None = None,
        val_a: str | None = None,
        val_b: str | None = None,
        preprocess: Preprocess = "resize_and_crop",
        load_size: int = 286,
        crop_size: int = 256,
        flip: bool = True,
        input_nc: Literal[1, 3] = 3,
        output_nc: Literal[1, 3] = 3,
        batch_size: int = 1,
        num_workers: int | None = None,
        val_images: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.root = Path(root) if root else None
        self.preprocess, self.load_size, self.crop_size, self.flip = preprocess, load_size, crop_size, flip
        self.input_nc, self.output_nc = input_nc, output_nc
        self.batch_size, self.num_workers, self.val_images = batch_size, num_workers, val_images
        self.folders = {
            "train_a": self._folder(train_a, "trainA"), "train_b": self._folder(train_b, "trainB"),
            "val_a": self._folder(val_a, "testA"), "val_b": self._folder(val_b, "testB"),
        }
        if self.folders["train_a"] is None or self.folders["train_b"] is None:
            raise DataError("give --data.root DIR (holding trainA/ and trainB/) or both --data.train_a and --data.train_b")
        self.train_set: UnpairedDataset | None = None
        self.val_set: UnpairedDataset | None = None
        self.seed: int | None = None  # of the training data's randomness; drawn in setup, restored on resume
        self._train_loader: ResumableDataLoader | None = None

    def _folder(self, explicit: str | None, name: str) -> Path | None:
        if explicit:
            return Path(explicit)
        return self.root / name if self.root else None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_a, train_b = usable_images(self.folders["train_a"]), usable_images(self.folders["train_b"])
        val_a_dir, val_b_dir = self.folders["val_a"], self.folders["val_b"]
        if val_a_dir is not None and val_b_dir is not None and val_a_dir.is_dir() and val_b_dir.is_dir():
            val_a, val_b = usable_images(val_a_dir), usable_images(val_b_dir)
        else:  # no held-out folders: watch a fixed handful of training images instead
            val_a, val_b = train_a[: self.val_images or 8], train_b[: self.val_images or 8]
        if self.val_images is not None:
            val_a, val_b = val_a[: self.val_images], val_b[: self.val_images]
        transform = dict(preprocess=self.preprocess, load_size=self.load_size, crop_size=self.crop_size, flip=self.flip)
        channels = dict(channels_a=self.input_nc, channels_b=self.output_nc)
        train_transform = build_transform(**transform, train=True)
        # The training data's randomness derives from one seed drawn from torch's RNG,
        # which seed_everything controls (EpochSampler hands each item its own seed).
        if self.seed is None:
            self.seed = int(torch.randint(2**62, ()))
        self.train_set = UnpairedDataset(train_a, train_b, train_transform, **channels)
        self.val_set = UnpairedDataset(
            val_a, val_b, build_transform(**transform, train=False), **channels, paired_index=True
        )

    def _loader(self, dataset: Dataset, *, sampler: EpochSampler | None, batch_size: int) -> DataLoader:
        trainer = self.trainer
        cuda = trainer is not None and trainer.strategy.root_device.type == "cuda"
        workers = loader_workers(self.num_workers, cuda=cuda, processes=trainer.num_devices if trainer else 1)
        return (ResumableDataLoader if sampler is not None else DataLoader)(
            dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
            persistent_workers=workers > 0, pin_memory=cuda, drop_last=sampler is not None,
            worker_init_fn=_seed_worker,
            # Its own generator for the workers' base seed: iterating a loader leaves the global
            # RNG (dropout, gradient-penalty mixing) as it was, so validation cannot shift training.
            generator=torch.Generator().manual_seed(self.seed or 0),
        )

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        sampler = EpochSampler(len(self.train_set), seed=self.seed, num_replicas=world, rank=rank,
                               epoch_of=(lambda: trainer.current_epoch) if trainer else None)
        loader = self._loader(self.train_set, sampler=sampler, batch_size=self.batch_size)
        loader.progress = self._progress
        self._train_loader = loader
        return loader

    def _progress(self) -> tuple[int, int] | None:
        trainer = self.trainer
        if trainer is None or trainer.state.fn != TrainerFn.FITTING:
            return None
        return trainer.num_training_batches, int(trainer.state.status == TrainerStatus.INTERRUPTED)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count each training batch as it reaches ``training_step`` (Lightning calls this for the
        batch about to be trained on, not for the one it fetches ahead)."""
        if self.trainer is not None and self.trainer.training and self._train_loader is not None:
            self._train_loader.batches_started += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        """The data seed, saved in every checkpoint (the position is the train loader's state)."""
        return {"seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed = state.get("seed", self.seed)

    def val_dataloader(self) -> DataLoader:
        batch_size = self.batch_size if self.preprocess != "none" else 1
        return self._loader(self.val_set, sampler=None, batch_size=batch_size)

    def sample_batch(self, n: int) -> dict[str, torch.Tensor]:
        """The first ``n`` validation images of each domain, stacked: a fixed set for sample grids."""
        items = [self.val_set[i] for i in range(min(n, len(self.val_set)))]
        return {k: stack_cropped([it[k] for it in items]) for k in ("A", "B")}


def stack_cropped(images: list[torch.Tensor]) -> torch.Tensor:
    """Stack (C, H, W) tensors, centre-cropped to their common size when they differ
    (``preprocess: none`` keeps each image's own size, padded to a multiple of 4)."""
    h, w = min(x.shape[-2] for x in images), min(x.shape[-1] for x in images)
    return torch.stack([x[..., (x.shape[-2] - h) // 2:][..., :h, (x.shape[-1] - w) // 2:][..., :w] for x in images])
