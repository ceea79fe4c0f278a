"""FishS2Engine against sequential and static-batch generate(): aggregate frames/s and time to first audio.

The ``small`` S2-shaped config of ``bench_generate.py`` (random weights, ``<|im_end|>`` pinned off so every
request makes exactly ``--frames`` frames), greedy. Its token ids are moved onto the fixture tokenizer, which
gets 1024 ``<|semantic:N|>`` tokens, so the engine's processor builds real prompts: each request clones a
voice (a ~100-frame reference given as codes) and speaks a short text, ~200 prompt tokens in all.

For each number of concurrent requests ``c`` and each arrival pattern (``burst``: all at t=0; ``poisson``:
exponential gaps with mean ``solo request time / c``), the same ``c`` requests are served three ways, side
by side in one run:

* ``sequential``: one ``generate()`` per request, first come first served;
* ``static``: ``generate()`` on batches of the requests that have arrived when the previous batch ends;
* ``engine``: ``FishS2Engine.submit`` at each arrival (``max_batch_size=c``).

Columns: aggregate frames/s (all frames / time from the first arrival to the last completion) and time to
first audio (arrival → the first ``--first-chunk-frames`` frames exist; the codec's decode of that chunk is
a constant on top, printed once). ``join`` measures one request arriving at an engine already busy with
``c-1`` long requests: its first frame vs its own prefill + one frame step. The machine is shared: compare
ratios within one run, not absolute numbers across runs.

    .venv/bin/python benchmarks/bench_engine.py --threads 1
    .venv/bin/python benchmarks/bench_engine.py --concurrency 1 8 --arrivals burst
    .venv/bin/python benchmarks/bench_engine.py --device cuda --dtype bfloat16 --config full --concurrency 1 8 32
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from tokenizers import AddedToken
from transformers import AutoTokenizer
from transformers.generation.streamers import BaseStreamer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generate import CONFIGS, build_model, synchronize, timed_generate  # noqa: E402

from transformers_fish_s2 import FishS2Processor  # noqa: E402
from transformers_fish_s2.codec import FishS2CodecConfig, FishS2CodecModel  # noqa: E402
from transformers_fish_s2.serving import FishS2Engine, SpeechRequest  # noqa: E402

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "s2-tiny-a"
TEXTS = [
    "The quick brown fox jumps over the lazy dog while the band plays on.",
    "Please remember to bring the blue folder to tomorrow's meeting.",
    "A gentle breeze drifted through the open window of the old library.",
    "Numbers like forty-two and seventeen appear in every good story.",
]


def build(config_name: str, device: torch.device, dtype: torch.dtype):
    """The model with the fixture tokenizer's ids and a processor whose tokenizer has its semantic tokens."""
    tokenizer = AutoTokenizer.from_pretrained(FIXTURE)
    config = CONFIGS[config_name]()
    size = config.codebook_size
    first = tokenizer.convert_tokens_to_ids("<|semantic:0|>")
    have = sum(1 for token in tokenizer.get_added_vocab() if token.startswith("<|semantic:"))
    tokenizer.add_tokens(
        [AddedToken(f"<|semantic:{i}|>", special=True, normalized=False) for i in range(have, size)],
        special_tokens=True,
    )
    config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config.pad_token_id = tokenizer.convert_tokens_to_ids("<|pad|>")
    config.audio_pad_token_id = tokenizer.convert_tokens_to_ids("<|audio_pad|>")
    config.semantic_start_token_id, config.semantic_end_token_id = first, first + size - 1
    assert first + size <= config.text_config.vocab_size
    model = build_model(config_name, device, dtype, config=config)
    processor = FishS2Processor(tokenizer, None, num_codebooks=config.num_codebooks, codebook_size=size)
    return model, processor


def make_requests(model, count: int, frames: int, first_chunk: int, seed: int) -> list[SpeechRequest]:
    generator = torch.Generator().manual_seed(seed)
    config = model.config
    requests = []
    for index in range(count):
        codes = torch.randint(0, config.codebook_size, (config.num_codebooks, 100), generator=generator)
        reference = {"text": "This is the voice to clone for the benchmark.", "codes": codes}
        requests.append(
            SpeechRequest(
                TEXTS[index % len(TEXTS)], [reference], seed=index, do_sample=False, max_new_tokens=frames,
                output="frames", first_chunk_frames=first_chunk, chunk_frames=frames,
            )
        )  # fmt: skip
    return requests


def arrival_times(kind: str, count: int, mean_gap: float, seed: int) -> list[float]:
    if kind == "burst":
        return [0.0] * count
    rng, now, times = random.Random(seed), 0.0, []
    for _ in range(count):
        times.append(now)
        now += rng.expovariate(1 / mean_gap)
    return times


class _FrameClock(BaseStreamer):
    """Notes when the n-th frame of a batch-1 generate() exists (or the last, if there are fewer)."""

    def __init__(self, n: int):
        self.n, self.seen, self.at = n, 0, None

    def put(self, value):
        self.seen += value.shape[-1]
        if self.at is None and self.seen >= self.n:
            self.at = time.perf_counter()

    def end(self):
        if self.at is None:
            self.at = time.perf_counter()


def prompt_of(processor, requests):
    return processor([r.text for r in requests], [r.references for r in requests])


def wait_until(start: float, offset: float) -> None:
    delay = start + offset - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def run_sequential(model, processor, requests, arrivals, first_chunk: int, device):
    start, ttfa, frames = time.perf_counter(), [], 0
    for request, arrival in zip(requests, arrivals):
        wait_until(start, arrival)
        clock = _FrameClock(first_chunk)
        out = model.generate(**prompt_of(processor, [request]).to(device), do_sample=False,
                             max_new_tokens=request.max_new_tokens, streamer=clock)  # fmt: skip
        synchronize(device)
        ttfa.append(clock.at - (start + arrival))
        frames += int(out.lengths.sum())
    return frames / (time.perf_counter() - start), ttfa


def run_static(model, processor, requests, arrivals, first_chunk: int, device):
    """Batches of whatever has arrived when the previous batch ends; TTFA from the batch's measured
    prefill and mean step time."""
    start, ttfa, frames, done = time.perf_counter(), [], 0, 0
    while done < len(requests):
        wait_until(start, arrivals[done])
        now = time.perf_counter() - start
        batch = [i for i in range(done, len(requests)) if arrivals[i] <= now]
        inputs = prompt_of(processor, [requests[i] for i in batch]).to(device)
        prompt = (inputs["input_ids"], inputs["audio_codes"], inputs["attention_mask"])
        began = time.perf_counter()
        total, prefill, lengths = timed_generate(
            model, prompt, device, do_sample=False, max_new_tokens=requests[0].max_new_tokens
        )
        step = (total - prefill) / max(requests[0].max_new_tokens - 1, 1)
        first = began + prefill + (first_chunk - 1) * step
        ttfa += [first - (start + arrivals[i]) for i in batch]
        frames += int(lengths.sum())
        done += len(batch)
    return frames / (time.perf_counter() - start), ttfa


def run_engine(engine, requests, arrivals):
    start, handles = time.perf_counter(), []
    for request, arrival in zip(requests, arrivals):
        wait_until(start, arrival)
        handles.append(engine.submit(request))
    results = [handle.result() for handle in handles]
    elapsed = time.perf_counter() - start
    return sum(r.frames for r in results) / elapsed, [r.time_to_first_audio for r in results]


def join_latency(engine, model, processor, requests, device) -> tuple[float, float, float]:
    """One request joining an engine busy with the others: (time to its first frame, its prefill alone,
    one frame step of the busy engine)."""
    busy = [engine.submit(SpeechRequest(**{**vars(r), "max_new_tokens": 10**6})) for r in requests[1:]]
    while engine.metrics().steps_total < 3:
        time.sleep(0.01)
    steps_before, began = engine.metrics().steps_total, time.perf_counter()
    while engine.metrics().steps_total < steps_before + 3:
        time.sleep(0.01)
    step = (time.perf_counter() - began) / (engine.metrics().steps_total - steps_before)
    began = time.perf_counter()
    joiner = engine.submit(SpeechRequest(**{**vars(requests[0]), "first_chunk_frames": 1}))
    next(iter(joiner))
    first_frame = time.perf_counter() - began
    for handle in [joiner, *busy]:
        handle.cancel()
    prompt = prompt_of(processor, requests[:1]).to(device)
    began = time.perf_counter()
    with torch.no_grad():
        model(**prompt, logits_to_keep=1)
    synchronize(device)
    return first_frame, time.perf_counter() - began, step


def codec_chunk_ms(device, dtype, frames: int) -> float:
    codec = FishS2CodecModel(FishS2CodecConfig(decoder_only=True)).to(device=device, dtype=dtype).eval()
    codes = torch.zeros(1, codec.config.num_codebooks, frames, dtype=torch.long, device=device)
    decoder = codec.streaming_decoder()
    decoder.decode_chunk(codes)
    synchronize(device)
    began = time.perf_counter()
    codec.streaming_decoder().decode_chunk(codes)
    synchronize(device)
    return 1000 * (time.perf_counter() - began)


def ms(values: list[float], q: float) -> str:
    return f"{1000 * statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else 1000 * values[0]:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="small", choices=list(CONFIGS))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--arrivals", nargs="+", default=["burst", "poisson"], choices=["burst", "poisson"])
    parser.add_argument("--frames", type=int, default=64, help="frames per request")
    parser.add_argument("--first-chunk-frames", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="default: float32 on CPU, bfloat16 on CUDA")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--row-major", action="store_true", help="model.cpu_weight_layout = False (no automatic CPU layout)"
    )
    parser.add_argument("--compile", action="store_true", help="compiled generate() and engine step")
    parser.add_argument(
        "--max-context", type=int, default=None,
        help="the engine's cache positions per slot (default: the engine's own, min(model context, 4096))",
    )  # fmt: skip
    parser.add_argument(
        "--sequential-max", type=int, default=None, metavar="C",
        help="burst arrivals: run the sequential baseline only up to C concurrent requests (one at a time it "
        "runs at the solo rate at any C; larger C reuse the last measured rate, marked *)",
    )  # fmt: skip
    parser.add_argument(
        "--time-limit", type=float, default=None, metavar="S",
        help="start no new table row (or the join measurement) after S seconds; the rest print as skipped",
    )  # fmt: skip
    parser.add_argument(
        "--skip-codec", action="store_true", help="do not time the codec's first-chunk decode"
    )
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = (
        getattr(torch, args.dtype)
        if args.dtype
        else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    )
    model, processor = build(args.config, device, dtype)
    model.cpu_weight_layout = not args.row_major
    mode = "compiled" if args.compile else "eager"
    print(
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, device {device}, "
        f"dtype {str(dtype).removeprefix('torch.')}, torch {torch.__version__}, {args.config} config "
        f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M), {mode}, greedy, {args.frames} frames/request, "
        f"TTFA = first {args.first_chunk_frames} frames\n"
    )
    if not args.skip_codec:
        print(f"codec decode of a {args.first_chunk_frames}-frame first chunk (random full-size decoder): "
              f"{codec_chunk_ms(device, dtype, args.first_chunk_frames):.0f} ms, on top of every TTFA below\n")  # fmt: skip

    warm = make_requests(model, 1, args.frames, args.first_chunk_frames, seed=99)
    began = time.perf_counter()
    run_sequential(model, processor, warm, [0.0], args.first_chunk_frames, device)
    solo_seconds = time.perf_counter() - began

    print("| arrivals | concurrent | sequential fr/s | static fr/s | engine fr/s | engine / sequential | "
          "TTFA p50 ms seq / static / engine | TTFA max ms seq / static / engine |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    deadline = time.monotonic() + args.time_limit if args.time_limit else float("inf")
    engine_kwargs = dict(compile=args.compile, max_context=args.max_context)
    reused = False
    for kind in args.arrivals:
        last_seq = None
        for concurrent in args.concurrency:
            if time.monotonic() > deadline:
                print(f"| {kind} | {concurrent} | skipped: --time-limit {args.time_limit:g} s reached | | | | | |",
                      flush=True)  # fmt: skip
                continue
            requests = make_requests(model, concurrent, args.frames, args.first_chunk_frames, seed=concurrent)
            arrivals = arrival_times(kind, concurrent, solo_seconds / concurrent, seed=concurrent)
            measure = args.sequential_max is None or concurrent <= args.sequential_max or last_seq is None
            if measure or kind != "burst":
                seq_fps, seq_ttfa = run_sequential(
                    model, processor, requests, arrivals, args.first_chunk_frames, device
                )
                last_seq, seq_mark = seq_fps, ""
                seq_p50, seq_max = ms(seq_ttfa, 50), f"{1000 * max(seq_ttfa):.0f}"
            else:  # a burst served one at a time: same rate; its TTFA grows with the queue, so not reused
                seq_fps, seq_mark, reused = last_seq, "*", True
                seq_p50 = seq_max = "-"
            static_fps, static_ttfa = run_static(
                model, processor, requests, arrivals, args.first_chunk_frames, device
            )
            with FishS2Engine(model, processor, max_batch_size=concurrent, **engine_kwargs) as engine:
                run_engine(engine, warm, [0.0])
                engine_fps, engine_ttfa = run_engine(engine, requests, arrivals)
            print(
                f"| {kind} | {concurrent} | {seq_fps:.2f}{seq_mark} | {static_fps:.2f} | {engine_fps:.2f} | "
                f"{engine_fps / seq_fps:.2f}x{seq_mark} | {seq_p50} / {ms(static_ttfa, 50)} / "
                f"{ms(engine_ttfa, 50)} | {seq_max} / {1000 * max(static_ttfa):.0f} / "
                f"{1000 * max(engine_ttfa):.0f} |",
                flush=True,
            )
    if reused:
        print(f"\n* the sequential rate measured at the largest concurrency <= {args.sequential_max}, reused "
              "(--sequential-max): one request at a time runs at the solo rate whatever the concurrency; "
              "its TTFA is not reused (-)")  # fmt: skip
    concurrent = max(args.concurrency)
    if concurrent > 1 and time.monotonic() > deadline:
        print(f"\njoin: skipped (--time-limit {args.time_limit:g} s reached)")
    elif concurrent > 1:
        requests = make_requests(model, concurrent, args.frames, args.first_chunk_frames, seed=7)
        with FishS2Engine(model, processor, max_batch_size=concurrent, **engine_kwargs) as engine:
            run_engine(engine, warm, [0.0])
            first, prefill, step = join_latency(engine, model, processor, requests, device)
        print(
            f"\njoin: a request arriving at an engine busy with {concurrent - 1} others got its first frame after "
            f"{1000 * first:.0f} ms; its prefill alone takes {1000 * prefill:.0f} ms and one frame step of the busy "
            f"engine {1000 * step:.0f} ms (sum {1000 * (prefill + step):.0f} ms)"
        )


if __name__ == "__main__":
    main()
