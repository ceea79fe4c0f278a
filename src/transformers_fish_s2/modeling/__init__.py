"""Model code: configuration, the Dual-AR model, shared layers."""

from ..checkpoint import FishS2CheckpointError
from .configuration_fish_s2 import FishS2Config, FishS2FastTransformerConfig, FishS2TextConfig
from .modeling_fish_s2 import (
    FishS2FastTransformer,
    FishS2ForConditionalGeneration,
    FishS2Output,
    FishS2PreTrainedModel,
    FishS2TextModel,
)

__all__ = [
    "FishS2FastTransformer",
    "FishS2FastTransformerConfig",
    "FishS2CheckpointError",
    "FishS2Config",
    "FishS2ForConditionalGeneration",
    "FishS2Output",
    "FishS2PreTrainedModel",
    "FishS2TextConfig",
    "FishS2TextModel",
]
