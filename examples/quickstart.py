"""Quickstart: text in, a 44.1 kHz WAV file out.

    python examples/quickstart.py "Hello! [laughing] This is Fish Audio S2." --model ./s2-pro -o hello.wav

``--model`` is a checkpoint folder (e.g. ``hf download fishaudio/s2-pro --local-dir s2-pro``) or a Hub id.
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoModelForTextToWaveform, AutoProcessor

import transformers_fish_s2  # noqa: F401  (registers Fish S2 with transformers' Auto classes)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("text", nargs="?", default="Hello! This is Fish Audio S2, running in transformers.")
    parser.add_argument("--model", default="fishaudio/s2-pro", help="checkpoint folder or Hub id")
    parser.add_argument("-o", "--output", default="hello.wav")
    parser.add_argument("--max-new-tokens", type=int, help="frames at most (21.5 per second of audio)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForTextToWaveform.from_pretrained(args.model, dtype=dtype).to(device)
    processor = AutoProcessor.from_pretrained(args.model)  # tokenizer + prompt builder + codec
    processor.codec.to(device)

    inputs = processor(args.text).to(device)  # input_ids, audio_codes, attention_mask
    options = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    torch.manual_seed(args.seed)
    output = model.generate(**inputs, **options)  # codes [1, 10, frames] + lengths
    audio = processor.decode(output)  # float32 waveform, 2048 samples per frame
    processor.save_audio(audio, args.output)
    print(f"wrote {args.output}: {len(audio) / processor.sampling_rate:.2f} s of audio")
    return args.output


if __name__ == "__main__":
    main()
