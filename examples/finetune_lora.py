"""LoRA fine-tuning: a folder of clips and transcripts → a small adapter → speech from the adapted model.

    python examples/finetune_lora.py --data my_voice/ --out my_voice_lora/ --model ./s2-pro --steps 300

``my_voice/`` holds clips (wav/flac/ogg/mp3, any rate) with a same-named ``.lab`` transcript each. The clips are
encoded once with ``datasets.map`` (saved under ``<out>/encoded``, reused by later runs), a LoRA adapter is
trained with the transformers ``Trainer``, saved with a model card, loaded back onto a fresh base with
``PeftModel.from_pretrained`` and used to speak ``--text``. ``fish-s2 finetune`` does the training part in one
command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import datasets
import torch
from peft import PeftModel
from transformers import AutoModelForTextToWaveform, AutoProcessor

import transformers_fish_s2  # noqa: F401  (registers Fish S2 with transformers' Auto classes)
from transformers_fish_s2.training import DatasetMapper
from transformers_fish_s2.training.adapter import save_adapter
from transformers_fish_s2.training.lora import lora_config
from transformers_fish_s2.training.trainer import finetune, training_arguments

DTYPE = torch.bfloat16 if torch.cuda.is_available() else torch.float32  # LoRA on bf16 weights on a GPU


def encoded_dataset(data: Path, processor, cache: Path) -> datasets.Dataset:
    """Training examples for every clip of ``data``; the codec runs once, the result is kept in ``cache``."""
    if cache.is_dir():
        return datasets.load_from_disk(str(cache))
    clips = sorted(p for p in data.iterdir() if p.suffix.lower() in (".wav", ".flac", ".ogg", ".mp3"))
    texts = [clip.with_suffix(".lab").read_text(encoding="utf-8").strip() for clip in clips]
    raw = datasets.Dataset.from_dict({"text": texts, "audio": [str(clip) for clip in clips]})
    train = raw.map(DatasetMapper(processor), remove_columns=raw.column_names)
    train.save_to_disk(str(cache))
    return train


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="folder of clips with .lab transcripts")
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder (adapter/, encoded/, sample.wav)"
    )
    parser.add_argument("--model", default="fishaudio/s2-pro", help="base checkpoint folder or Hub id")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument(
        "--text", default="Hello from my fine-tuned voice.", help="what the adapted model says"
    )
    parser.add_argument("--max-new-tokens", type=int, help="frames of the sample at most")
    args = parser.parse_args(argv)

    processor = AutoProcessor.from_pretrained(args.model)
    train = encoded_dataset(args.data, processor, args.out / "encoded")
    base = AutoModelForTextToWaveform.from_pretrained(args.model, dtype=DTYPE)
    arguments = training_arguments(args.out / "trainer", max_steps=args.steps, learning_rate=args.lr)
    adapted, _ = finetune(base, processor, train, arguments, lora=lora_config("both"))
    save_adapter(adapted, args.out / "adapter", base_model=args.model)

    # What a user of the shared adapter does: a fresh base plus the adapter folder (or its Hub id).
    fresh = AutoModelForTextToWaveform.from_pretrained(args.model, dtype=DTYPE).to(adapted.device)
    model = PeftModel.from_pretrained(fresh, args.out / "adapter").eval()
    generation = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}
    output = model.generate(**processor(text=args.text).to(model.device), **generation)
    sample = args.out / "sample.wav"
    processor.save_audio(processor.decode(output), sample)
    print(f"wrote {args.out / 'adapter'} and {sample}")
    return sample


if __name__ == "__main__":
    main()
