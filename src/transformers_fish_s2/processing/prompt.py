"""The authors' chat prompt (docs/reference-behaviour.md, prompt format) as token ids plus codebook rows.

A prompt is a list of *parts*: strings, each tokenised on its own (BPE merges never cross a part
boundary — the reference does this and token-exact prompts depend on it), and code blocks
``[num_codebooks, T]``, which become ``<|semantic:c0|>`` ids with the full codes in the codebook rows.

Layout of a generation prompt (reference audio optional)::

    <|im_start|>system\\n | convert the provided text to speech reference to the following:\\n\\nText:\\n
      | <|speaker:0|>transcript 0\\n<|speaker:1|>transcript 1 | \\n\\nSpeech:\\n | codes of all references
      | <|im_end|>\\n
    <|im_start|>user\\n | chunk 0 | <|im_end|>\\n                 ┐ history: one pair per chunk
    <|im_start|>assistant\\n<|voice|> | codes 0 | <|im_end|>\\n   ┘ already generated
    <|im_start|>user\\n | chunk k | <|im_end|>\\n
    <|im_start|>assistant\\n<|voice|>                            ← the model continues here

Without references the system text is just ``convert the provided text to speech``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from ..validation import is_integer_tensor
from .markup import (
    SPEAKER_TAG,
    ReservedTokens,
    parse_markup,
    speaker_tag,
    user_message_text,
    validate_text,
)

logger = logging.getLogger(__name__)

SYSTEM_TEXT = "convert the provided text to speech"
SYSTEM_TEXT_WITH_REFERENCES = "convert the provided text to speech reference to the following:\n\nText:\n"
SPEECH_HEADER = "\n\nSpeech:\n"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VOICE = "<|voice|>"
SEMANTIC_TOKEN = "<|semantic:{}|>"

PromptPart = str | torch.Tensor


def message(role: str, parts: Sequence[PromptPart] = (), *, voice: bool = False, close: bool = True) -> list:
    """One chat message as parts: header (with ``<|voice|>`` for audio turns), body, ``<|im_end|>\\n``."""
    header = f"{IM_START}{role}\n{VOICE if voice else ''}"
    return [header, *parts, *([f"{IM_END}\n"] if close else [])]


def tag_transcripts(transcripts: Sequence[str]) -> str:
    """Join reference transcripts with ``\\n``, prefixing transcript i with ``<|speaker:i|>`` unless it has a tag."""
    return "\n".join(
        t if SPEAKER_TAG.search(t) else f"{speaker_tag(i)}{t}" for i, t in enumerate(transcripts)
    )


def system_message(references: Sequence[tuple[str, torch.Tensor]]) -> list:
    """The system message: plain instruction, or instruction + tagged transcripts + all reference codes."""
    if not references:
        return message("system", [SYSTEM_TEXT])
    transcripts = tag_transcripts([text for text, _ in references])
    codes = torch.cat([codes for _, codes in references], dim=1)
    return message("system", [SYSTEM_TEXT_WITH_REFERENCES, transcripts, SPEECH_HEADER, codes])


class PromptEncoder:
    """Tokenises prompt parts and checks codes against the tokenizer's semantic vocabulary."""

    def __init__(self, tokenizer, num_codebooks: int = 10):
        self.tokenizer = tokenizer
        self.num_codebooks = num_codebooks
        added = tokenizer.get_added_vocab()
        self.reserved = ReservedTokens(added)
        first = added.get(SEMANTIC_TOKEN.format(0))
        if first is None:
            raise ValueError(
                f"the tokenizer has no {SEMANTIC_TOKEN.format(0)} token; an S2 tokenizer defines "
                "<|semantic:0|> ... <|semantic:N-1|> as added tokens"
            )
        size = 0
        while (token_id := added.get(SEMANTIC_TOKEN.format(size))) is not None:
            if token_id != first + size:
                raise ValueError(
                    f"the tokenizer's semantic tokens are not contiguous: {SEMANTIC_TOKEN.format(size)} has id "
                    f"{token_id}, expected {first + size}"
                )
            size += 1
        self.semantic_start_id = first
        self.semantic_vocab_size = size
        if not self.text_ids("Hello"):
            raise ValueError(
                "the tokenizer turns text into no tokens: its vocabulary is missing (an incomplete tokenizer.json?)"
            )

    def text_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def encode(self, parts: Sequence[PromptPart]) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_ids [T]`` and ``audio_codes [num_codebooks, T]`` (0 outside code blocks)."""
        ids, codes = [], []
        for part in parts:
            if isinstance(part, str):
                part_ids = torch.tensor(self.text_ids(part), dtype=torch.long)
                ids.append(part_ids)
                codes.append(torch.zeros(self.num_codebooks, len(part_ids), dtype=torch.long))
            else:
                ids.append(part[0] + self.semantic_start_id)
                codes.append(part)
        return torch.cat(ids), torch.cat(codes, dim=1)

    def check_codes(
        self, codes: object, *, name: str, residual_size: int | None = None, allow_empty: bool = False
    ) -> torch.Tensor:
        """Validate codes ``[num_codebooks, T]`` and return them as a CPU LongTensor.

        Row 0 must index the semantic vocabulary; rows 1.. must be below ``residual_size`` (default:
        the semantic vocabulary size, the range the model's codebook embeddings accept).
        """
        if isinstance(codes, np.ndarray):
            codes = torch.from_numpy(codes)
        if not isinstance(codes, torch.Tensor):
            raise TypeError(
                f"{name} must be an integer tensor [{self.num_codebooks}, T], got {type(codes).__name__}"
            )
        if not is_integer_tensor(codes):
            raise TypeError(f"{name} must be an integer tensor, got dtype {codes.dtype}")
        min_frames = 0 if allow_empty else 1
        if codes.ndim != 2 or codes.shape[0] != self.num_codebooks or codes.shape[1] < min_frames:
            raise ValueError(
                f"{name} must have shape [{self.num_codebooks}, T] with T >= {min_frames} "
                f"(one row per codebook), got {list(codes.shape)}"
            )
        codes = codes.detach().to("cpu", torch.long)
        if codes.numel() == 0:
            return codes.clone()
        residual_size = self.semantic_vocab_size if residual_size is None else residual_size
        if codes.min() < 0:
            raise ValueError(f"{name} has negative codes (min {int(codes.min())})")
        if codes[0].max() >= self.semantic_vocab_size:
            raise ValueError(
                f"{name} row 0 (semantic codebook) has code {int(codes[0].max())}, out of range "
                f"[0, {self.semantic_vocab_size})"
            )
        if self.num_codebooks > 1 and codes[1:].max() >= residual_size:
            raise ValueError(
                f"{name} rows 1..{self.num_codebooks - 1} (residual codebooks) have code "
                f"{int(codes[1:].max())}, out of range [0, {residual_size})"
            )
        return codes.clone()


class FishS2Conversation:
    """The running conversation of a multi-chunk (long text or multi-turn) generation (see long text in
    docs/reference-behaviour.md).

    It holds the system message (with the reference voices) and the history of user texts with the
    codes generated for them, so that chunk k is generated conditioned on the text and audio of chunks
    < k, as the authors' ``generate_long`` does::

        conversation = processor.conversation(references)
        for chunk in processor.chunk_text(text):
            input_ids, audio_codes = conversation.prompt_for(chunk)
            codes = ...generate from input_ids[None], audio_codes[None]...   # [num_codebooks, N]
            conversation.append_generated(chunk, codes)

    Texts are validated like processor inputs (reserved tokens, malformed speaker tags, empty text) and
    laid out like the reference's user message (speaker turns re-joined with ``\\n``).
    """

    def __init__(
        self,
        encoder: PromptEncoder,
        references: Sequence[tuple[str, torch.Tensor]] = (),
        *,
        max_length: int | None = None,
        allow_control_tokens: bool = False,
    ):
        self.encoder = encoder
        self.max_length = max_length
        self.allow_control_tokens = allow_control_tokens
        self._system = system_message(references)
        self._history: list[tuple[str, torch.Tensor]] = []
        self.dropped = 0
        """Chunks rolled out of the history to keep prompts inside ``max_length``."""

    @property
    def history(self) -> list[tuple[str, torch.Tensor]]:
        """``(user text, generated codes [num_codebooks, N])`` for every chunk appended so far."""
        return list(self._history)

    def prompt_for(self, text: str, *, reserve: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_ids [T]`` and ``audio_codes [num_codebooks, T]`` to generate the audio of ``text`` next.

        With ``max_length`` set, the history is rolled: the oldest chunks are dropped (the references in the
        system message are kept) until the prompt leaves ``reserve`` positions free for the generated audio,
        so a book-length text never outgrows the context. Dropped chunks are counted in ``dropped``.
        """
        user_text = self.check_text(text)
        while True:
            parts = [
                *self._history_parts(),
                *message("user", [user_text]),
                *message("assistant", voice=True, close=False),
            ]
            input_ids, audio_codes = self.encoder.encode(parts)
            if self.max_length is None or len(input_ids) + reserve <= self.max_length or not self._history:
                break
            self._history.pop(0)
            self.dropped += 1
        if self.max_length is not None and len(input_ids) >= self.max_length:
            raise ValueError(
                f"the prompt is {len(input_ids)} tokens but the model context is {self.max_length} tokens "
                f"(max_length), and at least one position must stay free for the generated audio; shorten "
                "the text (or its chunks: chunk_length) or the reference audio"
            )
        return input_ids, audio_codes

    def append_generated(self, text: str, codes: torch.Tensor) -> None:
        """Record that ``codes [num_codebooks, N]`` were generated for ``text`` (the ``prompt_for`` text)."""
        user_text = self.check_text(text)
        # Residual codes are checked against the model's range, not the codec's: the reference keeps the
        # fast AR's unmasked outputs in the history (its head is 4096-way for every codebook).
        codes = self.encoder.check_codes(codes, name="codes", allow_empty=True)
        self._history.append((user_text, codes))

    def check_text(self, text: str) -> str:
        """The user message for ``text``, after the checks every processor input gets (so a long text can be
        checked chunk by chunk before any audio is generated)."""
        validate_text(
            text, name="text", reserved=self.encoder.reserved, allow_control_tokens=self.allow_control_tokens
        )
        ignored = parse_markup(text).ignored_prefix
        if ignored.strip():
            logger.warning(
                "text before the first speaker tag is not spoken (as in the reference implementation): %r",
                ignored,
            )
        return user_message_text(text)

    def _history_parts(self) -> list:
        parts = list(self._system)
        for user_text, codes in self._history:
            parts += message("user", [user_text])
            parts += message("assistant", [codes], voice=True)
        return parts
