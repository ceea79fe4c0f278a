"""Codec decode speed and memory: full-size (random-init) S2 codec, CPU by default.

Measures a full decode of N seconds of codes (wall time, real-time factor, peak RSS) and streaming
decode (first-chunk latency and total time for several chunk sizes). Random weights exercise exactly
the same compute as the real checkpoint.

    .venv/bin/python benchmarks/bench_codec.py                 # 10 s of codes, fp32, decoder-only
    .venv/bin/python benchmarks/bench_codec.py --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time

import psutil
import torch

from transformers_fish_s2.codec import FishS2CodecConfig, FishS2CodecModel


def peak_rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def current_rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length to decode")
    parser.add_argument(
        "--chunk-frames", type=int, nargs="+", default=[1, 4, 16], help="streaming chunk sizes"
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--with-encoder", action="store_true", help="build the encoder too (not used for decoding)"
    )
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)

    rss_start = current_rss_mib()
    start = time.perf_counter()
    config = FishS2CodecConfig(decoder_only=not args.with_encoder)
    codec = FishS2CodecModel(config).to(device=device, dtype=dtype).eval()
    build_s = time.perf_counter() - start
    params = sum(p.numel() for p in codec.parameters())
    rss_model = current_rss_mib()

    frames = math.ceil(args.seconds * config.frame_rate)
    audio_s = frames * config.frame_length / config.sampling_rate
    generator = torch.Generator().manual_seed(0)
    codes = torch.stack(
        [torch.randint(0, config.semantic_codebook_size, (1, frames), generator=generator)]
        + [
            torch.randint(0, config.codebook_size, (1, frames), generator=generator)
            for _ in range(config.num_codebooks - 1)
        ],
        dim=1,
    ).to(device)

    print(
        f"device {device} ({torch.get_num_threads()} threads), dtype {args.dtype}, torch {torch.__version__}"
    )
    print(
        f"codec: {params / 1e6:.1f} M params ({'full' if args.with_encoder else 'decoder-only'}), built in "
        f"{build_s:.1f} s; RSS {rss_start:.0f} -> {rss_model:.0f} MiB"
    )
    print(f"codes: {frames} frames = {audio_s:.2f} s of audio at {config.sampling_rate} Hz\n")

    rows = []
    with torch.inference_mode():
        codec.decode(codes[..., :2])  # warm-up (allocator, kernels)
        # Streaming first, so that the peak RSS of its rows is not the full decode's high-water mark.
        for chunk in args.chunk_frames:
            stream = codec.streaming_decoder()
            synchronize(device)
            start = time.perf_counter()
            first = None
            for offset in range(0, frames, chunk):
                stream.decode_chunk(codes[..., offset : offset + chunk])
                synchronize(device)
                if first is None:
                    first = time.perf_counter() - start
            wall = time.perf_counter() - start
            chunk_ms = 1000 * chunk * config.frame_length / config.sampling_rate
            rows.append(
                (
                    f"streaming, {chunk} frame(s)/chunk",
                    f"{chunk_ms:.1f}",
                    f"{1000 * first:.1f}",
                    wall,
                    wall / audio_s,
                    peak_rss_mib(),
                )
            )

        synchronize(device)
        start = time.perf_counter()
        audio = codec.decode(codes).audio_values
        synchronize(device)
        wall = time.perf_counter() - start
        assert audio.shape[-1] == frames * config.frame_length
        rows.append(("full decode", "-", "-", wall, wall / audio_s, peak_rss_mib()))

    print("| mode | audio per chunk (ms) | first-chunk latency (ms) | wall (s) | RTF | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode, chunk_ms, first_ms, wall, rtf, rss in rows:
        print(f"| {mode} | {chunk_ms} | {first_ms} | {wall:.2f} | {rtf:.3f} | {rss:.0f} |")
    print(
        "\nRTF = wall time / audio duration (< 1 is faster than real time). Peak RSS is the process high-water "
        "mark (model weights included)."
    )


if __name__ == "__main__":
    main()
