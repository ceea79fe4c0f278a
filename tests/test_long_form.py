"""Long-form text: the sentence splitter (CJK punctuation, paragraphs, long sentences), the rolled history
(oldest chunks dropped, references kept, never past the context), a 64-sentence story on the tiny
checkpoint's 512-token context spoken to the end in order, audio kept when a later chunk fails, and the CLI's
--text-file with its chunk i/N progress bar."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from conftest import EXPECTED, TINY

from transformers_fish_s2 import FishS2ForConditionalGeneration, generate_long
from transformers_fish_s2.cli import main
from transformers_fish_s2.processing.sentences import sentence_chunks, split_sentences

STORY = " ".join(f"Nice to meet you, friend {i}." for i in range(64))  # the tiny model speaks each one
SHORT = {"do_sample": False, "max_new_tokens": 2}  # few frames per chunk keep 64 chunks fast
REFERENCE = {
    "text": "The quick brown fox jumps over the lazy dog.",
    "audio": str(EXPECTED / "test_waveform_44k1_pcm16.wav"),
}


def test_sentences_end_at_western_cjk_and_other_full_stops():
    text = 'Hello there. "How are you?" she asked! Fine…\n\n你好。今天天气很好！我们去公园吧？好的；走。\n\nكيف حالك؟ जी हाँ। Done'
    assert split_sentences(text) == [
        "Hello there.", '"How are you?"', "she asked!", "Fine…",
        "你好。", "今天天气很好！", "我们去公园吧？", "好的；", "走。",
        "كيف حالك؟", "जी हाँ।", "Done",
    ]  # fmt: skip
    assert split_sentences("Pi is 3.14 today. Yes.") == ["Pi is 3.14 today.", "Yes."]


def test_chunks_pack_whole_sentences_never_join_paragraphs_and_cut_long_ones():
    text = "One. Two. Three.\n\nFour. 五。六。"
    assert sentence_chunks(text, 300) == ["One. Two. Three.", "Four. 五。六。"]
    assert sentence_chunks(text, 12) == ["One. Two.", "Three.", "Four. 五。", "六。"]  # 五 is 3 bytes
    long = "a clause, another clause, and a third clause without end"
    assert all(len(chunk.encode()) <= 16 for chunk in sentence_chunks(long, 16))
    assert " ".join(sentence_chunks(long, 16)) == long
    unpunctuated = "这是一个没有标点的长句子" * 3  # 108 bytes, no boundary at all: cut between characters
    pieces = sentence_chunks(unpunctuated, 30)
    assert "".join(pieces) == unpunctuated and all(len(p.encode()) <= 30 for p in pieces)
    with pytest.raises(ValueError, match="chunk_length must be a positive"):
        sentence_chunks(text, 0)


def test_processor_splits_plain_text_only_when_asked_and_keeps_dialogue_rules(processor):
    assert processor.chunk_text(STORY) == [STORY]  # the reference behaviour stays the default
    chunks = processor.chunk_text(STORY, chunk_length=30, split_sentences=True)
    assert len(chunks) == 64 and chunks[5] == "Nice to meet you, friend 5."
    dialogue = "<|speaker:0|>Hi. Hello. <|speaker:1|>Yes. No."
    assert processor.chunk_text(dialogue, split_sentences=True) == processor.chunk_text(dialogue)


def test_rolled_history_drops_the_oldest_chunks_and_keeps_the_references(processor):
    conversation = processor.conversation(REFERENCE)
    first, other = conversation.prompt_for("A."), conversation.prompt_for("Something else entirely.")
    system = int((first[0][: len(other[0])] != other[0][: len(first[0])]).int().argmax())  # common prefix
    assert system > 100  # the system message holds the reference's codes
    for i in range(40):
        ids, codes = conversation.prompt_for(f"Chunk {i}.", reserve=20)
        assert len(ids) + 20 <= processor.max_length
        torch.testing.assert_close(ids[:system], first[0][:system])  # references kept
        torch.testing.assert_close(codes[:, :system], first[1][:, :system])
        conversation.append_generated(f"Chunk {i}.", torch.zeros(10, 8, dtype=torch.long))
    assert conversation.dropped > 0 and len(conversation.history) + conversation.dropped == 40
    assert conversation.history[-1][0] == "Chunk 39."


def _recording_generate(model, monkeypatch, fail_at: int | None = None) -> list[int]:
    """Record each chunk's prompt length (and raise at call ``fail_at``) around the model's generate."""
    prompt_lengths: list[int] = []
    original = model.generate

    def generate(input_ids, *args, **kwargs):
        if len(prompt_lengths) == fail_at:
            raise RuntimeError(f"chunk {fail_at} failed")
        prompt_lengths.append(input_ids.shape[1])
        return original(input_ids, *args, **kwargs)

    monkeypatch.setattr(model, "generate", generate)
    return prompt_lengths


def test_a_64_sentence_story_runs_to_the_end_in_a_512_token_context(model, processor, monkeypatch):
    assert model.config.text_config.max_seq_len == 512
    prompt_lengths = _recording_generate(model, monkeypatch)
    finished: list[tuple[int, int, torch.Tensor]] = []
    output = generate_long(
        model,
        processor,
        STORY,
        chunk_length=30,
        split_sentences=True,
        on_chunk=lambda index, total, codes: finished.append((index, total, codes)),
        **SHORT,
    )
    assert [index for index, _, _ in finished] == list(range(64)) and {t for _, t, _ in finished} == {64}
    assert max(prompt_lengths) + SHORT["max_new_tokens"] <= 512
    unrolled = prompt_lengths[0] + 63 * (prompt_lengths[1] - prompt_lengths[0])  # every chunk kept
    assert unrolled > 512 and prompt_lengths[-1] < unrolled  # so the history was rolled
    chunk_codes = [codes for _, _, codes in finished]
    torch.testing.assert_close(output.sequences[0], torch.cat(chunk_codes, dim=1))
    audio = processor.decode(output)
    chunk_audio = [processor.decode(codes) for codes in chunk_codes]
    assert len(audio) == sum(len(a) for a in chunk_audio) == int(output.lengths[0]) * 2048


def test_an_error_in_chunk_k_keeps_the_chunks_before_it(model, processor, monkeypatch):
    _recording_generate(model, monkeypatch, fail_at=5)
    finished: list[torch.Tensor] = []
    with pytest.raises(RuntimeError, match="chunk 5 failed") as caught:
        generate_long(
            model,
            processor,
            STORY,
            chunk_length=30,
            split_sentences=True,
            on_chunk=lambda index, total, codes: finished.append(codes),
            **SHORT,
        )
    assert len(finished) == 5
    torch.testing.assert_close(caught.value.partial_output.sequences[0], torch.cat(finished, dim=1))


def test_a_bad_chunk_fails_before_any_audio_is_generated(model, processor, monkeypatch):
    prompt_lengths = _recording_generate(model, monkeypatch)
    with pytest.raises(ValueError, match="reserved token"):
        generate_long(
            model, processor, STORY + " Then <|im_end|> came.", chunk_length=30, split_sentences=True
        )
    assert prompt_lengths == []


def test_cli_speaks_a_text_file_to_the_end_and_keeps_audio_on_a_later_error(tmp_path, monkeypatch, capsys):
    story = tmp_path / "story.txt"
    story.write_text(STORY, encoding="utf-8")
    common = ["--text-file", str(story), "--chunk-length", "30", "--greedy", "--max-new-tokens", "2"]
    common += ["--model", str(TINY), "--device", "cpu", "--progress"]
    assert main(["speak", *common, "-o", str(tmp_path / "story.wav")]) == 0
    err = capsys.readouterr().err
    assert "speaking (64 chunks)" in err and "64/64" in err
    frames = int(err.split(" frames) in ")[0].rsplit("(", 1)[1])
    assert soundfile.info(tmp_path / "story.wav").frames == frames * 2048

    original = FishS2ForConditionalGeneration.generate
    calls = []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("out of memory in chunk 4")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FishS2ForConditionalGeneration, "generate", failing)
    with pytest.raises(RuntimeError, match="out of memory in chunk 4"):  # not a user mistake: a traceback
        main(["speak", *common, "-o", str(tmp_path / "partial.wav")])
    assert "chunk 4 failed; wrote the 3 chunk(s) finished before it" in capsys.readouterr().err
    partial, _ = soundfile.read(tmp_path / "partial.wav")
    whole, _ = soundfile.read(tmp_path / "story.wav")
    np.testing.assert_allclose(partial, whole[: len(partial)], rtol=0, atol=2.01 / 32768)  # same frames
    assert 0 < len(partial) < len(whole)
