"""Fish Audio S2 text-to-speech for Hugging Face transformers.

Importing the package registers its classes with transformers' Auto classes, so
``AutoModelForTextToWaveform.from_pretrained("fishaudio/s2-pro")`` works after ``import transformers_fish_s2``.
"""

from transformers import AutoConfig, AutoModel, AutoModelForTextToWaveform, AutoProcessor

from .modeling import (
    FishS2AudioDecoder,
    FishS2AudioDecoderConfig,
    FishS2CheckpointError,
    FishS2Config,
    FishS2ForConditionalGeneration,
    FishS2Output,
    FishS2PreTrainedModel,
    FishS2TextConfig,
    FishS2TextModel,
)
from .modeling.codec import FishS2CodecConfig, FishS2CodecModel, FishS2CodecStreamingDecoder
from .modeling.generation_fish_s2 import FishS2GenerateOutput, FishS2GenerationConfig
from .modeling.streaming import FishS2AudioStreamer
from .processing import FishS2Conversation, FishS2Processor


def register_auto_classes() -> None:
    """Register our configs and models with the transformers Auto classes; safe to call any number of times.

    Each part of the package adds its own registrations here (config model types first, then models).
    """
    for config_class in (FishS2Config, FishS2TextConfig, FishS2AudioDecoderConfig, FishS2CodecConfig):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    for auto_class in (AutoModel, AutoModelForTextToWaveform):
        auto_class.register(FishS2Config, FishS2ForConditionalGeneration, exist_ok=True)
    AutoProcessor.register(FishS2Config, FishS2Processor, exist_ok=True)
    AutoModel.register(FishS2CodecConfig, FishS2CodecModel, exist_ok=True)


register_auto_classes()

__all__ = [
    "FishS2AudioDecoder",
    "FishS2AudioDecoderConfig",
    "FishS2AudioStreamer",
    "FishS2CheckpointError",
    "FishS2CodecConfig",
    "FishS2CodecModel",
    "FishS2CodecStreamingDecoder",
    "FishS2Config",
    "FishS2Conversation",
    "FishS2ForConditionalGeneration",
    "FishS2GenerateOutput",
    "FishS2GenerationConfig",
    "FishS2Output",
    "FishS2PreTrainedModel",
    "FishS2Processor",
    "FishS2TextConfig",
    "FishS2TextModel",
    "register_auto_classes",
]
