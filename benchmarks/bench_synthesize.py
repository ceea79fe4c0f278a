"""fish-s2 synthesize throughput: audio-seconds made per wall second with 1 and 2 processes.

The ``small`` S2-shaped config of ``bench_generate.py`` (random weights, ``<|im_end|>`` pinned off so every
row makes exactly ``--frames`` frames) with ``bench_engine.py``'s tokenizer, and a shrunken random codec
with the same codebook sizes (its decode is much cheaper than s2-pro's codec). Every row clones one of two
voices given as codes. Each setting runs as fresh processes (``torchrun`` for several, gloo on CPU) doing the
whole job: rows through ``FishS2Engine``, codec decode, WAV encoding and Parquet shards. The wall time is
the main process's from its first shard to the manifest (model building and imports are not counted).

    .venv/bin/python benchmarks/bench_synthesize.py                      # 1 process x 1 thread, 2 x 1, 1 x 2
    .venv/bin/python benchmarks/bench_synthesize.py --rows 64 --frames 64 --batch 16
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import TEXTS, build  # noqa: E402

from transformers_fish_s2.codec import FishS2CodecConfig, FishS2CodecModel  # noqa: E402
from transformers_fish_s2.synthesis import Row, process_state, synthesize  # noqa: E402

SETTINGS = ((1, 1), (2, 1), (1, 2))  # (processes, torch threads per process)


def small_codec(codebook_size: int) -> FishS2CodecModel:
    """A random decoder-only codec with the small config's codebook sizes and the real 44.1 kHz framing."""
    torch.manual_seed(0)
    config = FishS2CodecConfig(
        decoder_only=True, semantic_codebook_size=codebook_size, codebook_size=codebook_size, decoder_dim=64,
        quantizer_transformer_layers=1, quantizer_transformer_heads=4, quantizer_transformer_intermediate_size=512,
    )  # fmt: skip
    return FishS2CodecModel(config).eval()


def job_rows(model, count: int) -> list[Row]:
    generator = torch.Generator().manual_seed(0)
    config = model.config
    voices = [
        [{"text": "This is the voice to clone.", "codes": torch.randint(0, config.codebook_size, (10, 100),
                                                                          generator=generator)}]
        for _ in range(2)
    ]  # fmt: skip
    return [Row(i, TEXTS[i % len(TEXTS)], f"voice{i % 2}", i, voices[i % 2]) for i in range(count)]


def worker(args: argparse.Namespace) -> None:
    """One process of the job; the main one prints the result as a JSON line."""
    torch.set_num_threads(args.threads)
    model, processor = build("small", torch.device("cpu"), torch.float32)
    processor.codec = small_codec(model.config.codebook_size)
    state, _ = process_state("cpu")
    summary = synthesize(
        model, processor, job_rows(model, args.rows), args.out,
        generation={"do_sample": False, "max_new_tokens": args.frames}, shard_size=args.shard_size,
        max_batch_size=args.batch, state=state,
    )  # fmt: skip
    if summary.manifest is not None:
        print(json.dumps({"audio_seconds": summary.manifest["audio_seconds"], "seconds": summary.seconds}))


def launch(args: argparse.Namespace, processes: int, threads: int, out: Path) -> dict:
    script = [str(Path(__file__).resolve()), "--worker", "--out", str(out), "--threads", str(threads)]
    script += ["--rows", str(args.rows), "--frames", str(args.frames), "--batch", str(args.batch)]
    script += ["--shard-size", str(args.shard_size)]
    if processes == 1:
        command = [sys.executable, *script]
    else:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}",
                   f"--master-port={port}", "--master-addr=127.0.0.1", *script]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--frames", type=int, default=32, help="frames per row (21.5 frames = 1 s of audio)")
    parser.add_argument("--batch", type=int, default=8, help="engine batch per process")
    parser.add_argument("--shard-size", type=int, default=4)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print(f"small config, CPU fp32, {args.rows} rows x {args.frames} frames, engine batch {args.batch}; "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start")  # fmt: skip
    print("| processes x threads | audio s | wall s | audio-s per wall s | vs 1 x 1 |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        base = None
        for processes, threads in SETTINGS:
            result = launch(args, processes, threads, Path(folder) / f"{processes}x{threads}-{time.time_ns()}")
            rate = result["audio_seconds"] / result["seconds"]
            base = base or rate
            print(f"| {processes} x {threads} | {result['audio_seconds']:.1f} | {result['seconds']:.1f} | "
                  f"{rate:.2f} | {rate / base:.2f}x |", flush=True)  # fmt: skip
    print(f"load {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
