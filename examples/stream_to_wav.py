"""Stream: write audio to a WAV file while it is being generated, and report the time to first audio.

    python examples/stream_to_wav.py "A long paragraph to read aloud ..." --model ./s2-pro -o stream.wav

``generate`` runs in a worker thread and hands every frame to a ``FishS2AudioStreamer``; this thread decodes
them in chunks with the codec's causal streaming decoder (the chunks add up exactly to a full decode) and
appends each chunk to the file, so a player (or a network response) can start after the first ~0.25 s.
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np
import soundfile
import torch
from transformers import AutoModelForTextToWaveform, AutoProcessor

import transformers_fish_s2  # noqa: F401  (registers Fish S2 with transformers' Auto classes)
from transformers_fish_s2.modeling.audio_streamer import FishS2AudioStreamer


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "text", nargs="?", default="Streaming speech: you can hear this before it is finished."
    )
    parser.add_argument("--model", default="fishaudio/s2-pro", help="checkpoint folder or Hub id")
    parser.add_argument("-o", "--output", default="stream.wav")
    parser.add_argument("--first-chunk-frames", type=int, default=5, help="frames before the first audio")
    parser.add_argument("--chunk-frames", type=int, default=20, help="frames per later chunk")
    parser.add_argument("--max-new-tokens", type=int, help="frames at most (21.5 per second of audio)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForTextToWaveform.from_pretrained(args.model, dtype=dtype).to(device)
    processor = AutoProcessor.from_pretrained(args.model)
    processor.codec.to(device)

    inputs = processor(args.text).to(device)
    streamer = FishS2AudioStreamer(
        processor.codec, first_chunk_frames=args.first_chunk_frames, chunk_frames=args.chunk_frames
    )
    options = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    torch.manual_seed(args.seed)
    worker = threading.Thread(target=model.generate, kwargs={**inputs, **options, "streamer": streamer})

    start, first_audio, samples = time.perf_counter(), None, 0
    with soundfile.SoundFile(args.output, "w", samplerate=processor.sampling_rate, channels=1) as wav:
        worker.start()
        for chunk in streamer:  # float32 waveform pieces, in order
            if first_audio is None:
                first_audio = time.perf_counter() - start
            wav.write(np.clip(chunk.numpy(), -1.0, 1.0))
            wav.flush()
            samples += len(chunk)
    worker.join()
    seconds = samples / processor.sampling_rate
    if first_audio is None:
        print(f"wrote {args.output}: no audio was generated")
    else:
        print(f"wrote {args.output}: {seconds:.2f} s of audio, first chunk after {first_audio:.2f} s")
    return args.output


if __name__ == "__main__":
    main()
