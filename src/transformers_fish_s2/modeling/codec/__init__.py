"""S2 codec (modded DAC): config, model, streaming decoder. Importing registers them with AutoConfig/AutoModel."""

from transformers import AutoConfig, AutoModel

from .configuration_codec import FishS2CodecConfig
from .modeling_codec import (
    FishS2CodecDecoderOutput,
    FishS2CodecEncoderOutput,
    FishS2CodecModel,
    FishS2CodecOutput,
    FishS2CodecPreTrainedModel,
    FishS2CodecStreamingDecoder,
)

AutoConfig.register(FishS2CodecConfig.model_type, FishS2CodecConfig, exist_ok=True)
AutoModel.register(FishS2CodecConfig, FishS2CodecModel, exist_ok=True)

__all__ = [
    "FishS2CodecConfig",
    "FishS2CodecDecoderOutput",
    "FishS2CodecEncoderOutput",
    "FishS2CodecModel",
    "FishS2CodecOutput",
    "FishS2CodecPreTrainedModel",
    "FishS2CodecStreamingDecoder",
]
