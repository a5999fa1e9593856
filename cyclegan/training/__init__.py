"""Training: the LightningModules (:mod:`.cycle_gan`, :mod:`.method1`) on their shared base
(:mod:`.base`), the checkpoint state they write (:mod:`.state`), the callbacks and the W&B logger.

Built on :mod:`cyclegan.models` and :mod:`cyclegan.data`; importing this package imports nothing
(Lightning loads with the module that needs it).
"""
