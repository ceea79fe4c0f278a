"""Stage (a) of ``benchmarks/gpu_check.sh``: what the machine has, whether our package imports against it, and a
smoke run of the tiny fixture model on the device (forward + 4 greedy frames + codec decode).

Prints a Markdown table of versions and one line per check; exits 1 if the import or the smoke run fails.

    python3 benchmarks/gpu_check_env.py --device cuda
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "fixtures" / "s2-tiny-a"
PACKAGES = [
    "torch", "transformers", "tokenizers", "huggingface_hub", "safetensors", "accelerate", "numpy", "triton",
    "bitsandbytes", "soundfile", "soxr", "peft", "yaml", "msgpack", "httpx", "fastapi", "optimum.quanto",
]  # fmt: skip
WANTED = {"torch": "2.13", "transformers": "5.24"}  # pyproject.toml's floors


def version_of(name: str) -> tuple[str, str]:
    try:
        module = importlib.import_module(name)
    except Exception as error:  # noqa: BLE001 - any import failure is a finding to report
        return "missing", f"{type(error).__name__}: {str(error).splitlines()[0][:80] if str(error) else ''}"
    where = str(Path(getattr(module, "__file__", "") or "?").parent)
    return str(getattr(module, "__version__", "?")), where


def older(version: str, floor: str) -> bool:
    def key(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split("+")[0].split(".")[:2] if part.isdigit())

    return version != "missing" and key(version) < key(floor)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()

    print(f"python {platform.python_version()} ({sys.executable}), {platform.machine()}\n")
    print("| package | version | from |")
    print("|---|---|---|")
    versions = {}
    for name in PACKAGES:
        versions[name], where = version_of(name)
        print(f"| {name} | {versions[name]} | {where} |")
    print()
    for name, floor in WANTED.items():
        if older(versions[name], floor):
            print(f"NOTE: {name} {versions[name]} is older than pyproject.toml's floor {floor}; running anyway")

    import torch

    print(f"torch.version.cuda {torch.version.cuda}, cuda available: {torch.cuda.is_available()}")
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        print(
            f"device 0: {properties.name}, {properties.total_memory / 2**30:.1f} GiB, "
            f"capability {properties.major}.{properties.minor}, {properties.multi_processor_count} SMs, "
            f"bf16 supported: {torch.cuda.is_bf16_supported()}"
        )
    elif args.device == "cuda":
        print("FAILED: --device cuda but torch sees no CUDA device")
        return 1

    failures = 0
    try:
        import transformers_fish_s2

        transformers_fish_s2.load_public_api()
        print(f"OK: import transformers_fish_s2 from {Path(transformers_fish_s2.__file__).parent}")
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        print("FAILED: import transformers_fish_s2 (everything after this needs it)")
        return 1

    try:
        from transformers_fish_s2 import FishS2ForConditionalGeneration, FishS2Processor

        device = torch.device(args.device)
        started = time.perf_counter()
        model = FishS2ForConditionalGeneration.from_pretrained(TINY).to(device).eval()
        processor = FishS2Processor.from_pretrained(TINY)
        processor.codec.to(device)
        inputs = processor(["Hello from the GPU check."]).to(device)
        with torch.no_grad():
            logits = model(**inputs, logits_to_keep=1).logits
        assert torch.isfinite(logits.float()).all(), "non-finite logits"
        output = model.generate(**inputs, do_sample=False, max_new_tokens=4)
        frames = int(output.lengths[0])
        audio = processor.decode(output) if frames else None
        if device.type == "cuda":
            torch.cuda.synchronize()
        print(
            f"OK: tiny fixture model on {device} ({model.dtype}): forward, {frames} greedy frames, "
            f"decoded {type(audio).__name__} in {time.perf_counter() - started:.1f} s"
        )
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        print(f"FAILED: tiny fixture smoke run on {args.device}")
        failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
