"""FishS2Engine: batch invariance against solo generate(), streaming, cancellation, errors, robustness.

Every request's codes are compared with ``torch.manual_seed(seed); model.generate(**processor(...))`` (or
``generate_long`` for multi-chunk text) run alone. Frame counts are kept small: the tiny model's frame step
is dominated by Python overhead, and CI runs on two shared cores.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import time

import numpy as np
import psutil
import pytest
import torch
from conftest import EXPECTED, TINY
from safetensors.torch import load_file

from transformers_fish_s2 import generate_long
from transformers_fish_s2.serving import (
    EngineClosedError,
    FishS2Engine,
    InvalidRequestError,
    QueueFullError,
    RequestCancelledError,
    RequestFailedError,
    SpeechRequest,
)

OPTIONS = (
    "temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens", "ras_window_size",
    "ras_temperature", "ras_top_p",
)  # fmt: skip
CASES = {case["name"]: case for case in json.loads((EXPECTED / "inputs.json").read_text())["cases"]}
REFERENCE_CODES = load_file(EXPECTED / "inputs.safetensors")


def references(case: str) -> list[dict] | None:
    refs = [
        {"text": ref["text"], "codes": REFERENCE_CODES[ref["codes_tensor"].split(":")[1]]}
        for ref in CASES[case]["references"]
    ]
    return refs or None


def request(case: str, seed: int, **kwargs) -> SpeechRequest:
    kwargs.setdefault("output", "frames")
    return SpeechRequest(CASES[case]["text"], references(case), seed=seed, **kwargs)


def solo_codes(model, processor, req: SpeechRequest) -> torch.Tensor:
    """What the request must produce: a seeded solo generate() (generate_long for several chunks)."""
    options = {name: getattr(req, name) for name in OPTIONS if getattr(req, name) is not None}
    if not req.do_sample:
        options = {
            k: v
            for k, v in options.items()
            if k in ("max_new_tokens", "repetition_penalty", "ras_window_size")
        }
    torch.manual_seed(req.seed)
    if len(processor.chunk_text(req.text, chunk_length=req.chunk_length)) > 1:
        out = generate_long(
            model,
            processor,
            req.text,
            req.references,
            chunk_length=req.chunk_length,
            do_sample=req.do_sample,
            **options,
        )
        return out.sequences[0]
    out = model.generate(**processor(req.text, req.references), do_sample=req.do_sample, **options)
    return out.sequences[0, :, : int(out.lengths[0])]


def mixed_requests(count: int, seed0: int = 0) -> list[SpeechRequest]:
    """Greedy and sampled requests with different prompts, options, windows and lengths."""
    cases = ["case2_clone", "case1_plain", "case3_dialogue"]
    variants = [
        dict(do_sample=False, max_new_tokens=9),
        dict(temperature=0.7, top_p=0.9, top_k=10, max_new_tokens=8),
        dict(temperature=1.0, top_p=0.95, top_k=0, ras_window_size=4, max_new_tokens=7),
        dict(do_sample=False, repetition_penalty=1.3, max_new_tokens=5),
        dict(repetition_penalty=1.2, ras_window_size=0, max_new_tokens=9),
    ]
    return [request(cases[i % 3], seed0 + i, **variants[i % len(variants)]) for i in range(count)]


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def engine(model, processor):
    with FishS2Engine(model, processor, max_batch_size=4, max_queue_size=8) as engine:
        yield engine


# ---------------------------------------------------------------------------------------------------------
# Batch invariance
# ---------------------------------------------------------------------------------------------------------


def test_alone_and_in_a_burst_of_eight_equal_solo_generate(model, processor):
    requests = mixed_requests(8)
    expected = [solo_codes(model, processor, req) for req in requests]
    assert {codes.shape[1] for codes in expected} != {0}  # the comparison covers real frames
    with FishS2Engine(model, processor, max_batch_size=8) as engine:
        alone = engine.submit(requests[1]).result(timeout=120)
        burst = [engine.submit(req) for req in requests]
        results = [handle.result(timeout=300) for handle in burst]
    assert torch.equal(alone.codes, expected[1])
    for req, result, codes in zip(requests, results, expected):
        assert torch.equal(result.codes, codes), req
        assert result.seed == req.seed and result.frames == codes.shape[1]
        assert result.audio is None  # output="frames"


def test_staggered_joins_and_replacements_equal_solo_generate(engine, model, processor):
    """Three slots, seven requests: each joins a busy engine at a different frame, and rows that finish
    are replaced by queued requests while the others keep going."""
    requests = mixed_requests(7, seed0=100)
    expected = [solo_codes(model, processor, req) for req in requests]
    pacer = engine.submit(request("case3_dialogue", 99, do_sample=False, max_new_tokens=12, chunk_frames=1,
                                  first_chunk_frames=1))  # fmt: skip
    handles = []
    for _ in pacer:
        if len(handles) < len(requests):
            handles.append(engine.submit(requests[len(handles)]))
    handles += [engine.submit(req) for req in requests[len(handles) :]]
    for req, handle, codes in zip(requests, handles, expected):
        assert torch.equal(handle.result(timeout=300).codes, codes), req
    assert torch.equal(pacer.result().codes, solo_codes(model, processor, pacer._job.request))


def test_long_text_runs_its_chunks_in_one_slot_like_generate_long(engine, model, processor):
    case = "case4_dialogue_multibatch"
    requests = [
        request(case, 5, do_sample=False, max_new_tokens=6, chunk_length=CASES[case]["chunk_length"]),
        request(case, 6, max_new_tokens=5, chunk_length=CASES[case]["chunk_length"]),
    ]
    assert len(processor.chunk_text(requests[0].text, chunk_length=requests[0].chunk_length)) == 2
    handles = [engine.submit(req) for req in requests]
    for req, handle in zip(requests, handles):
        result = handle.result(timeout=300)
        assert torch.equal(result.codes, solo_codes(model, processor, req))


# ---------------------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------------------


def test_audio_stream_concatenates_to_the_decoded_codes(engine, processor):
    handle = engine.submit(request("case2_clone", 3, output="audio", max_new_tokens=9, first_chunk_frames=2,
                                   chunk_frames=3))  # fmt: skip
    chunks = list(handle)
    result = handle.result()
    assert result.frames >= 3  # a first chunk and at least part of a second
    sizes = (
        [2]
        + [3] * ((result.frames - 2) // 3)
        + ([(result.frames - 2) % 3] if (result.frames - 2) % 3 else [])
    )
    assert [len(c) for c in chunks] == [2048 * n for n in sizes]
    assert all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    decoded = processor.decode(result.codes, return_tensors="np")
    assert np.array_equal(result.audio, decoded)  # the non-streamed audio is exactly processor.decode
    np.testing.assert_allclose(np.concatenate(chunks), decoded, atol=1e-5)
    assert result.time_to_first_audio is not None and result.time_to_first_audio > 0


def test_async_iteration_and_result(engine, model, processor):
    req = request("case2_clone", 4, max_new_tokens=8, first_chunk_frames=3, chunk_frames=2)

    async def consume():
        handle = engine.submit(req)
        chunks = [chunk async for chunk in handle]
        return chunks, await handle.aresult()

    chunks, result = asyncio.run(consume())
    assert [c.shape[1] for c in chunks][:2] == [3, 2] and all(
        c.shape[0] == engine.num_codebooks for c in chunks
    )
    assert torch.equal(torch.cat(chunks, dim=1), result.codes)
    assert torch.equal(result.codes, solo_codes(model, processor, req))


def test_a_cancelled_asyncio_consumer_cancels_its_request(engine):
    async def consume(handle):
        async for _ in handle:
            pass

    async def main():
        handle = engine.submit(
            request("case3_dialogue", 5, do_sample=False, max_new_tokens=400, chunk_frames=1)
        )
        task = asyncio.create_task(consume(handle))
        while handle.status != "running":
            await asyncio.sleep(0.01)
        task.cancel()  # what a server does when its client disconnects
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(RequestCancelledError):
            await handle.aresult()

    asyncio.run(main())
    wait_until(lambda: engine.metrics().active_rows == 0)


def test_audio_can_be_streamed_after_the_result(engine, processor):
    handle = engine.submit(
        request("case2_clone", 6, do_sample=False, output="audio", max_new_tokens=4, first_chunk_frames=2)
    )
    result = handle.result(timeout=120)
    chunks = list(handle)  # decoded now, by the audio thread
    assert sum(len(c) for c in chunks) == 2048 * result.frames
    np.testing.assert_allclose(np.concatenate(chunks), result.audio, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# Cancellation, admission, errors
# ---------------------------------------------------------------------------------------------------------


def test_cancel_frees_the_slot_within_one_frame(engine):
    handle = engine.submit(request("case3_dialogue", 1, do_sample=False, max_new_tokens=400, chunk_frames=1))
    stream = iter(handle)
    next(stream)
    assert handle.cancel()
    steps = engine.metrics().steps_total
    wait_until(lambda: handle.status == "cancelled")
    assert engine.metrics().steps_total <= steps + 1 and engine.metrics().active_rows == 0
    with pytest.raises(RequestCancelledError):
        handle.result()
    with pytest.raises(RequestCancelledError):
        next(stream)
    assert not handle.cancel()  # already over


def test_a_dropped_consumer_frees_its_slot(engine):
    for drop in ("break", "del"):
        handle = engine.submit(
            request("case3_dialogue", 2, do_sample=False, max_new_tokens=400, chunk_frames=1)
        )
        job = handle._job
        if drop == "break":
            for _ in handle:
                break
        del handle
        gc.collect()
        wait_until(lambda job=job: job.status == "cancelled")
    wait_until(lambda: engine.metrics().active_rows == 0)


def test_cancel_while_queued_and_queue_full(model, processor):
    with FishS2Engine(model, processor, max_batch_size=1, max_queue_size=1) as engine:
        running = engine.submit(request("case3_dialogue", 1, do_sample=False, max_new_tokens=400))
        wait_until(lambda: running.status == "running")
        queued = engine.submit(request("case1_plain", 1))
        with pytest.raises(QueueFullError, match="max_queue_size=1"):
            engine.submit(request("case1_plain", 2))
        assert queued.cancel() and queued.status == "cancelled"
        running.cancel()
        assert engine.metrics().requests["rejected"] == 1
    with pytest.raises(EngineClosedError):
        engine.submit(request("case1_plain", 3))


BAD_REQUESTS = [
    ("text", dict(text="")),
    ("text", dict(text=7)),
    ("text", dict(text="Say <|im_end|> now")),
    ("text", dict(text="word " * 600)),  # the prompt does not fit max_context
    ("references", dict(references=[{"text": "no audio"}])),
    ("references", dict(references=[{"text": "bad codes", "codes": torch.zeros(3, 4, dtype=torch.long)}])),
    ("seed", dict(seed=-1)),
    ("seed", dict(seed="7")),
    ("do_sample", dict(do_sample="yes")),
    ("temperature", dict(temperature=0.0)),
    ("temperature", dict(temperature=float("nan"))),
    ("top_p", dict(top_p=1.5)),
    ("top_k", dict(top_k=-1)),
    ("ras_top_p", dict(temperature=0.5, ras_top_p=0.0)),
    ("max_new_tokens", dict(max_new_tokens=0)),
    ("repetition_penalty", dict(repetition_penalty=0.0)),
    ("ras_window_size", dict(ras_window_size=1000)),
    ("output", dict(output="mp3")),
    ("first_chunk_frames", dict(first_chunk_frames=0)),
    ("chunk_frames", dict(chunk_frames=2.5)),
    ("chunk_length", dict(chunk_length=-3)),
]


@pytest.mark.parametrize(
    ("field", "change"), BAD_REQUESTS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_REQUESTS)]
)
def test_bad_requests_are_refused_at_submit(engine, field, change):
    fields = dict(text="Hello there.", seed=1) | change
    with pytest.raises(InvalidRequestError) as info:
        engine.submit(SpeechRequest(**fields))
    assert info.value.field == field and str(info.value)


def test_submit_refuses_what_is_not_a_request(engine):
    with pytest.raises(InvalidRequestError, match="SpeechRequest"):
        engine.submit({"text": "hi"})


def test_an_exception_in_the_decode_thread_fails_only_the_affected_requests(model, processor):
    with FishS2Engine(model, processor, max_batch_size=2) as engine:
        session = engine._session
        real_step, real_prefill = session.step, session.prefill
        boom = {"step": 1, "prefill": 1}

        def failing_step():
            if boom["step"]:
                boom["step"] -= 1
                raise RuntimeError("injected step failure")
            return real_step()

        def failing_prefill(slot, input_ids, *args):
            if boom["prefill"] and input_ids.shape[-1] == prefill_length:
                boom["prefill"] -= 1
                raise RuntimeError("injected prefill failure")
            return real_prefill(slot, input_ids, *args)

        session.step = failing_step
        in_step = engine.submit(request("case2_clone", 1, max_new_tokens=5))
        with pytest.raises(RequestFailedError, match="injected step failure"):
            in_step.result(timeout=120)

        victim = request("case1_plain", 2, max_new_tokens=5)
        prefill_length = len(processor(victim.text)["input_ids"][0])
        session.prefill = failing_prefill
        bystander = request("case2_clone", 3, max_new_tokens=5)
        handles = [engine.submit(victim), engine.submit(bystander)]
        with pytest.raises(RequestFailedError, match="injected prefill failure") as info:
            list(handles[0])
        assert isinstance(info.value.__cause__, RuntimeError)
        assert torch.equal(handles[1].result(timeout=120).codes, solo_codes(model, processor, bystander))
        assert engine.running and engine.metrics().requests["failed"] == 2


def test_a_broken_decode_loop_releases_every_waiting_client(model, processor):
    engine = FishS2Engine(model, processor, max_batch_size=1).start()
    running = engine.submit(request("case3_dialogue", 1, do_sample=False, max_new_tokens=400))
    wait_until(lambda: running.status == "running")
    queued = engine.submit(request("case1_plain", 2))
    engine._release_cancelled = lambda: (_ for _ in ()).throw(KeyError("bookkeeping bug"))
    for handle in (running, queued):
        with pytest.raises(RequestFailedError, match="bookkeeping bug"):
            handle.result(timeout=60)
    wait_until(lambda: not engine._thread.is_alive())
    with pytest.raises(EngineClosedError):
        engine.submit(request("case1_plain", 3))
    engine.shutdown()


def test_shutdown_drains_or_fails_what_is_left(model, processor):
    engine = FishS2Engine(model, processor, max_batch_size=1).start()
    running = engine.submit(request("case2_clone", 1, max_new_tokens=3))
    queued = engine.submit(request("case1_plain", 2, max_new_tokens=3))
    engine.shutdown(drain_timeout=120)  # both finish within the grace period
    assert (running.status, queued.status) == ("completed", "completed") and not engine.running
    with pytest.raises(EngineClosedError):
        engine.submit(request("case1_plain", 3))

    engine = FishS2Engine(model, processor, max_batch_size=1).start()
    endless = engine.submit(request("case3_dialogue", 2, do_sample=False, max_new_tokens=400))
    wait_until(lambda: endless.status == "running")
    engine.shutdown()  # no grace: what runs is failed, its client released
    with pytest.raises(EngineClosedError, match="shut down"):
        endless.result(timeout=10)
    engine.shutdown()  # idempotent


def test_metrics(engine):
    before = engine.metrics()
    handle = engine.submit(request("case2_clone", 8, max_new_tokens=6))
    handle.result(timeout=120)
    after = engine.metrics()
    assert after.frames_total - before.frames_total == 6
    assert after.requests["completed"] == before.requests["completed"] + 1
    assert after.max_batch_size == 4 and after.queue_depth == 0 and after.active_rows == 0
    assert (
        after.frames_per_second > 0 and after.time_to_first_audio[-1] == handle.result().time_to_first_audio
    )


# ---------------------------------------------------------------------------------------------------------
# Robustness
# ---------------------------------------------------------------------------------------------------------


def live_tensors() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is torch.Tensor or type(obj) is torch.nn.Parameter)


def test_500_mixed_requests_with_flat_memory(model, processor):
    """Random lengths, options, outputs, cancellations, vanished consumers and bad requests through one
    engine: every good request completes, every bad one is refused with its field, memory stays flat."""
    rng = random.Random(0)
    bad = [(field, change) for field, change in BAD_REQUESTS if isinstance(change.get("text", ""), str)]
    texts = ["Hello there.", "Nice to meet you.", "One, two.", "<|speaker:0|>Hi! <|speaker:1|>Hello."]
    process = psutil.Process()
    counts = dict.fromkeys(("completed", "cancelled", "refused", "queue full"), 0)
    with FishS2Engine(model, processor, max_batch_size=8, max_queue_size=16) as engine:
        pending: list = []  # (kind, job, handle or None once the consumer has vanished)

        def settle(entries):
            for kind, job, handle in entries:
                assert job.finished.wait(120)
                if handle is not None and kind == "good":
                    result = handle.result()
                    assert result.frames <= 2 * job.request.max_new_tokens  # two chunks at most
                    assert (result.audio is None) == (job.request.output == "frames")
                assert job.status in (("completed",) if kind == "good" else ("completed", "cancelled"))
                counts[job.status] += 1

        def submit(req):
            nonlocal pending
            while True:
                try:
                    return engine.submit(req)
                except QueueFullError:  # wait for the oldest requests, then retry
                    counts["queue full"] += 1
                    settle(pending[:8])
                    pending = pending[8:]

        for index in range(500):
            if index == 100:
                settle(pending)
                pending = []
                baseline = (process.memory_info().rss, live_tensors())
            kind = rng.choices(["good", "bad", "cancel", "vanish"], weights=[45, 30, 15, 10])[0]
            if kind == "bad":
                field, change = rng.choice(bad)
                with pytest.raises(InvalidRequestError) as info:
                    submit(SpeechRequest(**(dict(text="Hi.") | change)))
                assert info.value.field == field
                counts["refused"] += 1
                continue
            handle = submit(
                SpeechRequest(
                    rng.choice(texts),
                    seed=rng.randrange(2**32),
                    do_sample=rng.random() < 0.7,
                    temperature=rng.choice([None, 0.6, 1.0]),
                    top_k=rng.choice([None, 0, 5]),
                    repetition_penalty=rng.choice([None, 1.0, 1.2]),
                    max_new_tokens=rng.randint(1, 4),
                    output="audio" if rng.random() < 0.1 else "frames",
                    first_chunk_frames=1,
                    chunk_frames=2,
                )
            )
            if kind == "cancel":
                handle.cancel()
            entry = (kind, handle._job, handle)
            if kind == "vanish":  # the consumer drops the handle: its finalizer cancels the request
                entry, handle = (kind, handle._job, None), None
            pending.append(entry)
        settle(pending)
        pending = []
        metrics = engine.metrics()
        rss, tensors = process.memory_info().rss, live_tensors()
    assert counts["completed"] + counts["cancelled"] + counts["refused"] == 500
    assert counts["cancelled"] > 20 and counts["refused"] > 80 and counts["queue full"] > 0
    assert metrics.active_rows == 0 and metrics.queue_depth == 0
    assert metrics.requests["rejected"] == counts["refused"] + counts["queue full"]
    assert (metrics.requests["completed"], metrics.requests["cancelled"]) == (
        counts["completed"],
        counts["cancelled"],
    )
    assert rss - baseline[0] < 32 * 2**20, f"RSS grew by {(rss - baseline[0]) / 2**20:.1f} MiB"
    assert tensors - baseline[1] <= 4, f"{tensors - baseline[1]} more live tensors"


def test_compiled_engine_equals_solo_generate(processor):
    """The compiled engine step (aot_eager: the graph inductor would compile, without minutes of kernel
    generation on CI's cores) gives every request the codes of a solo eager generate(), greedy and sampled,
    while the batch changes as requests finish and join."""
    from torch._dynamo.utils import counters
    from transformers.generation.configuration_utils import CompileConfig

    from transformers_fish_s2 import FishS2ForConditionalGeneration

    model = FishS2ForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32).eval()
    model.generation_config.compile_config = CompileConfig(backend="aot_eager", mode=None)
    torch._dynamo.reset()
    counters.clear()
    requests = mixed_requests(5, seed0=40)
    expected = [solo_codes(model, processor, req) for req in requests]
    assert sum(codes.shape[1] for codes in expected) >= 10  # the comparison covers real frames
    with FishS2Engine(model, processor, max_batch_size=2, compile=True) as engine:
        results = [handle.result(timeout=300) for handle in [engine.submit(req) for req in requests]]
    assert 1 <= counters["stats"]["unique_graphs"] <= 2  # compiled, and not once per attended length
    for req, result, codes in zip(requests, results, expected):
        assert torch.equal(result.codes, codes), req
