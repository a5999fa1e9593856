"""Scoring translators: image metrics and Inception features, the evaluation of several
translators on the same inputs beside trivial references, its verdict and its HTML report."""
