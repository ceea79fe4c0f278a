"""Text, prompt and audio processing for Fish Audio S2 (DESIGN D2)."""

from .audio import save_audio
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
    "parse_markup",
    "save_audio",
]
