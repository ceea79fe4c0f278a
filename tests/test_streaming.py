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
from transformers_fish_s2.modeling.audio_streamer import FishS2AudioStreamer, StreamCancelled
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


# ---------------------------------------------------------------------------------------------------------
# failures reach the consumer; cancellation; one streamer per call
# ---------------------------------------------------------------------------------------------------------


def consume_in_thread(target, streamer, on_chunk=None) -> tuple[list, BaseException | None, dict]:
    """Run ``target`` in a thread while this thread consumes ``streamer`` (the documented loop); return the chunks,
    the error the loop raised (or None) and what the thread returned or raised."""
    result: dict = {}

    def run() -> None:
        try:
            result["output"] = target()
        except BaseException as error:
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    chunks, raised = [], None
    try:
        for chunk in streamer:
            chunks.append(chunk)
            if on_chunk is not None:
                on_chunk(streamer)
    except BaseException as error:
        raised = error
    thread.join(timeout=60)
    assert not thread.is_alive()
    return chunks, raised, result


def test_a_failing_generate_ends_the_stream_with_its_error(model, codec, prompt):
    streamer = FishS2AudioStreamer(codec, timeout=60)  # a hang fails the test instead of blocking it
    chunks, raised, result = consume_in_thread(
        lambda: model.generate(*prompt, max_new_tokens=4, top_p=1.5, streamer=streamer), streamer
    )
    assert chunks == [] and isinstance(raised, ValueError) and "top_p must be in (0, 1]" in str(raised)
    assert result["error"] is raised

    plain = RecordingStreamer(model)  # a streamer without fail() is ended
    with pytest.raises(ValueError, match="top_p"):
        model.generate(*prompt, max_new_tokens=4, top_p=1.5, streamer=plain)
    assert plain.ends == 1


def test_a_chunk_failing_in_generate_long_ends_the_stream_with_its_error(model, codec, prompt):
    class Conversation:
        calls = 0
        max_length = None

        def check_text(self, text):
            return text

        def prompt_for(self, text, reserve=0):
            Conversation.calls += 1
            if Conversation.calls == 2:
                raise ValueError("the prompt is 600 tokens but the model context is 512 tokens")
            return prompt[0][0], prompt[1][0]

        def append_generated(self, text, codes):
            pass

    processor = SimpleNamespace(
        conversation=lambda references: Conversation(), chunk_text=lambda text, **options: ["a", "b"]
    )
    streamer = FishS2AudioStreamer(codec, first_chunk_frames=1, chunk_frames=1, timeout=60)
    run = lambda: generate_long(model, processor, "x", do_sample=False, max_new_tokens=3, streamer=streamer)  # noqa: E731
    chunks, raised, result = consume_in_thread(run, streamer)
    assert len(chunks) == 3  # the first chunk's frames come out, then the error
    assert isinstance(raised, ValueError) and "model context is 512" in str(raised) and result["error"] is raised


def test_cancel_stops_generate_between_frames(model, codec, prompt):
    streamer = FishS2AudioStreamer(codec, first_chunk_frames=2, chunk_frames=2, timeout=60)
    run = lambda: model.generate(*prompt, do_sample=False, max_new_tokens=48, streamer=streamer)  # noqa: E731
    chunks, raised, result = consume_in_thread(run, streamer, on_chunk=lambda s: s.cancel())
    assert isinstance(result["error"], StreamCancelled) and raised is result["error"]
    assert sum(len(chunk) for chunk in chunks) < 34 * codec.config.frame_length  # 34 frames uncancelled
    assert int(model.generate(*prompt, do_sample=False, max_new_tokens=48).lengths[0]) == 34  # the model is fine


def test_a_streamer_serves_one_call_and_refuses_a_second(model, codec, prompt):
    streamer = FishS2AudioStreamer(codec)
    first = model.generate(*prompt, do_sample=False, max_new_tokens=4, streamer=streamer)
    assert sum(len(chunk) for chunk in streamer) == int(first.lengths[0]) * codec.config.frame_length
    with pytest.raises(RuntimeError, match=r"already ended; use a new streamer for each generate\(\) call"):
        model.generate(*prompt, do_sample=False, max_new_tokens=4, streamer=streamer)
