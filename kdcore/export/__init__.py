"""Taking a run out of KD Lab: ONNX files with a parity check (:mod:`kdcore.export.onnx_export`),
TensorBoard event files (:mod:`kdcore.store.tensorboard_log`, replay of older runs in :mod:`kdcore.export.tensorboard_replay`) and the Python API
(:mod:`kdcore.export.api`: ``from kdcore import run, load_run``).

Nothing is imported here: ``import kdcore`` stays light (torch, onnx and tensorboard load on first use).
"""
