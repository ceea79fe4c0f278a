"""Generation speed and memory: frames/s, RTF, time to first audio, peak memory (random-init models).

Configs: ``tiny`` (the parity fixture's shapes), ``small`` (a ~43M S2-shaped config: slow AR
512 x 8 layers, fast AR 512 x 4 layers, 8 query / 2 KV heads of 64, FFN 1536, 1024-entry codebooks,
4096-token context) and ``full`` (s2-pro's shapes, 4.6B parameters: a GPU's config; on a CPU it needs ~10 GB
of memory in bf16 and makes about a frame a second, so keep ``--frames`` and ``--prompt-length`` small).
Random weights run exactly the compute of trained ones; the ``<|im_end|>`` logit is pinned to zero so every
row makes the requested number of frames.

    .venv/bin/python benchmarks/bench_generate.py                        # small, CPU, eager + compiled, batch 1 and 4
    .venv/bin/python benchmarks/bench_generate.py --configs tiny small --modes eager --threads 1
    .venv/bin/python benchmarks/bench_generate.py --row-major --batch 1     # without the automatic CPU layout
    .venv/bin/python benchmarks/bench_generate.py --configs full --device cuda --dtype bfloat16 --batch 1
    .venv/bin/python benchmarks/bench_generate.py --against-reference ../fish-speech --prompt-length 199

Columns: ``prefill ms`` (prompt forward + first frame), ``frames/s`` (decode steps per second; each step
makes one frame per row), ``total fr/s`` (frames/s x batch), ``RTF`` (generate wall time / seconds of audio
per row, 21.53 frames per audio second), ``TTFA ms`` (batch 1: generate() call to the first audio chunk
of ``--first-chunk-frames`` frames out of ``FishS2AudioStreamer``, codec decode included), ``KV MiB`` (the
decode state's caches), ``peak MiB`` (CUDA: max allocated; CPU: the process's peak RSS so far).
"""

from __future__ import annotations

import argparse
import itertools
import resource
import sys
import threading
import time

import torch
from transformers.generation.configuration_utils import CompileConfig

from transformers_fish_s2.codec import FishS2CodecConfig, FishS2CodecModel
from transformers_fish_s2.modeling import FishS2Config, FishS2ForConditionalGeneration
from transformers_fish_s2.modeling.audio_streamer import FishS2AudioStreamer

FRAME_RATE = FishS2CodecConfig().frame_rate  # code frames per second of audio (21.53 for the released codec)


def tiny_config() -> FishS2Config:
    return FishS2Config(
        text_config=dict(vocab_size=512, dim=64, n_layer=2, n_head=4, n_local_heads=2, head_dim=16,
                         intermediate_size=192, max_seq_len=512),
        audio_decoder_config=dict(vocab_size=64, dim=48, n_layer=2, n_head=4, n_local_heads=2, head_dim=12,
                                  intermediate_size=128, text_dim=64),
        eos_token_id=386, pad_token_id=410, audio_pad_token_id=418,
        semantic_start_token_id=419, semantic_end_token_id=482,
    )  # fmt: skip


def small_config() -> FishS2Config:
    return FishS2Config(
        text_config=dict(vocab_size=2048, dim=512, n_layer=8, n_head=8, n_local_heads=2, head_dim=64,
                         intermediate_size=1536, max_seq_len=4096),
        audio_decoder_config=dict(vocab_size=1024, dim=512, n_layer=4, n_head=8, n_local_heads=2, head_dim=64,
                                  intermediate_size=1536, text_dim=512),
        eos_token_id=1000, pad_token_id=1001, audio_pad_token_id=1002,
        semantic_start_token_id=1024, semantic_end_token_id=2047,
    )  # fmt: skip


def full_config() -> FishS2Config:
    return FishS2Config()  # the defaults are s2-pro's shapes


CONFIGS = {"tiny": tiny_config, "small": small_config, "full": full_config}


def build_model(
    name: str, device: torch.device, dtype: torch.dtype, config: FishS2Config | None = None
) -> FishS2ForConditionalGeneration:
    """Random weights for config ``name`` (or ``config``), seeded; the ``<|im_end|>`` logit pinned to zero."""
    torch.manual_seed(0)
    with torch.device(device):
        model = FishS2ForConditionalGeneration._from_config(config or CONFIGS[name](), dtype=dtype).eval()
    with (
        torch.no_grad()
    ):  # tied head: a zero <|im_end|> row gives it logit 0, never in the top of ~1000 semantic ids
        model.get_input_embeddings().weight[model.config.eos_token_id] = 0
    return model


def make_prompt(model, batch: int, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A cloning-shaped prompt: text tokens, then reference-audio frames (semantic ids + codes), then text."""
    config, generator = model.config, torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, config.eos_token_id, (batch, length), generator=generator)
    audio_codes = torch.zeros(batch, config.num_codebooks, length, dtype=torch.long)
    frames = slice(length // 4, 3 * length // 4)
    codes = torch.randint(0, config.codebook_size, (batch, config.num_codebooks, length), generator=generator)
    audio_codes[:, :, frames] = codes[:, :, frames]
    input_ids[:, frames] = config.semantic_start_token_id + audio_codes[:, 0, frames]
    return input_ids.to(device), audio_codes.to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def timed_generate(model, prompt, device, **kwargs) -> tuple[float, float, torch.Tensor]:
    """Wall time of one generate call and of its prefill (prompt forward + first frame)."""
    prefill = []
    session = model.decode_session
    original = session.prefill_frame

    def timed_prefill(*args, **kw):
        start = time.perf_counter()
        original(*args, **kw)
        synchronize(device)
        prefill.append(time.perf_counter() - start)

    session.prefill_frame = timed_prefill
    try:
        synchronize(device)
        start = time.perf_counter()
        out = model.generate(*prompt, **kwargs)
        synchronize(device)
    finally:
        del session.prefill_frame
    return time.perf_counter() - start, prefill[0], out.lengths


def time_to_first_audio(model, prompt, codec, first_chunk_frames: int, kwargs: dict) -> float:
    streamer = FishS2AudioStreamer(codec, first_chunk_frames=first_chunk_frames, chunk_frames=10**6)
    thread = threading.Thread(target=model.generate, args=prompt, kwargs={**kwargs, "streamer": streamer})
    start = time.perf_counter()
    thread.start()
    next(streamer)
    elapsed = time.perf_counter() - start
    thread.join()
    return elapsed


def kv_mib(model) -> float:
    state = model.decode_session
    if state.slow_cache is None:
        return 0.0
    tensors = [
        t
        for cache in (state.slow_cache, state.fast_cache)
        for layer in cache.layers
        for t in (layer.keys, layer.values)
    ]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", nargs="+", default=["small"], choices=list(CONFIGS))
    parser.add_argument("--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--prompt-length", type=int, default=200)
    parser.add_argument("--frames", type=int, default=64, help="frames per row (max_new_tokens)")
    parser.add_argument("--sample", action="store_true", help="default sampling instead of greedy decoding")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="default: float32 on CPU, bfloat16 on CUDA")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--first-chunk-frames", type=int, default=5)
    parser.add_argument(
        "--time-limit", type=float, default=None, metavar="S",
        help="start no new row after S seconds (the remaining rows are printed as skipped)",
    )  # fmt: skip
    parser.add_argument(
        "--stop-check-intervals", type=int, nargs="+", default=[None],
        help="generate(stop_check_interval=...) values to time (default: generate's own default)",
    )  # fmt: skip
    parser.add_argument(
        "--ttfa-codec", choices=["full", "tiny", "none"], default="full",
        help="codec for the time-to-first-audio column: random full-size decoder, the fixture-sized one, or skip",
    )  # fmt: skip
    parser.add_argument(
        "--compile-backend", default="inductor", help="e.g. aot_eager to skip code generation"
    )
    parser.add_argument(
        "--row-major", action="store_true",
        help="model.cpu_weight_layout = False: keep fp32 CPU weights row-major (no automatic CPU layout)",
    )  # fmt: skip
    parser.add_argument(
        "--against-reference", metavar="PATH",
        help="a fish-speech checkout: instead, print the side-by-side table of benchmarks/side_by_side.py "
        "(the authors' generate vs ours eager vs ours compiled, small config, CPU, 1 and 2 threads or --threads)",
    )  # fmt: skip
    args = parser.parse_args()

    if args.against_reference:
        from side_by_side import compare

        threads = [args.threads] if args.threads else [1, 2]
        variants = ["reference", "ours", "ours:compile"]
        dtype = args.dtype or "float32"
        compare(
            args.against_reference,
            variants,
            threads,
            dtype=dtype,
            frames=args.frames,
            prompt_length=args.prompt_length,
        )
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = (
        getattr(torch, args.dtype)
        if args.dtype
        else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    )
    print(
        f"device {device} ({torch.get_num_threads()} threads), dtype {str(dtype).removeprefix('torch.')}, "
        f"torch {torch.__version__}, prompt {args.prompt_length} tokens, {args.frames} frames/row, "
        f"{'sampling' if args.sample else 'greedy'}\n"
    )

    codec = None
    if args.ttfa_codec != "none":
        codec_config = FishS2CodecConfig(decoder_only=True)
        if args.ttfa_codec == "tiny":
            codec_config = FishS2CodecConfig.from_codec_config_file(
                "tests/fixtures/s2-tiny-a/codec_config.yaml"
            )
        torch.manual_seed(0)
        codec = FishS2CodecModel(codec_config).to(device=device, dtype=dtype).eval()

    header = (
        "| config | params | mode | batch | stop check | prefill ms | frames/s | total fr/s | RTF | TTFA ms | "
        "compile s | KV MiB | peak MiB |"
    )
    print(header)
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    deadline = time.monotonic() + args.time_limit if args.time_limit else float("inf")
    for name in args.configs:
        model = build_model(name, device, dtype)
        model.cpu_weight_layout = not args.row_major
        if args.compile_backend != "inductor":  # else generate's default: inductor, CUDA graphs on CUDA
            model.generation_config.compile_config = CompileConfig(backend=args.compile_backend, mode=None)
        params = sum(p.numel() for p in model.parameters())
        for mode, batch, interval in itertools.product(args.modes, args.batch, args.stop_check_intervals):
            if time.monotonic() > deadline:
                print(f"| {name} | - | {mode} | {batch} | {interval or 'default'} | skipped: --time-limit "
                      f"{args.time_limit:g} s reached | | | | | | | |", flush=True)  # fmt: skip
                continue
            prompt = make_prompt(model, batch, args.prompt_length, device)
            kwargs = dict(
                do_sample=args.sample, compile=mode == "compiled", max_new_tokens=args.frames,
                stop_check_interval=interval,
            )  # fmt: skip
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            warmup, _, _ = timed_generate(model, prompt, device, **kwargs)
            total, prefill, lengths = timed_generate(model, prompt, device, **kwargs)
            assert lengths.tolist() == [args.frames] * batch, lengths
            steps_per_s = (args.frames - 1) / (total - prefill)
            rtf = total / (args.frames / FRAME_RATE)
            ttfa = "-"
            if batch == 1 and codec is not None:
                ttfa_s = time_to_first_audio(model, prompt, codec, args.first_chunk_frames, kwargs)
                ttfa = f"{1000 * ttfa_s:.0f}"
            compile_s = f"{warmup - total:.1f}" if mode == "compiled" else "-"
            print(
                f"| {name} | {params / 1e6:.1f}M | {mode} | {batch} | {interval or 'default'} | "
                f"{1000 * prefill:.1f} | {steps_per_s:.2f} | "
                f"{steps_per_s * batch:.2f} | {rtf:.3f} | {ttfa} | {compile_s} | {kv_mib(model):.1f} | "
                f"{peak_mib(device):.0f} |",
                flush=True,
            )
        model.release_generation_state()
        del model


if __name__ == "__main__":
    main()
