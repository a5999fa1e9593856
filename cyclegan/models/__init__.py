"""Plain PyTorch: the networks, the losses, the image pool and the discriminator's augmentation.

Nothing here imports Lightning, W&B or anything else of this package but :mod:`cyclegan.errors`:
these modules can be read, tested and reused on their own (tests/test_architecture.py holds it).
"""
