"""Streaming: generate() hands frames out as it makes them; the audio streamer turns them into chunks whose
concatenation is the non-streaming decode."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY, expected_tensors
from transformers.generation.streamers import BaseStreamer

from transformers_fish_s2.codec import FishS2CodecModel
from transformers_fish_s2.modeling.audio_streamer import FishS2AudioStreamer
from transformers_fish_s2.processing import generate_long


@pytest.fixture(scope="module")
def codec() -> FishS2CodecModel:
    return FishS2CodecModel.from_pretrained(TINY).eval()


@pytest.fixture(scope="module")
def prompt() -> tuple[torch.Tensor, torch.Tensor]:
    tokens = expected_tensors("prompts")["case2_clone.batch0.prompt"]
    return tokens[0][None], tokens[1:][None]


class RecordingStreamer(BaseStreamer):
    def __init__(self, model):
        self.model = model
        self.frames, self.frames_made_at_put, self.ends = [], [], 0

    def put(self, value):
        self.frames.append(value)
        self.frames_made_at_put.append(int(self.model.decode_session.frame_index))

    def end(self):
        self.ends += 1


def test_generate_puts_each_frame_as_it_is_made(model, prompt):
    streamer = RecordingStreamer(model)
    out = model.generate(*prompt, do_sample=False, max_new_tokens=48, streamer=streamer)
    n = int(out.lengths[0])
    assert n == 34 and streamer.ends == 1
    assert [tuple(f.shape) for f in streamer.frames] == [(1, 10, 1)] * n
    assert torch.equal(torch.cat(streamer.frames, dim=-1), out.sequences)
    # frame k is handed out right after it is made, before frame k+1 (the <|im_end|> frame is never put)
    assert streamer.frames_made_at_put == list(range(1, n + 1))


def test_streamed_audio_equals_full_decode(model, codec, prompt):
    streamer = FishS2AudioStreamer(codec, first_chunk_frames=3, chunk_frames=8)
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(
            out=model.generate(*prompt, do_sample=False, max_new_tokens=48, streamer=streamer)
        )
    )
    thread.start()
    chunks = list(streamer)
    thread.join()
    out = result["out"]
    frame_length = codec.config.frame_length
    # 34 frames: 3, then 8 at a time, then the remainder
    assert [len(c) // frame_length for c in chunks] == [3, 8, 8, 8, 7]
    assert all(c.dtype == torch.float32 and c.dim() == 1 for c in chunks)
    full = codec.decode(out.sequences).audio_values[0, 0]
    torch.testing.assert_close(torch.cat(chunks), full, rtol=0, atol=1e-5)


def test_long_text_streams_all_chunks_then_ends_once(model, prompt):
    streamer = RecordingStreamer(model)
    chunks = ["first", "second"]

    class Conversation:
        max_length = None

        def check_text(self, text):
            return text

        def prompt_for(self, text, reserve=0):
            return prompt[0][0], prompt[1][0]

        def append_generated(self, text, codes):
            pass

    processor = SimpleNamespace(
        conversation=lambda references: Conversation(), chunk_text=lambda text, **options: chunks
    )
    out = generate_long(model, processor, "ignored", do_sample=False, max_new_tokens=5, streamer=streamer)
    assert out.lengths.tolist() == [10] and streamer.ends == 1
    assert torch.equal(torch.cat(streamer.frames, dim=-1), out.sequences)


def test_streamer_accepts_a_processor_and_checks_its_arguments(codec):
    streamer = FishS2AudioStreamer(SimpleNamespace(codec=codec))
    assert streamer.codec is codec
    with pytest.raises(ValueError, match="FishS2CodecModel"):
        FishS2AudioStreamer(SimpleNamespace(codec=None))
    with pytest.raises(ValueError, match="first_chunk_frames"):
        FishS2AudioStreamer(codec, first_chunk_frames=0)
    with pytest.raises(ValueError, match="shape"):
        streamer.put(torch.zeros(2, 10, 1, dtype=torch.long))


def test_streamer_without_frames_yields_nothing(codec):
    streamer = FishS2AudioStreamer(codec)
    streamer.end()
    assert list(streamer) == []
