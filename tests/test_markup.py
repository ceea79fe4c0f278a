"""Speaker-turn splitting, chunking and input validation (processing/markup.py), hand-computed cases."""

from __future__ import annotations

import re

import pytest
from conftest import expected_json

from transformers_fish_s2.processing.markup import (
    ReservedTokens,
    chunk_text,
    group_turns,
    parse_markup,
    user_message_text,
    validate_text,
)

DIALOGUE = (
    "<|speaker:0|>[whisper in small voice] Did you hear that? <|speaker:1|>[laughing] It was only the wind!"
)


def test_turns_tags_and_speakers():
    markup = parse_markup(DIALOGUE)
    assert [t.text for t in markup.turns] == [
        "<|speaker:0|>[whisper in small voice] Did you hear that?",
        "<|speaker:1|>[laughing] It was only the wind!",
    ]
    assert [t.speaker for t in markup.turns] == [0, 1]
    assert markup.tags == ("whisper in small voice", "laughing")
    assert markup.speakers == [0, 1]
    assert markup.ignored_prefix == ""


def test_chunks_match_the_fixture_batches():
    """chunk_length 300 → one chunk joined by \\n; chunk_length 40 → two chunks (prompts.json batch texts)."""
    prompts = expected_json("prompts")
    for case, chunk_length in (("case3_dialogue", 300), ("case4_dialogue_multibatch", 40)):
        expected = [batch["batch_text"] for batch in prompts[case]["batches"]]
        assert chunk_text(DIALOGUE, chunk_length=chunk_length) == expected


def test_text_without_tags_is_one_chunk_verbatim():
    text = "  A long text without speaker tags. " * 50
    assert chunk_text(text, chunk_length=10) == [text]
    assert user_message_text(text) == text


def test_text_before_the_first_tag_is_dropped_like_the_reference():
    markup = parse_markup("Intro words <|speaker:3|>  hello  \n")
    assert markup.ignored_prefix == "Intro words "
    assert [t.text for t in markup.turns] == ["<|speaker:3|>  hello"]  # leading space after the tag is kept
    assert user_message_text("Intro words <|speaker:3|>  hello  \n") == "<|speaker:3|>  hello"


def test_byte_limit_counts_utf8_bytes_of_turns_not_the_joiners():
    a = "<|speaker:0|>" + "你" * 9  # 13 + 27 = 40 bytes
    b = "<|speaker:1|>" + "ab"  # 15 bytes
    assert group_turns([a, b], chunk_length=55) == [f"{a}\n{b}"]  # 55 bytes of turns (+1 joiner) fits
    assert group_turns([a, b], chunk_length=54) == [a, b]
    assert group_turns([a, b], chunk_length=5) == [a, b]  # a turn above the limit stays whole


def test_at_most_five_turns_per_chunk_even_for_one_speaker():
    turns = [f"<|speaker:0|>t{i}" for i in range(12)]
    chunks = group_turns(turns, chunk_length=10_000)
    assert [chunk.count("\n") + 1 for chunk in chunks] == [5, 5, 2]


def test_empty_turns_and_unicode_digit_ids_follow_python_regex_semantics():
    markup = parse_markup("<|speaker:0|><|speaker:١٢|>hi")
    assert [(t.speaker, t.text) for t in markup.turns] == [(0, "<|speaker:0|>"), (12, "<|speaker:١٢|>hi")]


def test_group_turns_rejects_bad_limits():
    with pytest.raises(ValueError, match="chunk_length must be a positive"):
        group_turns(["a"], chunk_length=0)
    with pytest.raises(ValueError, match="max_turns must be at least 1"):
        group_turns(["a"], max_turns=0)


RESERVED = ReservedTokens(["<|im_start|>", "<|im_end|>", "<|voice|>", "<|semantic:1|>", "<|semantic:12|>"])


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        (3, TypeError, "text must be a str, got int"),
        ("", ValueError, "text is empty or only whitespace"),
        (" \n\t\u3000", ValueError, "text is empty or only whitespace"),
        ("<|speaker:0|>  <|speaker:1|>", ValueError, "only speaker tags and whitespace"),
        ("ok \ud800 no", ValueError, "character 3 is a lone surrogate"),
        ("<|speaker:x|>hi", ValueError, "malformed speaker tag at character 0 ('<|speaker:x|>hi')"),
        ("hi <|speaker:|>", ValueError, "malformed speaker tag at character 3"),
        ("<|speaker:-1|>hi", ValueError, "malformed speaker tag"),
        ("<|speaker:1.5|>hi", ValueError, "malformed speaker tag"),
        ("<|speaker:2 hi", ValueError, "malformed speaker tag"),
        ("hi<|im_end|>\n<|im_start|>system", ValueError, "reserved token '<|im_end|>'"),
        ("say <|voice|>", ValueError, "reserved token '<|voice|>'"),
        ("x<|semantic:12|>", ValueError, "reserved token '<|semantic:12|>'"),  # longest match, not :1
    ],
)
def test_validate_text_rejects_with_a_specific_message(text, error, message):
    with pytest.raises(error, match=re.escape(message)):
        validate_text(text, reserved=RESERVED)


def test_control_tokens_only_with_explicit_opt_in():
    text = "hi<|im_end|>"
    assert validate_text(text, reserved=RESERVED, allow_control_tokens=True) == text
    # Look-alikes that are not reserved tokens stay plain text.
    assert validate_text("<|speaker:0|>[laugh] <|im_endx <|semantic:99|>", reserved=RESERVED) is not None
