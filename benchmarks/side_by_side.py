"""Decode speed side by side with the authors' ``generate`` (or with another checkout of this package).

Every measurement runs in a fresh process, and the variants of a round run one after the other, so a load
spike on a shared machine hits one round rather than one variant; the table gives medians over rounds and the
median of the per-round ratios to the first variant. All variants load the same random weights (written
once, in the official checkpoint layout, which the reference reads through its own key mapping) and the same
prompt, decode greedily, and must produce the same codes.

A variant is ``reference`` (the fish-speech checkout given to ``--against-reference``; the reference is only
imported and timed, nothing of it is copied) or ``ours[@SRC][:OPTION,...]``: this package, or the one under
``SRC`` (e.g. a worktree of an older commit), with options ``compile`` (``compile=True``), ``layout`` (call
``optimize_for_cpu_decoding()`` first) and ``row-major`` (``model.cpu_weight_layout = False``: no automatic CPU layout).

Decode frames/s = (frames - 1) / the time from the first frame to the last (ours: the streamer's first and
last ``put``; the reference: its ``decode_n_tokens``), best of two timed calls after one warm-up call (which
compiles). Usually run through ``bench_generate.py --against-reference PATH``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve()
SRC = HERE.parents[1] / "src"


# --------------------------------------------------------------------------------------------------------
# Worker side (one fresh process per measurement)
# --------------------------------------------------------------------------------------------------------


class _FrameClock:
    """A streamer that only notes when the first and the last frame arrive."""

    def __init__(self):
        self.times: list[float] = []

    def put(self, value) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def _codes_digest(codes: torch.Tensor) -> str:
    return hashlib.sha1(codes.to(torch.int64).contiguous().numpy().tobytes()).hexdigest()[:12]


def _run_ours(options: list[str], workdir: Path, dtype: torch.dtype, frames: int) -> tuple[list[float], str]:
    from transformers_fish_s2 import FishS2Config, FishS2ForConditionalGeneration

    config = json.loads((workdir / "config.json").read_text())
    config = FishS2Config(**{key: value for key, value in config.items() if key != "transformers_version"})
    model = FishS2ForConditionalGeneration._from_config(config, dtype=dtype).eval()
    model.load_state_dict({k: v.to(dtype) for k, v in load_file(workdir / "model.safetensors").items()})
    if "layout" in options:
        model.optimize_for_cpu_decoding()
    if "row-major" in options:
        model.cpu_weight_layout = False
    prompt = load_file(workdir / "prompt.safetensors")
    rates, digest = [], None
    for _ in range(3):
        clock = _FrameClock()
        out = model.generate(
            prompt["input_ids"], prompt["audio_codes"], max_new_tokens=frames, do_sample=False,
            compile="compile" in options, streamer=clock,
        )  # fmt: skip
        sequences = out.sequences if hasattr(out, "sequences") else out
        rates.append((frames - 1) / (clock.times[-1] - clock.times[0]))
        digest = _codes_digest(sequences[0, :, :frames])
    return rates[1:], digest


def _run_reference(path: Path, workdir: Path, dtype: torch.dtype, frames: int) -> tuple[list[float], str]:
    # Light stand-ins for the reference's logging, LoRA and einops imports (unused by its generate).
    sys.modules.setdefault("loguru", types.SimpleNamespace(logger=types.SimpleNamespace(
        info=lambda *a, **k: None, warning=lambda *a, **k: None)))  # fmt: skip
    sys.modules.setdefault("loralib", types.ModuleType("loralib"))
    sys.modules.setdefault("einops", types.SimpleNamespace(rearrange=None))
    sys.path.insert(0, str(path))
    from fish_speech.models.text2semantic import inference
    from fish_speech.models.text2semantic.llama import (
        BaseModelArgs,
        DualARTransformer,
        _remap_fish_qwen3_omni_keys,
    )

    config = json.loads((workdir / "config.json").read_text())
    model = DualARTransformer(BaseModelArgs._from_fish_qwen3_omni(config))
    weights = _remap_fish_qwen3_omni_keys(load_file(workdir / "model.safetensors"))
    model.load_state_dict(weights, strict=True)
    model = model.to(dtype).eval()
    eos = config["eos_token_id"]
    model.tokenizer = types.SimpleNamespace(get_token_id=lambda token: eos)

    decode_times = []
    decode_n_tokens = inference.decode_n_tokens

    def timed_decode_n_tokens(*args, **kwargs):
        start = time.perf_counter()
        result = decode_n_tokens(*args, **kwargs)
        decode_times.append(time.perf_counter() - start)
        return result

    inference.decode_n_tokens = timed_decode_n_tokens
    prompt = load_file(workdir / "prompt.safetensors")
    tokens = torch.cat([prompt["input_ids"], prompt["audio_codes"][0]])
    length = tokens.shape[1]
    for _ in range(3):
        seq = inference.generate(
            model=model, prompt=tokens, max_new_tokens=frames, audio_masks=None, audio_parts=None,
            temperature=1.0, top_p=1.0, top_k=1,
        )  # fmt: skip
    digest = _codes_digest(seq[1:, length : length + frames])
    return [(frames - 1) / t for t in decode_times[1:]], digest


def worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    side, _, options = args.variant.partition(":")
    if side == "reference":
        rates, digest = _run_reference(Path(args.reference), args.workdir, dtype, args.frames)
    else:
        rates, digest = _run_ours(options.split(",") if options else [], args.workdir, dtype, args.frames)
    print(json.dumps({"fps": max(rates), "codes": digest}))


# --------------------------------------------------------------------------------------------------------
# Parent side: the table
# --------------------------------------------------------------------------------------------------------


def _write_inputs(workdir: Path, config_name: str, dtype: torch.dtype, prompt_length: int) -> None:
    from bench_generate import build_model, make_prompt

    model = build_model(config_name, torch.device("cpu"), torch.float32)
    (workdir / "config.json").write_text(model.config.to_json_string())
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, workdir / "model.safetensors")
    input_ids, audio_codes = make_prompt(model, 1, prompt_length, torch.device("cpu"))
    save_file({"input_ids": input_ids, "audio_codes": audio_codes}, workdir / "prompt.safetensors")


def _measure(variant: str, reference: str, workdir: Path, threads: int, dtype: str, frames: int) -> dict:
    side, _, options = variant.partition(":")
    src = side.partition("@")[2] or str(SRC)
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": str(threads)}
    command = [
        sys.executable, str(HERE), "--worker", "--variant", f"{side.partition('@')[0]}:{options}",
        "--reference", reference, "--workdir", str(workdir), "--threads", str(threads), "--dtype", dtype,
        "--frames", str(frames),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode:
        raise RuntimeError(f"{variant} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare(
    reference: str,
    variants: list[str],
    threads: list[int],
    rounds: int = 3,
    config_name: str = "small",
    dtype: str = "float32",
    frames: int = 64,
    prompt_length: int = 199,
) -> None:
    """Print the side-by-side table (markdown): one row per thread count, one column per variant."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        _write_inputs(workdir, config_name, getattr(torch, dtype), prompt_length)
        print(
            f"{config_name} config, {dtype}, {prompt_length}-token prompt, greedy, {frames} frames, {rounds} rounds "
            f"of fresh processes; load: {os.getloadavg()[0]:.2f}\n"
        )
        print("| threads | " + " | ".join(variants) + " |")
        print("|---:|" + "---:|" * len(variants))
        for count in threads:
            rates = {variant: [] for variant in variants}
            digests = set()
            for _ in range(rounds):
                for variant in variants:
                    result = _measure(variant, reference, workdir, count, dtype, frames)
                    rates[variant].append(result["fps"])
                    digests.add(result["codes"])
                    print(
                        f"  {count} thr {variant}: {result['fps']:.2f} fr/s ({result['codes']})",
                        file=sys.stderr,
                    )
            first = rates[variants[0]]
            cells = [f"{statistics.median(first):.2f}"]
            for variant in variants[1:]:
                ratio = statistics.median(r / f for r, f in zip(rates[variant], first))
                cells.append(f"{statistics.median(rates[variant]):.2f} ({ratio:.2f}x)")
            same = "same codes" if len(digests) == 1 else f"DIFFERENT codes: {sorted(digests)}"
            print(
                f"| {count} | " + " | ".join(cells) + f" |  <!-- {same}; load {os.getloadavg()[0]:.2f} -->",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--reference", help="fish-speech checkout (for the reference variant)")
    parser.add_argument("--variants", nargs="+", default=["reference", "ours", "ours:compile"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--prompt-length", type=int, default=199)
    args = parser.parse_args()
    if args.worker:
        args.threads = args.threads[0] if isinstance(args.threads, list) else args.threads
        worker(args)
    else:
        compare(args.reference, args.variants, args.threads, args.rounds, dtype=args.dtype, frames=args.frames,
                prompt_length=args.prompt_length)  # fmt: skip


if __name__ == "__main__":
    main()
