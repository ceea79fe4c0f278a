"""``fish-s2 speak``: text (an argument, ``--text-file`` or standard input) to an audio file or standard output.

Every argument is checked before the model loads; plain text is spoken sentence chunk by sentence chunk
(long-form, ``--no-split-sentences`` to turn it off) with a chunk i/N progress bar and its ETA.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from pathlib import Path

from .cli import (
    AUDIO_EXTENSIONS,
    QUANTIZATION_ALIASES,
    QUANTIZATION_CHOICES,
    CLIError,
    Terminated,
    add_dtype_option,
    add_model_options,
    check_codes_match_checkpoint,
    check_codes_path,
    check_output_path,
    generation_kwargs_from_args,
    load_checkpoint,
    logger,
    read_codes_and_metadata,
    write_codes_file,
)
from .cli_output import STDOUT, STREAM_FORMATS

CONTROL_TOKEN = re.compile(r"<\|(?!speaker:\d+\|>)[^<>|\s]+\|>")
"""What S2's reserved tokens look like (``<|im_end|>``, ``<|semantic:7|>``); speaker tags are text."""

SHORT_REFERENCE_SECONDS = 3.0
SILENT_REFERENCE_PEAK = 1e-3
"""A reference clip below this peak level (about -60 dBFS) carries no voice to clone."""


def add_speak_parser(commands) -> None:
    """Register ``speak`` on the ``fish-s2`` subcommand parser."""
    speak = commands.add_parser("speak", help="synthesize speech from text", description=_speak.__doc__)
    speak.add_argument("text", nargs="?", help="text to speak; '-' reads standard input")
    speak.add_argument("--text-file", type=Path, help="read the text from this UTF-8 file (a whole story)")
    speak.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("out.wav"),
        help=f"audio file to write ({', '.join(AUDIO_EXTENSIONS)}; default out.wav), or '-' for standard output",
    )
    speak.add_argument(
        "--format",
        choices=STREAM_FORMATS,
        help="with -o -: a WAV stream (default) or raw 16-bit little-endian mono PCM at the model's rate",
    )
    add_model_options(speak)
    add_dtype_option(speak, help="model weights (auto: bfloat16 on CUDA, float32 otherwise)")
    speak.add_argument(
        "--quantization",
        choices=QUANTIZATION_CHOICES,
        default="none",
        help="quantize the slow AR: 8bit/4bit (bitsandbytes), int8/int4 (optimum-quanto)",
    )
    speak.add_argument(
        "--compile", action="store_true", help="torch.compile the frame step (first call compiles)"
    )
    voice = speak.add_argument_group("voice cloning (repeat for several references/speakers)")
    voice.add_argument(
        "--reference-audio",
        action="append",
        default=[],
        metavar="FILE",
        help="reference clip (wav/flac/ogg/mp3, ideally 5-30 s of clean speech), or a codes file from "
        "`fish-s2 encode`",
    )
    voice.add_argument(
        "--reference-text",
        action="append",
        default=[],
        metavar="TEXT",
        help="transcript of the matching --reference-audio (optional for codes files that store one)",
    )
    sampling = speak.add_argument_group("generation")
    sampling.add_argument("--seed", type=int, help="seed torch's generators for a reproducible sample")
    sampling.add_argument(
        "--max-new-tokens", type=int, help="frames per text chunk at most (21.5 frames = 1 s)"
    )
    sampling.add_argument("--temperature", type=float, help="> 0 (default 0.8)")
    sampling.add_argument("--top-p", type=float, help="in (0, 1] (default 0.8)")
    sampling.add_argument("--top-k", type=int, help=">= 0, 0 disables it (default 30)")
    sampling.add_argument("--greedy", action="store_true", help="always take the most likely token")
    sampling.add_argument(
        "--chunk-length",
        type=int,
        help="UTF-8 bytes per chunk: of sentences in plain text, of speaker turns in dialogue (default 300)",
    )
    sampling.add_argument(
        "--split-sentences",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="speak plain text in sentence chunks, each conditioned on the previous ones (default on; "
        "--no-split-sentences speaks it as one chunk, which stops after --max-new-tokens frames)",
    )
    out = speak.add_argument_group("output")
    out.add_argument(
        "--stream",
        action="store_true",
        help="write audio chunks as they are made (to standard output with -o -, else to a hidden .partial "
        "file beside --output, renamed when done)",
    )
    out.add_argument(
        "--save-codes",
        type=Path,
        metavar="FILE",
        help="also save the generated codes (.safetensors, for `fish-s2 decode`)",
    )
    out.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar over chunks with ETA (default: when stderr is a terminal and not -q)",
    )
    speak.set_defaults(run=_speak)


def _speak(args: argparse.Namespace) -> None:
    """Synthesize speech from text (an argument, --text-file, or '-' for standard input) into an audio file,
    or to standard output with -o -. Text may contain speaker turns (<|speaker:0|>...) and inline tags
    ([whisper], [laughing], ...). Long text is generated chunk by chunk (sentences of plain text, speaker
    turns of dialogue), each chunk conditioned on the previous ones."""
    import torch

    text = _read_text(args)
    stream_format = _check_output(args)
    references = _reference_specs(args)
    generation = generation_kwargs_from_args(args)
    _warn_about_reference_clips(references)
    if args.compile:
        logger.info(
            "--compile: compiling the frame step before the first frames (about a minute on a GPU, several "
            "on a CPU; inductor caches it for later runs)"
        )

    model, processor = load_checkpoint(
        args.model, args.device, args.dtype, QUANTIZATION_ALIASES.get(args.quantization, args.quantization)
    )
    references = [_load_reference(spec, processor) for spec in references]
    chunks = processor.chunk_text(text, chunk_length=args.chunk_length, split_sentences=args.split_sentences)
    show_progress = sys.stderr.isatty() and not args.quiet if args.progress is None else args.progress
    progress = _ChunkProgress(
        len(chunks), frames_per_second=processor.codec.config.frame_rate, disable=not show_progress
    )
    generate = dict(
        processor=processor,
        text=text,
        references=references or None,
        chunk_length=args.chunk_length,
        split_sentences=args.split_sentences,
        compile=args.compile,
        on_chunk=progress.chunk_done,
        **generation,
    )
    if args.seed is not None:
        torch.manual_seed(args.seed)
    start = time.perf_counter()
    try:
        if args.stream:
            output, samples = _generate_streaming(model, processor, generate, progress, args, stream_format)
        else:
            output = _generate_keeping_finished_chunks(
                model, processor, generate, progress, args, stream_format
            )
            samples = _write_whole(processor, output, args.output, stream_format)
    finally:
        progress.close()
    elapsed = time.perf_counter() - start

    frames = int(output.lengths[0])
    if args.save_codes is not None:
        write_codes_file(
            args.save_codes,
            output.sequences[0, :, :frames].cpu(),
            text=text,
            sampling_rate=processor.sampling_rate,
            model=args.model,
        )
    seconds = samples / processor.sampling_rate
    rtf = f", RTF {elapsed / seconds:.2f}" if seconds else ""
    where = "standard output" if str(args.output) == STDOUT else str(args.output)
    logger.info(f"wrote {where}: {seconds:.2f} s of audio ({frames} frames) in {elapsed:.1f} s{rtf}")
    if frames == 0 and str(args.output) == STDOUT:  # an empty file is reported by the writer (audio_writer)
        logger.warning("warning: the model produced no audio frames")
    elif not bool(output.eos_reached[0]):
        logger.warning(
            "warning: generation stopped at --max-new-tokens before the end of speech; the audio may be cut"
        )


def _read_text(args: argparse.Namespace) -> str:
    if (args.text is None) == (args.text_file is None):
        raise CLIError(
            "give the text to speak either as an argument ('-' for standard input) or with --text-file"
        )
    if args.text_file is not None:
        if not args.text_file.is_file():
            raise CLIError(f"--text-file not found: {str(args.text_file)!r}")
        try:
            text = args.text_file.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise CLIError(f"--text-file {str(args.text_file)!r} is not UTF-8 text: {error}") from None
    elif args.text == "-":
        text = _read_stdin()
    else:
        text = args.text
    from .processing.markup import is_blank

    if is_blank(text):  # whitespace and zero-width characters only
        raise CLIError("the text to speak is empty")
    _check_no_control_tokens(text, "the text to speak")
    return text.strip()


def _read_stdin() -> str:
    if sys.stdin is None or sys.stdin.closed:
        raise CLIError("standard input is closed; give the text as an argument or with --text-file")
    try:
        return sys.stdin.read()
    except UnicodeDecodeError as error:
        raise CLIError(f"standard input is not UTF-8 text: {error}") from None
    except OSError as error:
        raise CLIError(f"cannot read standard input: {error}") from None


def _check_no_control_tokens(text: str, what: str) -> None:
    match = CONTROL_TOKEN.search(text)
    if match:
        raise CLIError(
            f"{what} contains {match.group(0)!r}, a control token of the model's prompt, not speakable text; "
            "remove it (speaker tags <|speaker:N|> and [tags] are fine)"
        )


def _check_output(args: argparse.Namespace) -> str:
    """Check --output, --format and --save-codes; returns the format for standard output."""
    if args.save_codes is not None:
        check_codes_path(args.save_codes, "--save-codes")
    if str(args.output) == STDOUT:
        return args.format or "wav"
    if args.format is not None:
        raise CLIError(
            f"--format applies to -o - (standard output); {str(args.output)!r} takes the format of its extension"
        )
    check_output_path(args.output, "--output")
    return "wav"


def _reference_specs(args: argparse.Namespace) -> list[tuple[Path, str | None]]:
    """Pair every --reference-audio with its --reference-text, checking the files exist before loading."""
    audios, texts = [Path(a) for a in args.reference_audio], list(args.reference_text)
    for audio in audios:
        if not audio.is_file():
            raise CLIError(f"--reference-audio not found: {str(audio)!r}")
    codes_only = all(audio.suffix.lower() == ".safetensors" for audio in audios)
    if len(texts) != len(audios) and not (codes_only and not texts):
        raise CLIError(
            f"got {len(audios)} --reference-audio and {len(texts)} --reference-text; give one transcript per "
            "reference clip, in the same order (codes files from `fish-s2 encode --text` may omit all of them)"
        )
    for text in texts:
        if not text.strip():
            raise CLIError("a --reference-text is empty; give the transcript of its clip")
        _check_no_control_tokens(text, "--reference-text")
    return list(zip(audios, texts or [None] * len(audios)))


def _warn_about_reference_clips(references: list[tuple[Path, str | None]]) -> None:
    """Warn about clips too short or too quiet to carry a voice (they still work, the clone is just poor)."""
    from .processing.audio import read_audio

    for audio, _ in references:
        if audio.suffix.lower() == ".safetensors":
            continue
        waveform, rate = read_audio(audio, name="--reference-audio")
        seconds, peak = waveform.shape[-1] / rate, float(abs(waveform).max())
        if peak < SILENT_REFERENCE_PEAK:
            logger.warning(
                f"warning: --reference-audio {str(audio)!r} is silent (peak {peak:.1e}); no voice to clone"
            )
        elif seconds < SHORT_REFERENCE_SECONDS:
            logger.warning(
                f"warning: --reference-audio {str(audio)!r} is only {seconds:.1f} s long; clones from clips under "
                f"{SHORT_REFERENCE_SECONDS:g} s sound little like the speaker (5-30 s of clean speech work best)"
            )


def _load_reference(spec: tuple[Path, str | None], processor) -> dict:
    audio, text = spec
    if audio.suffix.lower() != ".safetensors":
        return {"text": text, "audio": str(audio)}
    codes, metadata = read_codes_and_metadata(audio)
    check_codes_match_checkpoint(audio, codes, metadata, processor)
    stored = metadata.get("text")
    if text is None and stored is None:
        raise CLIError(f"{str(audio)!r} stores no transcript; pass --reference-text for it")
    return {"text": stored if text is None else text, "codes": codes}


class _ChunkProgress:
    """A chunk i/N progress bar with ETA (tqdm), also a streamer that counts the frames and passes them on."""

    def __init__(self, chunks: int, *, frames_per_second: float, disable: bool):
        from tqdm.auto import tqdm

        self.inner = None
        self.frames = 0
        self.chunks_done = 0
        self.frames_per_second = frames_per_second
        self.bar = tqdm(
            total=chunks,
            desc=f"speaking ({chunks} chunk{'s' * (chunks != 1)})",
            unit="chunk",
            disable=disable,
            file=sys.stderr,
        )

    def put(self, value) -> None:
        self.frames += value.shape[-1]
        self.bar.set_postfix_str(
            f"{self.frames} frames, {self.frames / self.frames_per_second:.1f} s audio", refresh=False
        )
        if self.inner is not None:
            self.inner.put(value)

    def end(self) -> None:
        if self.inner is not None:
            self.inner.end()

    def fail(self, error: BaseException) -> None:
        if self.inner is not None:
            self.inner.fail(error)

    def chunk_done(self, index: int, num_chunks: int, codes) -> None:
        self.chunks_done = index + 1
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _generate_keeping_finished_chunks(model, processor, generate: dict, progress, args, stream_format: str):
    """``generate_long``; when a later chunk fails (or Ctrl-C), the chunks finished before it are written to
    --output before the error is reported, so their audio is not lost."""
    from .processing import generate_long

    try:
        return generate_long(model, streamer=progress, **generate)
    except BaseException as error:
        partial = getattr(error, "partial_output", None)
        if partial is not None:
            samples = _write_whole(processor, partial, args.output, stream_format)
            where = "standard output" if str(args.output) == STDOUT else repr(str(args.output))
            logger.warning(
                f"warning: chunk {progress.chunks_done + 1} failed; wrote the {progress.chunks_done} chunk(s) "
                f"finished before it to {where} ({samples / processor.sampling_rate:.2f} s of audio)"
            )
        raise


def _write_whole(processor, output, target: Path, stream_format: str) -> int:
    """Decode a one-row generation output and write it; returns the number of samples."""
    from .cli_output import write_audio

    frames = int(output.lengths[0])
    if str(target) != STDOUT:  # decoded a bounded chunk at a time, whatever the length
        return processor.save_decoded_audio(output.sequences[0, :, :frames], target)
    audio = processor.decode(output, return_tensors="np")
    write_audio(audio, target, processor.sampling_rate, stream_format)
    return len(audio)


def _generate_streaming(model, processor, generate: dict, progress: _ChunkProgress, args, stream_format: str):
    """Generate in a worker thread and write each decoded chunk as soon as it arrives.

    If the main thread stops early (Ctrl-C, SIGTERM, a failed write), the worker is cancelled between two frames
    and joined before the exception goes on: a thread still inside torch at interpreter exit aborts the process
    ("terminate called without an active exception")."""
    import torch

    from .cli_output import audio_stream
    from .modeling.audio_streamer import FishS2AudioStreamer
    from .processing import generate_long

    streamer = FishS2AudioStreamer(processor.codec)
    progress.inner = streamer
    result: dict = {}

    def work() -> None:
        try:
            result["output"] = generate_long(model, streamer=progress, **generate)
        except (
            BaseException
        ) as error:  # the streamer raises it in the main thread (generate_long told it already)
            streamer.fail(error)

    worker = threading.Thread(target=work, name="fish-s2-generate", daemon=True)
    samples = 0
    with audio_stream(args.output, processor.sampling_rate, stream_format) as sink, torch.no_grad():
        worker.start()
        try:
            for chunk in streamer:
                sink.write(chunk.numpy())
                samples += chunk.shape[-1]
        except BaseException:
            streamer.cancel()
            _join(worker)
            raise
        _join(worker)
    return result["output"], samples


def _join(worker: threading.Thread) -> None:
    """Wait for the generation thread (it stops within a frame once cancelled); a second Ctrl-C or SIGTERM meanwhile
    must not leave it running."""
    while worker.is_alive():
        try:
            worker.join()
        except (KeyboardInterrupt, Terminated):
            continue
