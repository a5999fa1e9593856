"""Old home of the shared training plumbing, now :mod:`cyclegan.training`; these names keep importing."""

from .training import (  # noqa: F401
    NonFiniteGuard, NonFiniteLossError, adam_with_linear_decay, count_iterations_not_optimizer_steps, grad_norm,
    linear_decay, offset_seeds_per_rank, set_epoch,
)
