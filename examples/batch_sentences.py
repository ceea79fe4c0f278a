"""Batch: synthesize a list of sentences together, one WAV file per sentence.

    python examples/batch_sentences.py sentences.txt --model ./s2-pro --output-dir out/ --batch-size 8

One line of the file is one sentence. Prompts of different lengths are left-padded into one batch; every row
stops on its own end token, and ``lengths`` tells how many frames of each row are real. A row that ends before
its first frame is written as an empty file, with a warning, like everywhere else in the package.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import AutoModelForTextToWaveform, AutoProcessor

import transformers_fish_s2  # noqa: F401  (registers Fish S2 with transformers' Auto classes)

SENTENCES = [
    "The first sentence of the batch.",
    "A second, somewhat longer sentence that takes more time to say.",
    "Short one.",
]


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sentences", nargs="?", type=Path, help="text file, one sentence per line")
    parser.add_argument("--model", default="fishaudio/s2-pro", help="checkpoint folder or Hub id")
    parser.add_argument("--output-dir", type=Path, default=Path("batch"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, help="frames per sentence at most")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sentences = SENTENCES
    if args.sentences is not None:
        sentences = [line.strip() for line in args.sentences.read_text(encoding="utf-8").splitlines()]
        sentences = [line for line in sentences if line]

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForTextToWaveform.from_pretrained(args.model, dtype=dtype).to(device)
    processor = AutoProcessor.from_pretrained(args.model)
    processor.codec.to(device)

    args.output_dir.mkdir(parents=True, exist_ok=True)
    options = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    torch.manual_seed(args.seed)
    paths = []
    for start in range(0, len(sentences), args.batch_size):
        batch = sentences[start : start + args.batch_size]
        inputs = processor(batch).to(device)  # left-padded [B, T]
        output = model.generate(**inputs, **options)  # sequences [B, 10, N], lengths [B]
        for offset, audio in enumerate(processor.batch_decode(output.sequences, output.lengths)):
            path = args.output_dir / f"{start + offset:04d}.wav"
            processor.save_audio(audio, path)
            paths.append(path)
            print(f"{path}: {len(audio) / processor.sampling_rate:.2f} s  {batch[offset]!r}")
    return paths


if __name__ == "__main__":
    main()
