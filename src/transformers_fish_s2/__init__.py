"""Fish Audio S2 text-to-speech for Hugging Face transformers.

Importing the package registers its classes with transformers' Auto classes, so
``AutoModelForTextToWaveform.from_pretrained("fishaudio/s2-pro")`` works after ``import transformers_fish_s2``.

Packages: ``modeling`` (the Dual-AR language model over codes and its generate loop), ``codec`` (the audio
codec: waveform to codes and back), ``processing`` (text, prompts, audio I/O, the processor that owns the codec,
and ``generate_long``).
"""

from transformers import AutoConfig, AutoModel, AutoModelForTextToWaveform, AutoProcessor

from .codec import FishS2CodecConfig, FishS2CodecModel, FishS2CodecStreamingDecoder
from .modeling import (
    FishS2CheckpointError,
    FishS2Config,
    FishS2FastTransformer,
    FishS2FastTransformerConfig,
    FishS2ForConditionalGeneration,
    FishS2Output,
    FishS2PreTrainedModel,
    FishS2TextConfig,
    FishS2TextModel,
)
from .modeling.audio_streamer import FishS2AudioStreamer
from .modeling.decode_session import FishS2DecodeSession
from .modeling.generation_fish_s2 import FishS2GenerateOutput
from .modeling.generation_options import FishS2GenerationConfig
from .processing import FishS2Conversation, FishS2Processor, generate_long

# The names of the fast transformer's classes in release 0.1.0, kept so code written against it still imports.
FishS2AudioDecoder = FishS2FastTransformer
FishS2AudioDecoderConfig = FishS2FastTransformerConfig


def register_auto_classes() -> None:
    """Register our configs and models with the transformers Auto classes; safe to call any number of times.

    Each part of the package adds its own registrations here (config model types first, then models).
    """
    for config_class in (FishS2Config, FishS2TextConfig, FishS2FastTransformerConfig, FishS2CodecConfig):
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
    "FishS2DecodeSession",
    "FishS2FastTransformer",
    "FishS2FastTransformerConfig",
    "FishS2ForConditionalGeneration",
    "FishS2GenerateOutput",
    "FishS2GenerationConfig",
    "FishS2Output",
    "FishS2PreTrainedModel",
    "FishS2Processor",
    "FishS2TextConfig",
    "FishS2TextModel",
    "generate_long",
    "register_auto_classes",
]
