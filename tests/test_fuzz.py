"""Property-based fuzzing (hypothesis) of the markup parser, the prompt builder and the codec's shape handling.

Examples are derandomized (the same ones every run, so CI cannot flake) and nothing is stored on disk.
Invariants checked: the parser and chunker reproduce the reference rules on arbitrary text; the prompt builder
either refuses a text with ValueError/TypeError or builds a prompt that decodes back to exactly the text it
was given; the codec either refuses a shape/dtype with ValueError/TypeError or returns 2048 samples per frame,
chunked streaming included.
"""

from __future__ import annotations

import re
import unicodedata

import pytest
import torch
from conftest import TINY
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from transformers_fish_s2 import FishS2Processor
from transformers_fish_s2.processing.markup import (
    SPEAKER_TAG,
    chunk_text,
    parse_markup,
    user_message_text,
    validate_text,
)
from transformers_fish_s2.processing.prompt import SYSTEM_TEXT, SYSTEM_TEXT_WITH_REFERENCES

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
CODEC_FUZZ = settings(FUZZ, max_examples=200)  # each example runs the (tiny) codec

PROCESSOR = FishS2Processor.from_pretrained(TINY)
NUM_CODEBOOKS, SEMANTIC_SIZE, RESIDUAL_SIZE = 10, 64, 32  # the tiny fixture's codec
FRAME = 2048

# Text made of the pieces that matter to the parser: speaker tags (ASCII or other Unicode digits), broken tag
# starts, inline [tags], whitespace, reserved-looking tokens and arbitrary Unicode.
SPEAKER_IDS = st.integers(0, 12).map(str) | st.sampled_from(["٣", "०", "007", "１"])
GOOD_PIECES = st.one_of(
    SPEAKER_IDS.map(lambda n: f"<|speaker:{n}|>"),
    st.sampled_from(["<|", "|>", "[whisper]", "[", "]", "\n", " ", "\t", "e\u0301", "\u212b"]),  # + non-NFC
    st.text(min_size=1, max_size=12),
    st.text(alphabet="abc .,!?你好", min_size=1, max_size=20),
)
BAD_PIECES = st.sampled_from(
    ["<|speaker:", "<|speaker:x|>", "<|speaker:-1|>", "<|im_end|>", "<|semantic:3|>"]
)
MARKUP_TEXT = st.lists(GOOD_PIECES | BAD_PIECES, max_size=12).map("".join)  # often refused by validation
SPEAKABLE_TEXT = st.lists(GOOD_PIECES, min_size=1, max_size=10).map("".join)  # mostly accepted


def mostly(usual: st.SearchStrategy, other: st.SearchStrategy) -> st.SearchStrategy:
    """``usual`` three times out of four (``one_of`` would pick each branch equally often)."""
    return st.integers(0, 3).flatmap(lambda pick: other if pick == 0 else usual)


def turn_texts(text: str) -> list[str]:
    return [turn.text for turn in parse_markup(text).turns]


# ---------------------------------------------------------------------------------------------------------
# markup parser
# ---------------------------------------------------------------------------------------------------------


@FUZZ
@given(MARKUP_TEXT)
def test_parse_markup_splits_at_every_tag_and_keeps_everything_else(text):
    markup = parse_markup(text)
    matches = list(SPEAKER_TAG.finditer(text))
    assert len(markup.turns) == len(matches)
    assert markup.ignored_prefix == (text[: matches[0].start()] if matches else "")
    for turn, match, following in zip(markup.turns, matches, [*matches[1:], None]):
        assert turn.speaker == int(match.group(1))
        assert turn.text == text[match.start() : following.start() if following else len(text)].strip()
        assert turn.text.startswith(match.group(0))
    assert markup.speakers == list(dict.fromkeys(turn.speaker for turn in markup.turns))


@FUZZ
@given(MARKUP_TEXT, st.integers(1, 120), st.integers(1, 6))
def test_chunk_text_packs_turns_greedily_within_the_limits(text, chunk_length, max_turns):
    chunks = chunk_text(text, chunk_length=chunk_length, max_turns=max_turns)
    turns = turn_texts(text)
    if not turns:
        assert chunks == [text]
        return
    per_chunk = [turn_texts(chunk) for chunk in chunks]
    assert [turn for chunk in per_chunk for turn in chunk] == turns  # nothing lost, duplicated or reordered
    for chunk, chunk_turns in zip(chunks, per_chunk):
        assert chunk == "\n".join(chunk_turns)
        size = sum(len(turn.encode("utf-8")) for turn in chunk_turns)
        assert 1 <= len(chunk_turns) <= max_turns
        assert size <= chunk_length or len(chunk_turns) == 1  # an over-long turn is a chunk of its own
    for chunk_turns, next_turns in zip(per_chunk, per_chunk[1:]):  # greedy: the next turn did not fit
        size = sum(len(turn.encode("utf-8")) for turn in chunk_turns + next_turns[:1])
        assert len(chunk_turns) == max_turns or size > chunk_length


@FUZZ
@given(MARKUP_TEXT)
def test_user_message_text_is_idempotent_and_validation_only_raises_value_error(text):
    once = user_message_text(text)
    assert user_message_text(once) == once
    try:
        assert validate_text(text) is text
    except ValueError as error:
        assert str(error).startswith("text ")


# ---------------------------------------------------------------------------------------------------------
# prompt builder
# ---------------------------------------------------------------------------------------------------------

CODES = st.builds(
    lambda frames, seed: torch.cat(
        [
            torch.randint(0, SEMANTIC_SIZE, (1, frames), generator=torch.Generator().manual_seed(seed)),
            torch.randint(
                0, RESIDUAL_SIZE, (NUM_CODEBOOKS - 1, frames), generator=torch.Generator().manual_seed(seed)
            ),
        ]
    ),
    st.integers(1, 6),
    st.integers(0, 2**16),
)
REFERENCES = st.lists(
    st.builds(
        lambda text, codes: {"text": text, "codes": codes},
        mostly(SPEAKABLE_TEXT, MARKUP_TEXT),
        CODES,
    ),
    max_size=3,
)


@FUZZ
@given(mostly(SPEAKABLE_TEXT, MARKUP_TEXT | st.text(max_size=40)), REFERENCES)
def test_prompt_builder_refuses_cleanly_or_builds_a_prompt_that_decodes_to_its_text(text, references):
    try:
        inputs = PROCESSOR(text, references=references or None)
    except (ValueError, TypeError) as error:
        event("refused")
        assert re.match(r"(text|references\[\d\])", str(error)), error
        return
    event("built")
    ids, codes, mask = inputs["input_ids"][0], inputs["audio_codes"][0], inputs["attention_mask"][0]
    assert codes.shape == (NUM_CODEBOOKS, len(ids)) and bool(mask.all())
    assert len(ids) < PROCESSOR.max_length
    semantic = (ids >= PROCESSOR.prompt_encoder.semantic_start_id) & (
        ids < PROCESSOR.prompt_encoder.semantic_start_id + SEMANTIC_SIZE
    )
    expected_codes = torch.cat([ref["codes"] for ref in references], dim=1) if references else codes[:, :0]
    torch.testing.assert_close(codes[:, semantic], expected_codes, rtol=0, atol=0)  # every frame, in order
    assert not codes[:, ~semantic].any()  # zeros at text positions
    torch.testing.assert_close(ids[semantic] - PROCESSOR.prompt_encoder.semantic_start_id, expected_codes[0])
    decoded = PROCESSOR.tokenizer.decode(ids[~semantic])
    system = SYSTEM_TEXT_WITH_REFERENCES if references else SYSTEM_TEXT
    assert decoded.startswith(f"<|im_start|>system\n{system}")
    user = unicodedata.normalize("NFC", user_message_text(text))  # the tokenizer normalizes to NFC
    assert decoded.endswith(f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n<|voice|>")


@FUZZ
@given(st.lists(mostly(SPEAKABLE_TEXT, MARKUP_TEXT), min_size=1, max_size=3))
def test_a_batch_is_each_prompt_left_padded(texts):
    try:
        alone = [PROCESSOR(text) for text in texts]
    except (ValueError, TypeError):
        event("refused")
        with pytest.raises((ValueError, TypeError)):
            PROCESSOR(texts)
        return
    event("built")
    batch = PROCESSOR(texts)
    width = batch["input_ids"].shape[1]
    assert width == max(single["input_ids"].shape[1] for single in alone)
    for row, single in enumerate(alone):
        length = single["input_ids"].shape[1]
        torch.testing.assert_close(batch["input_ids"][row, width - length :], single["input_ids"][0])
        torch.testing.assert_close(batch["audio_codes"][row, :, width - length :], single["audio_codes"][0])
        assert batch["attention_mask"][row].tolist() == [0] * (width - length) + [1] * length
        assert (batch["input_ids"][row, : width - length] == PROCESSOR.tokenizer.pad_token_id).all()


# ---------------------------------------------------------------------------------------------------------
# codec shape handling
# ---------------------------------------------------------------------------------------------------------

DTYPES = st.sampled_from([torch.int64] * 3 + [torch.int32, torch.uint8, torch.float32, torch.bool])
NEAR_VALID_SHAPES = st.tuples(
    st.integers(0, 2), st.sampled_from([NUM_CODEBOOKS] * 3 + [9]), st.integers(0, 2)
)
ANY_SHAPES = st.lists(st.integers(0, 12), max_size=4).map(tuple)


@FUZZ
@given(
    mostly(NEAR_VALID_SHAPES, ANY_SHAPES),
    DTYPES,
    st.integers(0, 2 * SEMANTIC_SIZE),
)
def test_codec_decode_refuses_cleanly_or_returns_2048_samples_per_frame(shape, dtype, high):
    codes = torch.randint(0, high + 1, shape).to(dtype)
    valid = (
        len(shape) == 3
        and shape[0] >= 1
        and shape[1] == NUM_CODEBOOKS
        and dtype not in (torch.float32, torch.bool)
    )
    event("valid" if valid else "invalid")
    try:
        audio = PROCESSOR.codec.decode(codes).audio_values
    except (ValueError, TypeError) as error:
        assert not valid, error
        assert str(error).startswith("audio_codes"), error
        return
    assert valid
    assert audio.shape == (shape[0], 1, FRAME * shape[2]) and bool(torch.isfinite(audio).all())
    clamped = codes.long().clamp(max=torch.tensor([SEMANTIC_SIZE - 1] + [RESIDUAL_SIZE - 1] * 9)[:, None])
    torch.testing.assert_close(PROCESSOR.codec.decode(clamped).audio_values, audio, rtol=0, atol=0)


@CODEC_FUZZ
@given(st.integers(1, 2), st.lists(st.integers(1, 2), min_size=1, max_size=3), st.integers(0, 2**16))
def test_streaming_decode_in_any_chunks_equals_decoding_at_once(batch, chunks, seed):
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 2 * RESIDUAL_SIZE, (batch, NUM_CODEBOOKS, sum(chunks)), generator=generator)
    whole = PROCESSOR.codec.decode(codes).audio_values
    decoder = PROCESSOR.codec.streaming_decoder(batch)
    bounds = torch.tensor([0, *chunks]).cumsum(0).tolist()
    pieces = [decoder.decode_chunk(codes[:, :, start:end]) for start, end in zip(bounds, bounds[1:])]
    assert [piece.shape[-1] for piece in pieces] == [FRAME * n for n in chunks]
    torch.testing.assert_close(torch.cat(pieces, dim=-1), whole, rtol=0, atol=1e-5)


@CODEC_FUZZ
@given(st.lists(st.integers(1, 2 * FRAME + 7), min_size=1, max_size=3), st.booleans(), st.integers(0, 2**16))
def test_codec_encode_gives_one_frame_per_2048_samples(lengths, with_channel_axis, seed):
    longest = max(lengths)
    audio = torch.rand(len(lengths), longest, generator=torch.Generator().manual_seed(seed)) - 0.5
    mask = (torch.arange(longest)[None] < torch.tensor(lengths)[:, None]).long()
    encoded = PROCESSOR.codec.encode(audio[:, None] if with_channel_axis else audio, padding_mask=mask)
    frames = -(-longest // FRAME)
    assert encoded.audio_codes.shape == (len(lengths), NUM_CODEBOOKS, frames)
    assert encoded.audio_code_lengths.tolist() == [-(-n // FRAME) for n in lengths]
    assert (
        int(encoded.audio_codes[:, 0].max()) < SEMANTIC_SIZE
        and int(encoded.audio_codes[:, 1:].max()) < RESIDUAL_SIZE
    )
