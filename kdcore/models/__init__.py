from kdcore.models.network import MultimodalNet, build_model, count_parameters
from kdcore.models.output import ModelOutput

__all__ = ["ModelOutput", "MultimodalNet", "build_model", "count_parameters"]
