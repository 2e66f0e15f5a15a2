from kdcore.models.network import MultimodalNet, build_model, count_parameters
from kdcore.models.output import ModelOutput
from kdcore.models import video_encoders  # noqa: F401  (registers the video encoders)

__all__ = ["ModelOutput", "MultimodalNet", "build_model", "count_parameters"]
