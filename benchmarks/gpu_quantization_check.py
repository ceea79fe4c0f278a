"""GPU check of quantized loading: full-size S2 (random weights) loaded with bitsandbytes 8-bit and 4-bit through
``from_pretrained``, 20 greedy frames generated, memory printed next to the estimator's figures.

Random weights exercise exactly the real shapes and kernels. The script writes a random full-size checkpoint in
the official layout (``config.json`` + sharded safetensors, ~9.1 GB on disk; the ``<|im_end|>`` embedding row is
zeroed so greedy decoding never stops early), then for each scheme: loads it onto the GPU, compares the bytes the
model holds with :func:`transformers_fish_s2.memory.estimate_memory` (exact match expected), generates, and
reports load time, frames/s and peak allocated memory (weights + KV cache + activations). Exits 1 if a check
fails, 0 without a CUDA device (nothing to check) unless ``--device cpu`` asks for a CPU dry run.

Size and time knobs: ``--config`` (``full``, or ``bench_generate.py``'s ``small``/``tiny`` for dry runs),
``--layers N`` (that many slow-AR layers instead of 36: a smaller checkpoint, same layer shapes), ``--frames``,
``--time-limit S`` (no new scheme after S seconds). Without ``--checkpoint`` the random checkpoint goes to a
temporary folder in ``/dev/shm`` (memory, no disk writes) when it has room for it, else in the system's.

    .venv/bin/python benchmarks/gpu_quantization_check.py                    # bf16, bnb-8bit, bnb-4bit
    .venv/bin/python benchmarks/gpu_quantization_check.py --schemes bnb-4bit --checkpoint /data/s2-random
    .venv/bin/python benchmarks/gpu_quantization_check.py --device cpu --config tiny --schemes bnb-8bit  # plumbing
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generate import CONFIGS  # noqa: E402

from transformers_fish_s2 import FishS2Config, FishS2ForConditionalGeneration  # noqa: E402
from transformers_fish_s2.memory import estimate_memory, measure_memory  # noqa: E402
from transformers_fish_s2.quantization import quantization_config  # noqa: E402

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


def checkpoint_folder(config: FishS2Config) -> tempfile.TemporaryDirectory:
    """A temporary folder for the random checkpoint: in /dev/shm (memory) when it has twice the room, else the
    system's temporary folder."""
    with torch.device("meta"):
        size = 2 * sum(p.numel() for p in FishS2ForConditionalGeneration(config).parameters())  # bf16 bytes
    shm = Path("/dev/shm")
    where = str(shm) if shm.is_dir() and shutil.disk_usage(shm).free > 2 * size else None
    return tempfile.TemporaryDirectory(prefix="s2-random-", dir=where)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _allocated(device: torch.device) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


def check_scheme(checkpoint: Path, scheme: str, frames: int, device: torch.device) -> dict:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    baseline = _allocated(device)

    started = time.perf_counter()
    model = FishS2ForConditionalGeneration.from_pretrained(
        checkpoint,
        dtype=torch.bfloat16,
        # on a CPU, bitsandbytes layers load where they are (a CPU device_map would count as offloading)
        device_map={"": device.index or 0} if device.type == "cuda" else None,
        quantization_config=quantization_config(None if scheme == "bf16" else scheme),
    )
    _synchronize(device)
    load_s = time.perf_counter() - started
    measured = sum(measure_memory(model).values())
    loaded = _allocated(device) - baseline if device.type == "cuda" else measured

    config = model.config
    generator = torch.Generator().manual_seed(0)
    limit = min(TEXT_TOKEN_LIMIT, config.eos_token_id)  # text ids, below the special tokens
    input_ids = torch.randint(0, limit, (1, PROMPT_TOKENS), generator=generator).to(device)
    audio_codes = torch.zeros(1, config.num_codebooks, PROMPT_TOKENS, dtype=torch.long, device=device)
    model.generate(input_ids, audio_codes, do_sample=False, max_new_tokens=2)  # warm-up (kernels, allocator)
    _synchronize(device)
    started = time.perf_counter()
    output = model.generate(input_ids, audio_codes, do_sample=False, max_new_tokens=frames)
    _synchronize(device)
    generate_s = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) - baseline if device.type == "cuda" else float("nan")

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
    parser.add_argument("--config", default="full", choices=list(CONFIGS), help="model shapes (default: full)")
    parser.add_argument("--layers", type=int, default=None, help="slow-AR layers (default: the config's)")
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu for a dry run of the plumbing")
    parser.add_argument(
        "--time-limit", type=float, default=None, metavar="S", help="start no new scheme after S seconds"
    )
    args = parser.parse_args()

    started = time.monotonic()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("No CUDA device: this check loads the full-size model on a GPU; nothing to do here.")
        return 0
    if any(scheme.startswith("bnb") for scheme in args.schemes):
        try:
            import bitsandbytes
        except ImportError:
            print("bitsandbytes is not installed: pip install 'transformers-fish-s2[quant]'")
            return 1
        print(f"bitsandbytes {bitsandbytes.__version__}")
    if device.type == "cuda":
        device = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    else:
        print(f"device: {device} (dry run: no GPU memory figures), torch {torch.__version__}")

    config = CONFIGS[args.config]()
    if args.layers:
        config.text_config.n_layer = args.layers
    workdir = None if args.checkpoint else checkpoint_folder(config)
    checkpoint = args.checkpoint or Path(workdir.name)
    print(f"checkpoint folder: {checkpoint}")
    write_random_checkpoint(checkpoint, config, device)

    results = []
    for scheme in args.schemes:
        if args.time_limit and time.monotonic() - started > args.time_limit:
            print(f"{scheme}: skipped (--time-limit {args.time_limit:g} s reached)")
            continue
        results.append(check_scheme(checkpoint, scheme, args.frames, device))
        print(f"{scheme}: done ({time.monotonic() - started:.0f} s so far)", flush=True)

    gib, unit = (2**30, "GiB") if args.config == "full" else (2**20, "MiB")
    size = "full-size" if args.config == "full" else f"{args.config}-config"
    layers = f" ({config.text_config.n_layer} slow-AR layers)" if args.layers else ""
    print(
        f"\n{size} S2{layers}, random weights, {device.type}, batch 1, {PROMPT_TOKENS}-token prompt, "
        f"{args.frames} greedy frames (codec not loaded; {unit}: GiB = 2^30 bytes, MiB = 2^20)"
    )
    print(
        f"| scheme | weights (estimate) {unit} | weights (measured) | allocated after load | estimate + KV cache "
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
    if len(results) < len(args.schemes):
        failures.append(f"{len(args.schemes) - len(results)} scheme(s) skipped for time")
    for failure in failures:
        print("FAILED:", failure)
    if not failures:
        print("OK: estimator == measured bytes for every scheme; every scheme generated all frames")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
