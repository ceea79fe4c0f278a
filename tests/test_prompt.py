"""Token-exact prompts (processing/prompt.py) against the authors' prompts, plus the conversation API."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import TINY, expected_cases, expected_json, expected_tensors
from transformers import AutoTokenizer

from transformers_fish_s2.processing.markup import chunk_text
from transformers_fish_s2.processing.prompt import FishS2Conversation, PromptEncoder, tag_transcripts


@pytest.fixture(scope="module")
def encoder() -> PromptEncoder:
    return PromptEncoder(AutoTokenizer.from_pretrained(TINY))


def case_references(case: dict) -> list[tuple[str, torch.Tensor]]:
    return [
        (ref["text"], expected_tensors("inputs")[ref["codes_tensor"].split(":", 1)[1]])
        for ref in case["references"]
    ]


CASE_NAMES = ["case1_plain", "case2_clone", "case3_dialogue", "case4_dialogue_multibatch"]


def test_every_recorded_case_is_checked():
    assert list(expected_cases()) == CASE_NAMES


@pytest.mark.parametrize("name", CASE_NAMES)
def test_prompts_are_token_exact(encoder, name):
    """Every batch prompt of every case, the second dialogue batch conditioned on the first's codes."""
    case = expected_cases()[name]
    conversation = FishS2Conversation(encoder, case_references(case))
    chunks = chunk_text(case["text"], chunk_length=case["chunk_length"])
    assert len(chunks) == (2 if case["name"] == "case4_dialogue_multibatch" else 1)
    for k, chunk in enumerate(chunks):
        input_ids, audio_codes = conversation.prompt_for(chunk)
        expected = expected_tensors("prompts")[f"{case['name']}.batch{k}.prompt"]
        assert torch.equal(input_ids, expected[0])
        assert torch.equal(audio_codes, expected[1:])
        conversation.append_generated(
            chunk, expected_tensors("generation")[f"{case['name']}.batch{k}.generate_long_codes"]
        )


def test_parts_are_tokenised_separately(encoder):
    """Tokenising the whole prompt string merges across part boundaries and misses the reference ids."""
    prompts = expected_json("prompts")
    batch = prompts["case2_clone"]["batches"][0]
    whole = encoder.tokenizer.encode(batch["decoded_prompt_text"], add_special_tokens=False)
    assert whole != batch["token_ids"]
    case = expected_cases()["case2_clone"]
    conversation = FishS2Conversation(encoder, case_references(case))
    assert conversation.prompt_for(case["text"])[0].tolist() == batch["token_ids"]


def test_semantic_vocabulary_is_read_from_the_tokenizer(encoder):
    assert (encoder.semantic_start_id, encoder.semantic_vocab_size) == (419, 64)


def test_reference_transcripts_are_tagged_unless_they_carry_a_tag():
    assert tag_transcripts(["a", "<|speaker:7|>b", "c"]) == "<|speaker:0|>a\n<|speaker:7|>b\n<|speaker:2|>c"


def test_conversation_history_and_empty_generation(encoder):
    conversation = FishS2Conversation(encoder)
    conversation.append_generated("Hello.", torch.zeros(10, 0, dtype=torch.long))
    history = conversation.history
    assert [(text, codes.shape) for text, codes in history] == [("Hello.", (10, 0))]
    history.clear()  # a copy: the conversation keeps its history
    assert len(conversation.history) == 1
    input_ids, _ = conversation.prompt_for("Bye.")
    decoded = encoder.tokenizer.decode(input_ids.tolist())
    assert decoded.endswith(
        "<|im_start|>user\nHello.<|im_end|>\n<|im_start|>assistant\n<|voice|><|im_end|>\n"
        "<|im_start|>user\nBye.<|im_end|>\n<|im_start|>assistant\n<|voice|>"
    )


def test_prompt_longer_than_the_context_names_both_lengths(encoder):
    text = expected_cases()["case1_plain"]["text"]  # a 68-token prompt
    assert len(FishS2Conversation(encoder, max_length=69).prompt_for(text)[0]) == 68
    with pytest.raises(ValueError, match="the prompt is 68 tokens but the model context is 68 tokens"):
        FishS2Conversation(encoder, max_length=68).prompt_for(text)


@pytest.mark.parametrize(
    ("codes", "error", "message"),
    [
        (torch.zeros(10, 4), TypeError, "codes must be an integer tensor, got dtype torch.float32"),
        ([[0] * 4] * 10, TypeError, "codes must be an integer tensor [10, T], got list"),
        (torch.zeros(9, 4, dtype=torch.long), ValueError, "codes must have shape [10, T] with T >= 0"),
        (torch.zeros(4, 10, 1, dtype=torch.long), ValueError, "got [4, 10, 1]"),
        (torch.full((10, 3), -1), ValueError, "codes has negative codes (min -1)"),
        (
            torch.tensor([[64]] + [[0]] * 9),
            ValueError,
            "row 0 (semantic codebook) has code 64, out of range [0, 64)",
        ),
        (torch.tensor([[0]] * 9 + [[64]]), ValueError, "rows 1..9 (residual codebooks) have code 64"),
    ],
)
def test_generated_codes_are_checked(encoder, codes, error, message):
    conversation = FishS2Conversation(encoder)
    with pytest.raises(error, match=re.escape(message)):
        conversation.append_generated("Hi.", codes)
    assert conversation.history == []


def test_reference_codes_check_uses_the_codec_range(encoder):
    codes = np.zeros((10, 3), dtype=np.int32)
    codes[5, 1] = 40
    assert encoder.check_codes(codes, name="c").dtype == torch.long  # numpy accepted, within model range
    with pytest.raises(
        ValueError, match=re.escape("c rows 1..9 (residual codebooks) have code 40, out of range [0, 32)")
    ):
        encoder.check_codes(codes, name="c", residual_size=32)
    with pytest.raises(ValueError, match=re.escape("c must have shape [10, T] with T >= 1")):
        encoder.check_codes(torch.zeros(10, 0, dtype=torch.long), name="c")
