"""Threads: what may be shared between concurrent requests, and what it gives (docs/reliability.md).

Rule: ``generate`` reuses per-model decode buffers (KV caches, frame buffers) across calls, so concurrent calls
on one model are serialised by a per-model lock; serve with one model per worker for parallelism. The
processor (its reference-code cache is locked), the codec and plain ``forward`` are safe to share.
Every test compares the threaded results with the same requests run one after the other (greedy decoding, so
the results do not depend on which thread draws random numbers first).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import torch
from conftest import TINY

from transformers_fish_s2 import FishS2ForConditionalGeneration

TEXTS = ["Nice to meet you. How are you today?", "Hello there, how is it going with you?"]
GREEDY = {"do_sample": False, "max_new_tokens": 12}
ROUNDS = 3


def run_together(jobs: list[Callable[[], object]]) -> list[object]:
    """Run the jobs in threads released at the same moment; re-raise the first error."""
    results: list[object] = [None] * len(jobs)
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def work(index: int) -> None:
        start.wait()
        try:
            results[index] = jobs[index]()
        except BaseException as error:  # surfaced in the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread hung (deadlock?)"
    if errors:
        raise errors[0]
    return results


def test_generate_from_two_threads_on_one_model_gives_the_sequential_results(model, processor):
    prompts = [processor(text) for text in TEXTS]
    expected = [model.generate(**prompt, **GREEDY).sequences for prompt in prompts]
    for _ in range(ROUNDS):
        results = run_together([lambda p=p: model.generate(**p, **GREEDY).sequences for p in prompts])
        for got, want in zip(results, expected):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_one_model_per_worker_runs_in_parallel_with_the_sequential_results(model, processor):
    other = FishS2ForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32)
    prompts = [processor(text) for text in TEXTS]
    expected = [model.generate(**prompt, **GREEDY).sequences for prompt in prompts]
    for _ in range(ROUNDS):
        results = run_together(
            [lambda m=m, p=p: m.generate(**p, **GREEDY).sequences for m, p in zip((model, other), prompts)]
        )
        for got, want in zip(results, expected):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_forward_codec_and_processor_are_safe_to_share(model, processor):
    voices = [np.random.default_rng(seed).uniform(-0.5, 0.5, 4096).astype(np.float32) for seed in range(4)]

    def request(index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        reference = {"text": "A reference.", "audio": voices[index % len(voices)], "sampling_rate": 44100}
        inputs = processor(TEXTS[index % 2], references=[reference])
        logits = model(**inputs).logits
        audio = processor.codec.decode(inputs["audio_codes"][:, :, -8:]).audio_values
        return inputs["audio_codes"], logits, audio

    processor._reference_encoder.clear()
    expected = [request(i) for i in range(6)]
    for _ in range(ROUNDS):
        processor._reference_encoder.clear()  # threads race to encode, hit and evict the same voices
        results = run_together([lambda i=i: request(i) for i in range(6)])
        for got, want in zip(results, expected):
            for got_tensor, want_tensor in zip(got, want):
                torch.testing.assert_close(got_tensor, want_tensor, rtol=0, atol=0)
