"""Using a trained generator: reading checkpoints and the authors' files, the translator (tiling,
precision), converting folders with a resumable manifest, exporting, and the authors' published
models. No Lightning: converting a folder never imports it.
"""
