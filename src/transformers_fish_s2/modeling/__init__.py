"""Model code: configuration, the Dual-AR model, shared layers."""

from .configuration_fish_s2 import FishS2AudioDecoderConfig, FishS2Config, FishS2TextConfig
from .modeling_fish_s2 import (
    FishS2AudioDecoder,
    FishS2CheckpointError,
    FishS2ForConditionalGeneration,
    FishS2Output,
    FishS2PreTrainedModel,
    FishS2TextModel,
)

__all__ = [
    "FishS2AudioDecoder",
    "FishS2AudioDecoderConfig",
    "FishS2CheckpointError",
    "FishS2Config",
    "FishS2ForConditionalGeneration",
    "FishS2Output",
    "FishS2PreTrainedModel",
    "FishS2TextConfig",
    "FishS2TextModel",
]
