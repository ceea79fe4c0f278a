"""Text, prompt and audio processing for Fish Audio S2, and long-form generation (which needs the processor)."""

from .audio import save_audio
from .long_form import generate_long
from .markup import Markup, SpeakerTurn, chunk_text, parse_markup
from .processing_fish_s2 import FishS2Processor
from .prompt import FishS2Conversation, PromptEncoder

__all__ = [
    "FishS2Conversation",
    "FishS2Processor",
    "Markup",
    "PromptEncoder",
    "SpeakerTurn",
    "chunk_text",
    "generate_long",
    "parse_markup",
    "save_audio",
]
