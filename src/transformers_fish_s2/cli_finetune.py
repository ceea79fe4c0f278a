"""``fish-s2 finetune``: LoRA (or QLoRA) fine-tuning from a folder of clips and transcripts to an adapter folder.

    fish-s2 finetune --data my_voice/ --out my_voice_lora/
    fish-s2 finetune --data my_voice/ --out my_voice_lora/ --quantization 4bit --steps 500 --lora slow

Kept out of cli.py (which only registers it); heavy imports happen when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .training import defaults

TRANSCRIPT_EXTENSIONS = (".lab", ".txt")
"""Transcript files next to each clip: ``.lab`` is the authors' data layout, ``.txt`` the obvious alternative."""


def add_finetune_parser(commands, audio_extensions: tuple[str, ...]) -> None:
    """Register ``finetune`` on the ``fish-s2`` sub-command parser."""
    parser = commands.add_parser(
        "finetune", help="LoRA fine-tuning on clips + transcripts", description=run_finetune.__doc__
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help=f"folder of clips ({', '.join(audio_extensions)}), each with a same-named .lab or .txt transcript",
    )
    parser.add_argument("--out", type=Path, required=True, help="adapter folder to write")
    parser.add_argument(
        "--model", default=None, help="base checkpoint folder or Hub id (default fishaudio/s2-pro)"
    )
    parser.add_argument("--device", help="cuda, cpu, ... (default: cuda if available)")
    parser.add_argument(
        "--steps", type=int, default=defaults.STEPS, help="optimizer steps (default %(default)s)"
    )
    parser.add_argument(
        "--lr", type=float, default=defaults.LEARNING_RATE, help="learning rate (default %(default)s)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=defaults.BATCH_SIZE, help="clips per step (default %(default)s)"
    )
    parser.add_argument(
        "--rank", type=int, default=defaults.LORA_RANK, help="LoRA rank (default %(default)s)"
    )
    parser.add_argument(
        "--alpha", type=int, default=defaults.LORA_ALPHA, help="LoRA alpha (default %(default)s)"
    )
    parser.add_argument(
        "--lora",
        choices=("slow", "fast", "both"),
        default="both",
        help="which transformer gets adapters (default both)",
    )
    parser.add_argument(
        "--quantization",
        choices=("none", "4bit"),
        default="none",
        help="4bit: QLoRA on an NF4 bitsandbytes base (slow AR quantized)",
    )
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument(
        "--push-to-hub",
        metavar="REPO_ID",
        help="also upload the adapter folder to this Hub repo (after --out)",
    )
    parser.set_defaults(run=run_finetune, audio_extensions=audio_extensions)


def run_finetune(args: argparse.Namespace) -> None:
    """Fine-tune S2 with LoRA on a folder of clips (each with a same-named .lab/.txt transcript) and write the
    adapter (adapter weights, config and a model card naming the base model) to --out, and to a Hub repo with
    --push-to-hub. Every clip and transcript is checked before training starts; clips at other rates are
    resampled."""
    from .cli import CLIError, load_checkpoint
    from .hub import DEFAULT_MODEL_ID

    for option, value in (("--steps", args.steps), ("--batch-size", args.batch_size), ("--rank", args.rank)):
        if value < 1:
            raise CLIError(f"{option} must be at least 1, got {value}")
    if args.lr <= 0:
        raise CLIError(f"--lr must be positive, got {args.lr}")
    texts, clips = read_data_folder(args.data, args.audio_extensions)
    base = args.model or DEFAULT_MODEL_ID
    quantization = "bnb-4bit" if args.quantization == "4bit" else None
    model, processor = load_checkpoint(base, args.device, quantization=quantization)

    import transformers

    from .training import prepare_examples
    from .training.adapter import push_adapter, save_adapter
    from .training.lora import lora_config
    from .training.trainer import finetune, training_arguments

    names = [str(clip.relative_to(args.data)) for clip in clips]
    examples = prepare_examples(processor, texts, [str(clip) for clip in clips], names=names)
    transformers.set_seed(args.seed)
    arguments = training_arguments(
        args.out,
        max_steps=args.steps,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        use_cpu=model.device.type == "cpu",
    )
    adapted, _ = finetune(
        model, processor, examples, arguments, lora=lora_config(args.lora, r=args.rank, alpha=args.alpha)
    )
    save_adapter(adapted, args.out, base_model=base, repo_id=args.push_to_hub)
    print(f"wrote the adapter for {base} to {args.out} ({len(examples)} clips, {args.steps} steps)")
    if args.push_to_hub:
        push_adapter(adapted, args.push_to_hub, base_model=base)
        print(f"uploaded it to {args.push_to_hub}")


def read_data_folder(folder: Path, audio_extensions: tuple[str, ...]) -> tuple[list[str], list[Path]]:
    """Transcripts and clip paths of every audio file under ``folder`` (sorted); a clip without a transcript
    is an error, named."""
    from .cli import CLIError

    if not folder.is_dir():
        raise CLIError(f"--data {str(folder)!r} is not a folder")
    clips = sorted(p for p in folder.rglob("*") if p.suffix.lower() in audio_extensions and p.is_file())
    if not clips:
        raise CLIError(f"--data {str(folder)!r} has no audio files ({', '.join(audio_extensions)})")
    texts = []
    for clip in clips:
        transcript = next(
            (t for ext in TRANSCRIPT_EXTENSIONS if (t := clip.with_suffix(ext)).is_file()), None
        )
        if transcript is None:
            raise CLIError(f"{str(clip)!r} has no transcript: add {clip.with_suffix('.lab').name} (or .txt)")
        texts.append(transcript.read_text(encoding="utf-8").strip())
    return texts, clips
