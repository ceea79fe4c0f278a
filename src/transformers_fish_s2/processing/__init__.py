"""Text, prompt and audio processing for Fish Audio S2 (DESIGN D2)."""

from .markup import Markup, SpeakerTurn, chunk_text, parse_markup
from .prompt import FishS2Conversation, PromptEncoder

__all__ = ["FishS2Conversation", "Markup", "PromptEncoder", "SpeakerTurn", "chunk_text", "parse_markup"]
