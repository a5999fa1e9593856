"""Unpaired image-to-image translation: CycleGAN and the one-generator baseline."""

from .checkpoint import CheckpointError, load_generator
from .cycle_gan import CycleGAN
from .data import DataError, UnpairedImageDataModule
from .method1 import Method1
from .networks import DiscriminatorConfig, GeneratorConfig
from .translate import load_translator, translate_image, translate_tensor

__all__ = [
    "CheckpointError", "CycleGAN", "DataError", "DiscriminatorConfig", "GeneratorConfig", "Method1",
    "UnpairedImageDataModule", "load_generator", "load_translator", "translate_image", "translate_tensor",
]
