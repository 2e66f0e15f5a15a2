"""KD Lab engine: multimodal knowledge distillation, UI-free.

Never import streamlit from this package: the app (``app.py``, ``pages/``) and the CLI
(``python -m kdcore``) drive the same :class:`kdcore.pipeline.experiment.Experiment`.

Python API (loaded on first use, so ``import kdcore`` stays light)::

    from kdcore import run, load_run
    result = run("digits-av", train__student_epochs=2)
    model = load_run(result).student("kd")
"""

__version__ = "0.1.0"

_API = {"run", "load_run", "build_spec", "Run", "RunError"}
__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str):
    if name in _API:
        from kdcore.export import api

        return getattr(api, name)
    raise AttributeError(f"module 'kdcore' has no attribute {name!r}")
