"""Unpaired image-to-image translation: CycleGAN, the one-generator baseline, CUT and FastCUT."""

from cyclegan import _legacy
from cyclegan.inference.checkpoints import load_generator
from cyclegan.errors import CheckpointError, CycleGANError, DataError
from cyclegan.models.networks import DiscriminatorConfig, GeneratorConfig
from cyclegan.inference.translator import load_translator, translate_image, translate_tensor

# The training classes pull in Lightning, albumentations and torchmetrics (seconds of
# start-up), which converting a folder never needs: they load on first access.
_TRAINING = {"CycleGAN": ".training.cycle_gan", "Method1": ".training.method1", "CUT": ".training.cut",
             "FastCUT": ".training.cut", "UnpairedImageDataModule": ".data.datamodule"}

_legacy.install()  # class paths of the old flat layout in saved configs (cyclegan.tracking.WandbLogger)


def __getattr__(name: str):
    if name in _TRAINING:
        import importlib

        return getattr(importlib.import_module(_TRAINING[name], __name__), name)
    raise AttributeError(f"module 'cyclegan' has no attribute {name!r}")


__all__ = [
    "CUT", "CheckpointError", "CycleGAN", "CycleGANError", "FastCUT", "DataError", "DiscriminatorConfig", "GeneratorConfig",
    "Method1", "UnpairedImageDataModule", "load_generator", "load_translator", "translate_image",
    "translate_tensor",
]
