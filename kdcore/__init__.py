"""KD Lab engine: multimodal knowledge distillation, UI-free.

Never import streamlit from this package: the app (``app.py``, ``pages/``) and the CLI
(``python -m kdcore``) drive the same :class:`kdcore.engine.experiment.Experiment`.
"""

__version__ = "0.1.0"
