"""GPU check of quantized loading: full-size S2 (random weights) loaded with bitsandbytes 8-bit and 4-bit through
``from_pretrained``, 20 greedy frames generated, memory printed next to the estimator's figures.

Random weights exercise exactly the real shapes and kernels. The script writes a random full-size checkpoint in
the official layout (``config.json`` + sharded safetensors, ~9.1 GB on disk; the ``<|im_end|>`` embedding row is
zeroed so greedy decoding never stops early), then for each scheme: loads it onto the GPU, compares the bytes the
model holds with :func:`transformers_fish_s2.memory.estimate_memory` (exact match expected), generates, and
reports load time, frames/s and peak allocated memory (weights + KV cache + activations). Exits 1 if a check
fails, 0 without a CUDA device (nothing to check).

    .venv/bin/python benchmarks/gpu_quantization_check.py                    # bf16, bnb-8bit, bnb-4bit
    .venv/bin/python benchmarks/gpu_quantization_check.py --schemes bnb-4bit --checkpoint /data/s2-random
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from transformers_fish_s2 import FishS2Config, FishS2ForConditionalGeneration
from transformers_fish_s2.memory import estimate_memory, measure_memory
from transformers_fish_s2.quantization import quantization_config

SHARD_BYTES = 4 * 2**30
PROMPT_TOKENS = 200
TEXT_TOKEN_LIMIT = 150_000  # prompt ids drawn below the special tokens
GENERATE_CACHE_BUCKET = 256  # generate() sizes the slow KV cache to prompt + frames rounded up to this


def write_random_checkpoint(directory: Path, config: FishS2Config, device: torch.device) -> None:
    """Official-layout checkpoint with random bf16 weights (norms at 1), drawn on ``device`` to be quick."""
    if (directory / "model.safetensors.index.json").is_file():
        print(f"reusing the random checkpoint in {directory}")
        return
    directory.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        skeleton = FishS2ForConditionalGeneration(config)
    generator = torch.Generator(device).manual_seed(0)
    shard, shard_bytes, weight_map, total = {}, 0, {}, 0
    shard_names = []

    def flush() -> None:
        nonlocal shard, shard_bytes
        name = f"model-{len(shard_names) + 1:05d}.safetensors"
        save_file(shard, directory / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
        shard_names.append(name)
        shard, shard_bytes = {}, 0

    started = time.perf_counter()
    for key, meta in skeleton.state_dict().items():
        if key.endswith("norm.weight"):
            tensor = torch.ones(meta.shape, dtype=torch.bfloat16)
        else:
            tensor = torch.empty(meta.shape, device=device, dtype=torch.bfloat16)
            tensor.normal_(0.0, config.text_config.initializer_range, generator=generator)
            if key == "text_model.model.embeddings.weight":
                tensor[config.eos_token_id] = 0  # tied head: <|im_end|> logit 0 < best semantic logit
            tensor = tensor.cpu()
        shard[key] = tensor
        shard_bytes += tensor.numel() * tensor.element_size()
        total += tensor.numel() * tensor.element_size()
        if shard_bytes >= SHARD_BYTES:
            flush()
    if shard:
        flush()
    final_names = {
        old: f"model-{i:05d}-of-{len(shard_names):05d}.safetensors" for i, old in enumerate(shard_names, 1)
    }
    for old, new in final_names.items():
        (directory / old).rename(directory / new)
    index = {
        "metadata": {"total_size": total},
        "weight_map": {k: final_names[v] for k, v in weight_map.items()},
    }
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config.save_pretrained(directory)
    print(
        f"wrote a random checkpoint ({total / 2**30:.2f} GiB) to {directory} in {time.perf_counter() - started:.0f} s"
    )


def check_scheme(checkpoint: Path, scheme: str, frames: int, device: torch.device) -> dict:
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    baseline = torch.cuda.memory_allocated(device)

    started = time.perf_counter()
    model = FishS2ForConditionalGeneration.from_pretrained(
        checkpoint,
        dtype=torch.bfloat16,
        device_map={"": device.index or 0},
        quantization_config=quantization_config(None if scheme == "bf16" else scheme),
    )
    torch.cuda.synchronize(device)
    load_s = time.perf_counter() - started
    loaded = torch.cuda.memory_allocated(device) - baseline
    measured = sum(measure_memory(model).values())

    config = model.config
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, TEXT_TOKEN_LIMIT, (1, PROMPT_TOKENS), generator=generator).to(device)
    audio_codes = torch.zeros(1, config.num_codebooks, PROMPT_TOKENS, dtype=torch.long, device=device)
    model.generate(input_ids, audio_codes, do_sample=False, max_new_tokens=2)  # warm-up (kernels, allocator)
    torch.cuda.synchronize(device)
    started = time.perf_counter()
    output = model.generate(input_ids, audio_codes, do_sample=False, max_new_tokens=frames)
    torch.cuda.synchronize(device)
    generate_s = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) - baseline

    cache_tokens = math.ceil((PROMPT_TOKENS + frames) / GENERATE_CACHE_BUCKET) * GENERATE_CACHE_BUCKET
    estimate = estimate_memory(
        checkpoint, quantization=None if scheme == "bf16" else scheme, max_tokens=cache_tokens, codec="none"
    )
    result = {
        "scheme": scheme,
        "estimated_weights": estimate.slow_weights + estimate.fast_weights,
        "measured_weights": measured,
        "allocated_after_load": loaded,
        "estimated_total": estimate.total,
        "peak": peak,
        "frames": int(output.lengths[0]),
        "load_s": load_s,
        "frames_per_s": int(output.lengths[0]) / generate_s,
    }
    del model, output
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--schemes", nargs="+", default=["bf16", "bnb-8bit", "bnb-4bit"])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="where to write/reuse the random checkpoint"
    )
    args = parser.parse_args()

    if not torch.cuda.is_available():
        print("No CUDA device: this check loads the full-size model on a GPU; nothing to do here.")
        return 0
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        print("bitsandbytes is not installed: pip install 'transformers-fish-s2[quant]'")
        return 1
    device = torch.device("cuda", torch.cuda.current_device())
    print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")

    workdir = None if args.checkpoint else tempfile.TemporaryDirectory(prefix="s2-random-")
    checkpoint = args.checkpoint or Path(workdir.name)
    write_random_checkpoint(checkpoint, FishS2Config(), device)

    results = [check_scheme(checkpoint, scheme, args.frames, device) for scheme in args.schemes]

    gib = 2**30
    print(
        f"\nfull-size S2, random weights, batch 1, {PROMPT_TOKENS}-token prompt, {args.frames} greedy frames "
        "(codec not loaded; GiB = 2^30 bytes)"
    )
    print(
        "| scheme | weights (estimate) | weights (measured) | allocated after load | estimate + KV cache "
        "| peak (load + generate) | frames | load s | frames/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    failures = []
    for r in results:
        print(
            f"| {r['scheme']} | {r['estimated_weights'] / gib:.3f} | {r['measured_weights'] / gib:.3f} "
            f"| {r['allocated_after_load'] / gib:.3f} | {r['estimated_total'] / gib:.3f} "
            f"| {r['peak'] / gib:.3f} | {r['frames']} | {r['load_s']:.1f} | {r['frames_per_s']:.1f} |"
        )
        if r["estimated_weights"] != r["measured_weights"]:
            failures.append(
                f"{r['scheme']}: estimated {r['estimated_weights']:,} B of weights, measured {r['measured_weights']:,} B"
            )
        if r["frames"] != args.frames:
            failures.append(f"{r['scheme']}: generated {r['frames']} frames, expected {args.frames}")
    if workdir is not None:
        workdir.cleanup()
    for failure in failures:
        print("FAILED:", failure)
    if not failures:
        print("OK: estimator == measured bytes for every scheme; every scheme generated all frames")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
