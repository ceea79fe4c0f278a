"""A two-speaker dialogue with inline tags, each speaker cloned from a reference clip.

    python examples/dialogue.py --model ./s2-pro -o dialogue.wav \\
        --reference-audio alice.wav --reference-text "What Alice says in alice.wav." \\
        --reference-audio bob.wav --reference-text "What Bob says in bob.wav."

Reference i gives the voice of ``<|speaker:i|>``. Without references the model picks voices itself. Long
dialogue is generated a few turns at a time (``generate_long``); every chunk sees the earlier chunks' text and
audio, so voices stay consistent.
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoModelForTextToWaveform, AutoProcessor

from transformers_fish_s2 import generate_long  # importing the package also registers the Auto classes

DIALOGUE = (
    "<|speaker:0|>[whisper] Did you hear that?"
    "<|speaker:1|>[laughing] It was only the wind!"
    "<|speaker:0|>[sigh] If you say so. [short pause] Let's go home."
)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--text", default=DIALOGUE, help="dialogue with <|speaker:N|> turns")
    parser.add_argument("--reference-audio", action="append", default=[], help="voice of speaker 0, 1, ...")
    parser.add_argument("--reference-text", action="append", default=[], help="transcripts, same order")
    parser.add_argument("--model", default="fishaudio/s2-pro", help="checkpoint folder or Hub id")
    parser.add_argument("-o", "--output", default="dialogue.wav")
    parser.add_argument("--chunk-length", type=int, default=300, help="UTF-8 bytes of turns per chunk")
    parser.add_argument("--max-new-tokens", type=int, help="frames per chunk at most")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if len(args.reference_audio) != len(args.reference_text):
        parser.error("give one --reference-text per --reference-audio")

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForTextToWaveform.from_pretrained(args.model, dtype=dtype).to(device)
    processor = AutoProcessor.from_pretrained(args.model)
    processor.codec.to(device)

    # A transcript is tagged <|speaker:i|> for the i-th reference unless it already carries a speaker tag.
    references = [
        {"audio": audio, "text": text} for audio, text in zip(args.reference_audio, args.reference_text)
    ]
    markup = processor.parse_markup(args.text)
    chunks = processor.chunk_text(args.text, chunk_length=args.chunk_length)
    print(f"speakers {markup.speakers}, tags {list(markup.tags)}, {len(chunks)} chunk(s)")
    options = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    torch.manual_seed(args.seed)
    output = generate_long(model, processor, args.text, references, chunk_length=args.chunk_length, **options)
    audio = processor.decode(output)
    processor.save_audio(audio, args.output)
    print(f"wrote {args.output}: {len(audio) / processor.sampling_rate:.2f} s of audio")
    return args.output


if __name__ == "__main__":
    main()
