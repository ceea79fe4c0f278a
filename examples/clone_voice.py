"""Clone a voice: speak new text in the voice of a short reference clip (10-30 s works best).

    python examples/clone_voice.py "Nice to meet you." --reference-audio me.wav \\
        --reference-text "Exactly what I say in me.wav." --model ./s2-pro -o clone.wav

The transcript must match the clip; the model continues the reference as if the same speaker went on talking.
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
    parser.add_argument("text")
    parser.add_argument("--reference-audio", required=True, help="wav/flac/ogg/mp3, any sampling rate")
    parser.add_argument("--reference-text", required=True, help="transcript of the reference clip")
    parser.add_argument("--model", default="fishaudio/s2-pro", help="checkpoint folder or Hub id")
    parser.add_argument("-o", "--output", default="clone.wav")
    parser.add_argument("--max-new-tokens", type=int, help="frames at most (21.5 per second of audio)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForTextToWaveform.from_pretrained(args.model, dtype=dtype).to(device)
    processor = AutoProcessor.from_pretrained(args.model)
    processor.codec.to(device)

    # The processor reads the clip, resamples it to 44.1 kHz, encodes it with the codec (cached by content)
    # and puts transcript + codes into the system prompt the authors use for cloning.
    reference = {"audio": args.reference_audio, "text": args.reference_text}
    inputs = processor(args.text, references=[reference]).to(device)
    options = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    torch.manual_seed(args.seed)
    output = model.generate(**inputs, **options)
    audio = processor.decode(output)
    processor.save_audio(audio, args.output)
    print(f"wrote {args.output}: {len(audio) / processor.sampling_rate:.2f} s of audio")
    return args.output


if __name__ == "__main__":
    main()
