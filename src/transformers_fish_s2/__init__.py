"""Fish Audio S2 text-to-speech for Hugging Face transformers.

Importing the package registers its classes with transformers' Auto classes, so
``AutoModelForTextToWaveform.from_pretrained("fishaudio/s2-pro")`` works after ``import transformers_fish_s2``.

Packages: ``modeling`` (the Dual-AR language model over codes and its generate loop), ``codec`` (the audio
codec: waveform to codes and back), ``processing`` (text, prompts, audio I/O, the processor that owns the codec,
and ``generate_long``).

The ``fish-s2`` console script is the one exception to eager importing: it parses its command line before
torch and transformers are imported (so ``--help`` answers at once), and imports everything with
:func:`load_public_api` once a command runs. Any public name, e.g. ``transformers_fish_s2.FishS2Config``,
also imports everything on first use.
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("transformers-fish-s2")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_PUBLIC_NAMES: dict[str, tuple[str, str]] = {
    "FishS2CodecConfig": ("codec", "FishS2CodecConfig"),
    "FishS2CodecModel": ("codec", "FishS2CodecModel"),
    "FishS2CodecStreamingDecoder": ("codec", "FishS2CodecStreamingDecoder"),
    "FishS2CheckpointError": ("modeling", "FishS2CheckpointError"),
    "FishS2Config": ("modeling", "FishS2Config"),
    "FishS2FastTransformer": ("modeling", "FishS2FastTransformer"),
    "FishS2FastTransformerConfig": ("modeling", "FishS2FastTransformerConfig"),
    "FishS2ForConditionalGeneration": ("modeling", "FishS2ForConditionalGeneration"),
    "FishS2Output": ("modeling", "FishS2Output"),
    "FishS2PreTrainedModel": ("modeling", "FishS2PreTrainedModel"),
    "FishS2TextConfig": ("modeling", "FishS2TextConfig"),
    "FishS2TextModel": ("modeling", "FishS2TextModel"),
    "FishS2AudioStreamer": ("modeling.audio_streamer", "FishS2AudioStreamer"),
    "FishS2DecodeSession": ("modeling.decode_session", "FishS2DecodeSession"),
    "FishS2GenerateOutput": ("modeling.generation_fish_s2", "FishS2GenerateOutput"),
    "FishS2GenerationConfig": ("modeling.generation_options", "FishS2GenerationConfig"),
    "FishS2Conversation": ("processing", "FishS2Conversation"),
    "FishS2Processor": ("processing", "FishS2Processor"),
    "generate_long": ("processing", "generate_long"),
    # The names of the fast transformer's classes in release 0.1.0, kept so code written against it still imports.
    "FishS2AudioDecoder": ("modeling", "FishS2FastTransformer"),
    "FishS2AudioDecoderConfig": ("modeling", "FishS2FastTransformerConfig"),
}
"""Public name -> (module under this package, attribute)."""


def register_auto_classes() -> None:
    """Register our configs, models and processor with the transformers Auto classes, and our text-to-speech
    pipeline for S2 models (:mod:`.pipeline`); safe to call any number of times (config model types first, then
    models)."""
    from transformers import AutoConfig, AutoModel, AutoModelForTextToWaveform, AutoProcessor

    from .codec import FishS2CodecConfig, FishS2CodecModel
    from .modeling import (
        FishS2Config,
        FishS2FastTransformerConfig,
        FishS2ForConditionalGeneration,
        FishS2TextConfig,
    )
    from .pipeline import register_text_to_speech_pipeline
    from .processing import FishS2Processor

    for config_class in (FishS2Config, FishS2TextConfig, FishS2FastTransformerConfig, FishS2CodecConfig):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    for auto_class in (AutoModel, AutoModelForTextToWaveform):
        auto_class.register(FishS2Config, FishS2ForConditionalGeneration, exist_ok=True)
    AutoProcessor.register(FishS2Config, FishS2Processor, exist_ok=True)
    AutoModel.register(FishS2CodecConfig, FishS2CodecModel, exist_ok=True)
    register_text_to_speech_pipeline()


def load_public_api() -> None:
    """Import every public name into the package namespace and register the Auto classes."""
    namespace = globals()
    for name, (module, attribute) in _PUBLIC_NAMES.items():
        namespace[name] = getattr(importlib.import_module(f".{module}", __name__), attribute)
    register_auto_classes()


def __getattr__(name: str):
    if name not in _PUBLIC_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    load_public_api()
    return globals()[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC_NAMES})


def _started_by_console_script() -> bool:
    """True in the ``fish-s2`` script (``fish-s2`` on POSIX, ``fish-s2.exe`` or ``fish-s2-script.py`` on
    Windows), which imports the heavy modules itself after parsing its command line."""
    return bool(sys.argv) and Path(sys.argv[0]).stem in ("fish-s2", "fish-s2-script")


if not _started_by_console_script():
    load_public_api()

__all__ = sorted([*_PUBLIC_NAMES, "load_public_api", "register_auto_classes"])
