"""processor.apply_chat_template: CSM-style conversations (role = speaker id, content = text + optional audio)
render to the same S2 prompt as the processor's references + text, in every return form transformers uses."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile
import torch
from conftest import EXPECTED

WAV = str(EXPECTED / "test_waveform_44k1_pcm16.wav")
TRANSCRIPT = "The quick brown fox jumps over the lazy dog."


def clip_turn(role, text: str = TRANSCRIPT, **audio) -> dict:
    return {
        "role": role,
        "content": [{"type": "text", "text": text}, {"type": "audio", **(audio or {"path": WAV})}],
    }


def assert_same_inputs(got, expected) -> None:
    assert set(got) == set(expected) == {"input_ids", "audio_codes", "attention_mask"}
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)


def test_one_speaker_chat_is_the_processor_call_with_references(processor):
    chat = [clip_turn("0"), {"role": "0", "content": "Nice to meet you."}]
    expected = processor("Nice to meet you.", references=[{"text": TRANSCRIPT, "audio": WAV}])
    assert_same_inputs(processor.apply_chat_template(chat, tokenize=True, return_dict=True), expected)
    torch.testing.assert_close(processor.apply_chat_template(chat, tokenize=True), expected["input_ids"])

    # the clip as a datasets audio dict under "audio"; the text as a content item; role as an int
    samples, rate = soundfile.read(WAV, dtype="float32")
    as_dataset = [
        clip_turn(3, audio={"array": samples, "sampling_rate": rate}),
        {"role": 3, "content": [{"type": "text", "text": "Nice to meet you."}]},
    ]
    assert_same_inputs(processor.apply_chat_template(as_dataset, tokenize=True, return_dict=True), expected)

    text = processor.apply_chat_template(chat)  # the default: the prompt as text
    assert isinstance(text, str) and text.startswith("<|im_start|>system\n")
    assert "<|speaker:0|>" + TRANSCRIPT in text and text.endswith("<|im_start|>assistant\n<|voice|>")


def test_several_speakers_are_tagged_by_role_and_batches_pad(processor):
    chat = [
        clip_turn("1", "Hello there, I am speaker one."),
        clip_turn("0"),
        {"role": "1", "content": "Did you hear that?"},
        {"role": "0", "content": "It was only the wind!"},
    ]
    expected = processor(
        "<|speaker:1|>Did you hear that?<|speaker:0|>It was only the wind!",
        references=[
            {"text": "<|speaker:1|>Hello there, I am speaker one.", "audio": WAV},
            {"text": f"<|speaker:0|>{TRANSCRIPT}", "audio": WAV},
        ],
    )
    assert_same_inputs(processor.apply_chat_template(chat, tokenize=True, return_dict=True), expected)
    assert processor.apply_chat_template(chat).endswith(
        "user\n<|speaker:1|>Did you hear that?\n<|speaker:0|>It was only the wind!<|im_end|>\n"
        "<|im_start|>assistant\n<|voice|>"
    )

    plain = [{"role": "0", "content": "No reference at all."}]
    batch = processor.apply_chat_template([chat, plain], tokenize=True, return_dict=True, return_tensors="np")
    assert isinstance(batch["input_ids"], np.ndarray) and batch["input_ids"].shape[0] == 2
    np.testing.assert_array_equal(
        batch["input_ids"][1][batch["attention_mask"][1] == 1],
        processor("No reference at all.")["input_ids"][0].numpy(),
    )
    assert len(processor.apply_chat_template([chat, plain])) == 2


@pytest.mark.parametrize(
    ("conversation", "error", "message"),
    [
        ([{"role": "user", "content": "Hi."}], ValueError, "conversation[0]['role'] must be a speaker id such as '0'"),
        ([{"role": True, "content": "Hi."}], ValueError, "conversation[0]['role'] must be a speaker id"),
        ([{"role": "-1", "content": "Hi."}], ValueError, "conversation[0]['role'] must be a speaker id"),
        ([clip_turn("0")], ValueError, "the last turn of conversation has audio, so there is nothing to speak"),
        (
            [{"role": "0", "content": "First."}, clip_turn("0"), {"role": "0", "content": "Hi."}],
            ValueError,
            "conversation[0] has no audio, but turns with audio follow it",
        ),
        ([{"role": "0", "content": 5}], TypeError, "conversation[0]['content'] must be a str or a list of items"),
        ([{"role": "0", "content": [{"type": "image", "url": "x"}]}], ValueError, "conversation[0]['content'][0] must be"),
        ([{"role": "0", "content": [{"type": "audio", "path": WAV}]}, {"role": "0", "content": "Hi."}], ValueError, "conversation[0] needs exactly one text item"),
        (
            [{"role": "0", "content": [{"type": "text", "text": "a"}, {"type": "audio", "path": WAV}, {"type": "audio", "path": WAV}]}, {"role": "0", "content": "Hi."}],
            ValueError,
            "conversation[0] has 2 audio items",
        ),
        ([{"role": "0", "content": [{"type": "text", "text": "a"}, {"type": "audio", "path": WAV, "audio": WAV}]}, {"role": "0", "content": "Hi."}], ValueError, "exactly one of 'audio' or 'path'"),
        ([{"role": "0", "content": [{"type": "text", "text": "a"}, {"type": "audio", "url": WAV}]}, {"role": "0", "content": "Hi."}], ValueError, "exactly one of 'audio' or 'path'"),
        ([{"role": "0", "content": "<|speaker:1|>Hi."}], ValueError, "conversation[0] has a <|speaker:N|> tag in its text"),
        ([{"role": "0", "content": "   "}], ValueError, "text is empty or only whitespace"),
        ([], ValueError, "conversation is an empty list"),
        ("Hi.", TypeError, "conversation must be a list of turns"),
        ([[{"role": "0", "content": "Hi."}], "Bye."], TypeError, "conversation[1] must be a non-empty list of turns"),
    ],
)  # fmt: skip
def test_bad_conversations_say_which_turn_is_wrong(processor, conversation, error, message):
    with pytest.raises(error, match=re.escape(message)):
        processor.apply_chat_template(conversation, tokenize=True, return_dict=True)


def test_processor_options_pass_through_and_unknown_ones_are_rejected(processor):
    chat = [{"role": "0", "content": "a<|im_end|>b"}]
    with pytest.raises(ValueError, match="reserved token"):
        processor.apply_chat_template(chat, tokenize=True)
    allowed = processor.apply_chat_template(
        chat, tokenize=True, processor_kwargs={"allow_control_tokens": True}
    )
    assert 386 in allowed[0].tolist()  # <|im_end|> inside the user message
    with pytest.raises(TypeError, match=re.escape("unexpected keyword argument(s) ['chat_template']")):
        processor.apply_chat_template(chat, chat_template="{{ messages }}")
