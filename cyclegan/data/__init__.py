"""Image files (listing, reading, writing: :mod:`.images`) and the training data
(:mod:`.datamodule`: the unpaired dataset, its resumable sampler and the Lightning DataModule).

``images`` needs no Lightning; importing this package imports neither module.
"""
