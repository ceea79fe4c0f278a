"""The speech server under load on loopback: requests/s, audio-seconds per second and time to first audio at
several concurrencies, against the same requests sent one at a time, side by side in one run.

The server runs in its own process (this script started with ``--serve``): the ``small`` S2-shaped config of
``bench_generate.py`` (random weights, ``<|im_end|>`` pinned off, so every request makes exactly ``--frames``
frames) with the engine, and a small random codec decoder (the fixture's widths, 1024-entry codebooks): the
real-size decoder makes 0.2 audio-seconds per second on one CPU thread, so on a CPU it, not the model,
would be measured. Every request clones a saved voice (~100 reference frames, a ~200-token prompt) and
streams 16-bit PCM (``stream_format="audio"``).

For each concurrency ``c`` the load generator runs ``c`` clients in a closed loop (each sends its next request
when its last one ended) until ``max(--requests, c)`` requests are done; the clients start ``T / c`` apart
(``T`` = one request alone), as users arrive, rather than all at one instant. ``c = 1`` is the same requests
sent one at a time. The levels are interleaved over ``--rounds`` passes, so the drift of a shared machine
hits them alike; each row sums its rounds. Time to first audio = request sent → the first audio bytes
received.

    .venv/bin/python benchmarks/bench_server.py
    .venv/bin/python benchmarks/bench_server.py --concurrency 1 8 --rounds 3 --frames 64
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import TEXTS, build  # noqa: E402

from transformers_fish_s2 import FishS2Processor  # noqa: E402
from transformers_fish_s2.codec import FishS2CodecConfig, FishS2CodecModel  # noqa: E402

RATE = 44100
VOICE = "bench"


def small_codec(codebook_size: int) -> FishS2CodecModel:
    """A random decoder-only codec with the fixture's widths and ``codebook_size`` entries per codebook."""
    torch.manual_seed(0)
    config = FishS2CodecConfig(
        decoder_only=True, encoder_dim=4, decoder_dim=64, semantic_codebook_size=codebook_size,
        codebook_size=codebook_size, quantizer_transformer_layers=2, quantizer_transformer_heads=4,
        quantizer_transformer_head_dim=16, quantizer_transformer_intermediate_size=192,
        quantizer_transformer_window_size=16,
    )  # fmt: skip
    return FishS2CodecModel(config).eval()


def serve(args: argparse.Namespace) -> None:
    """The server process: model, codec, a saved voice, the app under uvicorn."""
    from transformers_fish_s2.serving import FishS2Engine
    from transformers_fish_s2.serving.app import create_app
    from transformers_fish_s2.serving.server import run
    from transformers_fish_s2.serving.voices import VoiceStore

    torch.set_num_threads(args.threads)
    model, processor = build("small", torch.device("cpu"), torch.float32)
    config = model.config
    processor = FishS2Processor(
        processor.tokenizer, small_codec(config.codebook_size), num_codebooks=config.num_codebooks,
        codebook_size=config.codebook_size,
    )  # fmt: skip
    voices = VoiceStore(args.voices_dir)
    codes = torch.randint(
        0, config.codebook_size, (config.num_codebooks, 100), generator=torch.Generator().manual_seed(0)
    )
    voices.add(
        VOICE, codes, "This is the voice to clone for the benchmark.", sampling_rate=RATE, overwrite=True
    )
    engine = FishS2Engine(model, processor, max_batch_size=args.max_batch_size, max_queue_size=64)
    run(create_app(engine, voices), host="127.0.0.1", port=args.port, drain_seconds=1, log_level="warning")


def one_request(client: httpx.Client, url: str, index: int, frames: int) -> tuple[float, int]:
    """(time to first audio, audio bytes) of one streamed request."""
    body = {"model": "s2-pro", "input": TEXTS[index % len(TEXTS)], "voice": VOICE, "response_format": "pcm",
            "stream_format": "audio", "seed": index, "max_new_tokens": frames}  # fmt: skip
    began, first, size = time.perf_counter(), None, 0
    with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            if chunk and first is None:
                first = time.perf_counter() - began
            size += len(chunk)
    return first, size


def load(url: str, concurrency: int, requests: int, frames: int, gap: float, timeout: float) -> dict:
    """``concurrency`` clients, started ``gap`` seconds apart, each sending its next request as soon as its last
    one ended, until ``requests`` requests are done."""
    pending = list(range(requests))
    lock = threading.Lock()
    ttfa, sizes = [], []

    def client_loop(start: float) -> None:
        time.sleep(start)
        with httpx.Client(timeout=timeout) as client:
            while True:
                with lock:
                    if not pending:
                        return
                    index = pending.pop(0)
                first, size = one_request(client, url, index, frames)
                with lock:
                    ttfa.append(first)
                    sizes.append(size)

    began = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(i * gap,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert len(sizes) == requests, "the load did not finish in time"
    return {
        "wall": time.perf_counter() - began,
        "audio": sum(sizes) / 2 / RATE,
        "ttfa": ttfa,
        "requests": requests,
    }


def summary(runs: list[dict]) -> dict:
    """One level over all rounds: totals, and quantiles of every request's time to first audio."""
    wall = sum(run["wall"] for run in runs)
    ttfa = [value for run in runs for value in run["ttfa"]]
    quantiles = statistics.quantiles(ttfa, n=100)
    return {"wall": wall, "rps": sum(run["requests"] for run in runs) / wall,
            "audio_rate": sum(run["audio"] for run in runs) / wall, "p50": quantiles[49], "p95": quantiles[94]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--requests", type=int, default=8, help="requests per level and round (at least c)")
    parser.add_argument("--rounds", type=int, default=2, help="passes over all levels, interleaved")
    parser.add_argument("--frames", type=int, default=48, help="frames per request (21.5 frames = 1 s)")
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one level may take")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=8321)
    parser.add_argument("--voices-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return

    with tempfile.TemporaryDirectory() as voices_dir:
        command = [sys.executable, __file__, "--serve", "--port", str(args.port), "--voices-dir", voices_dir,
                   "--max-batch-size", str(args.max_batch_size), "--threads", str(args.threads)]  # fmt: skip
        server = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        base = f"http://127.0.0.1:{args.port}"
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the benchmark server did not start")
                time.sleep(0.5)
            url = f"{base}/v1/audio/speech"
            with httpx.Client(timeout=args.timeout) as client:
                one_request(client, url, 0, 8)  # warm-up
                began = time.perf_counter()
                one_request(client, url, 0, args.frames)
                solo = time.perf_counter() - began  # one request alone: clients start solo / c apart
            levels = list(dict.fromkeys([1, *args.concurrency]))
            runs: dict[int, list[dict]] = {c: [] for c in levels}
            for _ in range(args.rounds):  # levels interleaved, so the machine's drift hits them alike
                for c in levels:
                    count = max(args.requests, c)
                    runs[c].append(load(url, c, count, args.frames, solo / c, args.timeout))
        finally:
            server.terminate()
            server.wait(60)

    rows = {c: summary(level_runs) for c, level_runs in runs.items()}
    base = rows[1]
    print(f"small config, CPU, {args.threads} torch thread(s) in the server, max_batch_size {args.max_batch_size}, "
          f"{args.rounds} rounds x max({args.requests}, c) requests x {args.frames} frames "
          f"({args.frames * 2048 / RATE:.2f} s audio) per level; one request alone {solo:.1f} s; "
          f"{platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.1f} at the end")  # fmt: skip
    per_round = ", ".join(f"{run['audio'] / run['wall']:.3f}" for run in runs[1])
    print(f"one at a time, audio s/s in each round (drift): {per_round}")
    print(
        "| concurrency | requests/s | audio s/s | x one at a time | TTFA p50 ms | TTFA p95 ms | p95 / c=1 |"
    )
    print("|---|---|---|---|---|---|---|")
    for c, row in rows.items():
        print(f"| {c} | {row['rps']:.2f} | {row['audio_rate']:.2f} | {row['audio_rate'] / base['audio_rate']:.2f} | "
              f"{1000 * row['p50']:.0f} | {1000 * row['p95']:.0f} | {row['p95'] / base['p95']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
