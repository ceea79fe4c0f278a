"""S2 codec (modded DAC): config, model, streaming decoder (registered with AutoConfig/AutoModel by the package)."""

from .configuration_codec import FishS2CodecConfig
from .modeling_codec import (
    FishS2CodecDecoderOutput,
    FishS2CodecEncoderOutput,
    FishS2CodecModel,
    FishS2CodecOutput,
    FishS2CodecPreTrainedModel,
    FishS2CodecStreamingDecoder,
)

__all__ = [
    "FishS2CodecConfig",
    "FishS2CodecDecoderOutput",
    "FishS2CodecEncoderOutput",
    "FishS2CodecModel",
    "FishS2CodecOutput",
    "FishS2CodecPreTrainedModel",
    "FishS2CodecStreamingDecoder",
]
