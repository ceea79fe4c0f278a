"""The ``fish-s2`` command: speak text, encode/decode reference codes, estimate memory, run the evaluation.

    fish-s2 speak "Hello!" -o hello.wav                      # fishaudio/s2-pro from the Hub (or its cache)
    fish-s2 speak --model ./s2-pro --text-file story.txt -o story.wav --stream
    fish-s2 speak "Hi" --reference-audio me.wav --reference-text "What I say in me.wav" -o clone.wav
    fish-s2 encode me.wav --text "What I say in me.wav" -o me.codes.safetensors   # reuse without re-encoding
    fish-s2 speak "Hi" --reference-audio me.codes.safetensors -o clone.wav
    fish-s2 decode me.codes.safetensors -o me.decoded.wav
    fish-s2 memory --quantization none --quantization 4bit
    fish-s2 finetune --data my_voice/ --out my_voice_lora/   # LoRA adapter from clips + .lab transcripts
    fish-s2 synthesize lines.jsonl -o corpus/ --voice alice=alice.codes.safetensors   # a dataset of many texts
    fish-s2 serve --model ./s2-pro --port 8000                 # HTTP speech server (see docs/server.md)
    fish-s2 eval --help

Heavy imports happen inside the commands. User mistakes (bad arguments, missing files, an unreachable Hub)
end with a one-line ``fish-s2 <command>: error: ...`` and exit status 1 (2 for malformed command lines);
``--traceback`` shows the full trace instead.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .files import atomic_output, check_writable
from .hub import DEFAULT_MODEL_ID

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
CODES_KEY = "codes"
CODES_FORMAT = "fish-s2-codes"
QUANTIZATION_ALIASES = {"8bit": "bnb-8bit", "4bit": "bnb-4bit", "int8": "quanto-int8", "int4": "quanto-int4"}
QUANTIZATION_CHOICES = ("none", *QUANTIZATION_ALIASES, *QUANTIZATION_ALIASES.values())


class CLIError(Exception):
    """A mistake in the command line or its inputs; printed without a stack trace."""


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanup runs (temporary files, the generation thread) before
    ``fish-s2`` exits with status 143. A ``BaseException`` like ``KeyboardInterrupt``, so no handler swallows it."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


SIGTERM_CLEANUP_COMMANDS = ("speak", "encode", "decode")
"""Commands that write files and so turn SIGTERM into a clean exit (143); others (``serve``: uvicorn drains and
re-raises the signal itself) keep the default handling."""


@contextmanager
def _sigterm_raises(command: str) -> Iterator[None]:
    """Turn SIGTERM into :class:`_Terminated` while a file-writing command runs (main thread only: signals go
    there)."""
    if command not in SIGTERM_CLEANUP_COMMANDS or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ------------------------------------------------------------------------------------------------------------
# Codes files (``fish-s2 encode`` writes them, ``speak --reference-audio`` and ``decode`` read them)
# ------------------------------------------------------------------------------------------------------------


def write_codes_file(path: str | os.PathLike, codes, *, sampling_rate: int, text: str | None = None) -> None:
    """Save codes ``[num_codebooks, frames]`` as safetensors (key ``codes``), with the transcript in the metadata."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    metadata = {"format": CODES_FORMAT, "sampling_rate": str(sampling_rate)}
    if text is not None:
        metadata["text"] = text
    try:
        with atomic_output(path) as temporary:
            save_file(
                {CODES_KEY: torch.as_tensor(codes, dtype=torch.long).contiguous()},
                str(temporary),
                metadata=metadata,
            )
    except SafetensorError as error:  # e.g. a full disk
        raise OSError(f"cannot write codes to {str(path)!r}: {error}") from error


def read_codes_file(path: str | os.PathLike):
    """Codes ``[num_codebooks, frames]`` (int64) and the stored transcript (or ``None``) of a codes file."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CLIError(f"codes file not found: {str(path)!r}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            if CODES_KEY not in handle.keys():  # noqa: SIM118 (safe_open has no __contains__)
                raise CLIError(
                    f"{str(path)!r} has no {CODES_KEY!r} tensor; write codes files with `fish-s2 encode`"
                )
            codes, metadata = handle.get_tensor(CODES_KEY), handle.metadata() or {}
    except SafetensorError as error:
        raise CLIError(f"{str(path)!r} is not a safetensors codes file: {error}") from None
    from .validation import is_integer_tensor

    if codes.dim() != 2 or not is_integer_tensor(codes):
        raise CLIError(
            f"{str(path)!r}: expected integer codes [num_codebooks, frames], got {codes.dtype} {list(codes.shape)}"
        )
    return codes.long(), metadata.get("text")


# ------------------------------------------------------------------------------------------------------------
# Argument parsing
# ------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fish-s2",
        description="Fish Audio S2 text-to-speech on Hugging Face transformers.",
        epilog="The default model fishaudio/s2-pro is downloaded from the Hugging Face Hub (about 11 GB; its "
        "license must be accepted there). Offline, pass a local checkpoint folder with --model.",
    )
    parser.add_argument("--traceback", action="store_true", help="show full stack traces of errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    speak = commands.add_parser("speak", help="synthesize speech from text", description=_speak.__doc__)
    speak.add_argument("text", nargs="?", help="text to speak; '-' reads standard input")
    speak.add_argument("--text-file", type=Path, help="read the text from this UTF-8 file")
    speak.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("out.wav"),
        help=f"audio file to write ({', '.join(AUDIO_EXTENSIONS)}; default out.wav)",
    )
    _add_model_options(speak)
    speak.add_argument(
        "--dtype",
        choices=("auto", "bfloat16", "float16", "float32"),
        default="auto",
        help="model weights (auto: bfloat16 on CUDA, float32 otherwise)",
    )
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
        help="reference clip (wav/flac/ogg/mp3), or a codes file from `fish-s2 encode`",
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
    sampling.add_argument("--temperature", type=float)
    sampling.add_argument("--top-p", type=float)
    sampling.add_argument("--top-k", type=int)
    sampling.add_argument("--greedy", action="store_true", help="always take the most likely token")
    sampling.add_argument(
        "--chunk-length",
        type=int,
        help="UTF-8 bytes of speaker turns per chunk of long dialogue (default 300)",
    )
    out = speak.add_argument_group("output")
    out.add_argument(
        "--stream",
        action="store_true",
        help="write audio chunks as they are made (to a hidden .partial file beside --output, renamed when done)",
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
        help="progress bar over generated frames (default: when stderr is a terminal)",
    )
    speak.set_defaults(run=_speak)

    encode = commands.add_parser(
        "encode", help="encode a reference clip to codes", description=_encode.__doc__
    )
    encode.add_argument("audio", type=Path, help="audio file (wav/flac/ogg/mp3, any rate, mixed to mono)")
    encode.add_argument("-o", "--output", type=Path, help="codes file (default: <audio>.codes.safetensors)")
    encode.add_argument("--text", help="transcript of the clip, stored with the codes")
    _add_model_options(encode)
    encode.set_defaults(run=_encode)

    decode = commands.add_parser("decode", help="decode a codes file to audio", description=_decode.__doc__)
    decode.add_argument(
        "codes", type=Path, help="codes file written by `fish-s2 encode` or `speak --save-codes`"
    )
    decode.add_argument("-o", "--output", type=Path, help="audio file (default: <codes>.wav)")
    _add_model_options(decode)
    decode.set_defaults(run=_decode)

    memory = commands.add_parser(
        "memory", help="estimate memory without loading weights", description=_memory.__doc__
    )
    memory.add_argument("--model", help="checkpoint folder or Hub id (default: the released s2-pro config)")
    memory.add_argument("--dtype", default="bf16", help="compute dtype: bf16, fp16 or fp32 (default bf16)")
    memory.add_argument(
        "--quantization",
        action="append",
        choices=QUANTIZATION_CHOICES,
        help="repeat to compare several in one table (default: none)",
    )
    memory.add_argument("--max-tokens", type=int, default=2048, help="KV-cache slots (prompt + frames)")
    memory.add_argument("--batch-size", type=int, default=1)
    memory.add_argument("--codec", choices=("full", "decoder", "none"), default="full")
    memory.set_defaults(run=_memory)

    from .cli_finetune import add_finetune_parser

    add_finetune_parser(commands, AUDIO_EXTENSIONS)

    from .synthesis.cli import add_synthesize_parser

    add_synthesize_parser(commands)

    from .cli_serve import add_serve_parsers

    add_serve_parsers(commands)  # serve, voices

    # `fish-s2 eval ...` is handed to the evaluation runner before parsing; listed here for --help.
    commands.add_parser(
        "eval", help="Seed-TTS-eval style evaluation (see `fish-s2 eval --help`)", add_help=False
    )
    return parser


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL_ID,
        help=f"checkpoint folder or Hub repo id (default {DEFAULT_MODEL_ID})",
    )
    parser.add_argument("--device", help="cuda, cuda:1, cpu, mps, ... (default: cuda if available)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fish-s2`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["eval"]:
        from .evaluation.runner import main as evaluation_main

        return evaluation_main(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a malformed command line (2, message already printed)
        return int(exit_.code or 0)
    try:
        with _sigterm_raises(args.command):
            args.run(args)
    except KeyboardInterrupt:
        print("fish-s2: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("fish-s2: terminated", file=sys.stderr)
        return 143
    except (CLIError, ValueError, OSError) as error:
        if args.traceback:
            raise
        print(f"fish-s2 {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------------------------------------------
# speak
# ------------------------------------------------------------------------------------------------------------


def _speak(args: argparse.Namespace) -> None:
    """Synthesize speech from text (an argument, --text-file, or '-' for standard input) into an audio file.
    Text may contain speaker turns (<|speaker:0|>...) and inline tags ([whisper], [laughing], ...); long
    dialogue is generated chunk by chunk, each chunk conditioned on the previous ones."""
    import torch

    from .processing import generate_long

    text = _read_text(args)
    _check_audio_path(args.output, "--output")
    if args.save_codes is not None:
        _check_codes_path(args.save_codes, "--save-codes")
    references = _reference_specs(args)
    generation = _generation_kwargs(args)

    model, processor = _load(
        args.model,
        args.device,
        None if args.dtype == "auto" else args.dtype,
        QUANTIZATION_ALIASES.get(args.quantization, args.quantization),
    )
    references = [_load_reference(spec) for spec in references]
    chunks = processor.chunk_text(text, chunk_length=args.chunk_length)
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    progress = _FrameProgress(
        len(chunks), frames_per_second=processor.codec.config.frame_rate, disable=not show_progress
    )
    generate = dict(
        processor=processor,
        text=text,
        references=references or None,
        chunk_length=args.chunk_length,
        compile=args.compile,
        **generation,
    )
    if args.seed is not None:
        torch.manual_seed(args.seed)
    start = time.perf_counter()
    try:
        if args.stream:
            output, samples = _generate_streaming(model, processor, generate, progress, args.output)
        else:
            output = generate_long(model, streamer=progress, **generate)
            samples = _write_audio(processor, output, args.output)
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
        )
    seconds = samples / processor.sampling_rate
    rtf = f", RTF {elapsed / seconds:.2f}" if seconds else ""
    print(
        f"wrote {args.output}: {seconds:.2f} s of audio ({frames} frames) in {elapsed:.1f} s{rtf}",
        file=sys.stderr,
    )
    if frames == 0:
        print("warning: the model produced no audio frames", file=sys.stderr)
    elif not bool(output.eos_reached[0]):
        print(
            "warning: generation stopped at --max-new-tokens before the end of speech; the audio may be cut",
            file=sys.stderr,
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


def _check_audio_path(path: Path, option: str) -> None:
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        raise CLIError(f"{option} {str(path)!r}: use one of the extensions {', '.join(AUDIO_EXTENSIONS)}")
    _check_output_folder(path, option)


def _check_codes_path(path: Path, option: str) -> None:
    if path.suffix.lower() != ".safetensors":
        raise CLIError(f"{option} {str(path)!r}: codes files end in .safetensors")
    _check_output_folder(path, option)


def _check_output_folder(path: Path, option: str) -> None:
    """Before any model is loaded: the folder exists and a file can be written there (not read-only, not full)."""
    if not path.parent.is_dir():
        raise CLIError(f"{option} {str(path)!r}: folder {str(path.parent)!r} does not exist")
    try:
        check_writable(path)
    except OSError as error:
        raise CLIError(f"{option}: {error}") from None


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
    return list(zip(audios, texts or [None] * len(audios)))


def _load_reference(spec: tuple[Path, str | None]) -> dict:
    audio, text = spec
    if audio.suffix.lower() != ".safetensors":
        return {"text": text, "audio": str(audio)}
    codes, stored = read_codes_file(audio)
    if text is None and stored is None:
        raise CLIError(f"{str(audio)!r} stores no transcript; pass --reference-text for it")
    return {"text": stored if text is None else text, "codes": codes}


def _generation_kwargs(args: argparse.Namespace) -> dict:
    sampling = {"temperature": args.temperature, "top_p": args.top_p, "top_k": args.top_k}
    kwargs = {key: value for key, value in sampling.items() if value is not None}
    if args.greedy:
        if kwargs:
            raise CLIError(
                f"--greedy takes the most likely token; it cannot be combined with {sorted(kwargs)}"
            )
        kwargs["do_sample"] = False
    if args.max_new_tokens is not None:
        if args.max_new_tokens < 1:
            raise CLIError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
        kwargs["max_new_tokens"] = args.max_new_tokens
    if args.chunk_length is not None and args.chunk_length < 1:
        raise CLIError(f"--chunk-length must be at least 1, got {args.chunk_length}")
    return kwargs


def _load(model: str, device: str | None, dtype: str | None = None, quantization: str | None = None):
    from .hub import load_model_and_processor
    from .modeling import FishS2CheckpointError

    _check_device(device)
    try:
        model, processor = load_model_and_processor(
            model, device=device, dtype=dtype, quantization=quantization
        )
    except FishS2CheckpointError as error:  # a corrupt or mismatched download: the message says what to do
        raise CLIError(str(error)) from error
    if processor.codec is None:
        raise CLIError("the checkpoint has no codec (codec.pth or codec/), so no audio can be made")
    return model, processor


def _check_device(device: str | None) -> None:
    import torch

    if device is None:
        return
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise CLIError(f"--device {device!r} is not a device name (cpu, cuda, cuda:1, mps, ...)") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {device}: CUDA is not available on this machine (try --device cpu)")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise CLIError(f"--device {device}: MPS is not available on this machine (try --device cpu)")


class _FrameProgress:
    """A streamer that counts generated frames on a tqdm bar and passes them on to another streamer."""

    def __init__(self, chunks: int, *, frames_per_second: float, disable: bool):
        from tqdm.auto import tqdm

        self.inner = None
        self.frames_per_second = frames_per_second
        self.bar = tqdm(
            desc=f"speaking ({chunks} chunk{'s' * (chunks != 1)})",
            unit=" frames",
            disable=disable,
            file=sys.stderr,
        )

    def put(self, value) -> None:
        self.bar.update(value.shape[-1])
        self.bar.set_postfix_str(f"{self.bar.n / self.frames_per_second:.1f} s audio", refresh=False)
        if self.inner is not None:
            self.inner.put(value)

    def end(self) -> None:
        if self.inner is not None:
            self.inner.end()

    def fail(self, error: BaseException) -> None:
        if self.inner is not None:
            self.inner.fail(error)

    def close(self) -> None:
        self.bar.close()


def _write_audio(processor, output, path: Path) -> int:
    """Decode a one-row generation output into ``path`` in bounded memory; returns the number of samples (an empty
    output gives an empty but valid file, so that a caller's pipeline does not break)."""
    return processor.save_decoded_audio(output.sequences[0, :, : int(output.lengths[0])], path)


def _generate_streaming(model, processor, generate: dict, progress: _FrameProgress, path: Path):
    """Generate in a worker thread and append each decoded chunk to the file as soon as it arrives (under a
    temporary name, renamed when complete: a failed run leaves no partial file at ``path``).

    If the main thread stops early (Ctrl-C, SIGTERM, a failed write), the worker is cancelled between two frames
    and joined before the exception goes on: a thread still inside torch at interpreter exit aborts the process
    ("terminate called without an active exception")."""
    import numpy as np
    import torch

    from .modeling.audio_streamer import FishS2AudioStreamer
    from .processing import generate_long
    from .processing.audio import audio_writer

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
    with audio_writer(path, processor.sampling_rate) as sink, torch.no_grad():
        worker.start()
        try:
            for chunk in streamer:
                sink.write(np.clip(chunk.numpy(), -1.0, 1.0))
                sink.flush()
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
        except (KeyboardInterrupt, _Terminated):
            continue


# ------------------------------------------------------------------------------------------------------------
# encode / decode / memory
# ------------------------------------------------------------------------------------------------------------


def _encode(args: argparse.Namespace) -> None:
    """Encode a reference clip into codec codes once, so later `speak --reference-audio CODES` skips encoding."""
    from .processing.audio import ReferenceEncoder, load_audio

    output = args.output or args.audio.with_name(args.audio.stem + ".codes.safetensors")
    _check_codes_path(output, "--output")
    if not args.audio.is_file():
        raise CLIError(f"audio file not found: {str(args.audio)!r}")
    if args.text is not None and not args.text.strip():
        raise CLIError("--text is empty; give the transcript of the clip or leave --text out")
    _, processor = _load(args.model, args.device, quantization=None)
    waveform = load_audio(args.audio, target_rate=processor.sampling_rate, name=str(args.audio))
    codes = ReferenceEncoder(processor.codec, max_entries=0)(waveform)
    write_codes_file(output, codes, text=args.text, sampling_rate=processor.sampling_rate)
    print(
        f"wrote {output}: {codes.shape[1]} frames x {codes.shape[0]} codebooks "
        f"({len(waveform) / processor.sampling_rate:.2f} s of audio)",
        file=sys.stderr,
    )


def _decode(args: argparse.Namespace) -> None:
    """Decode a codes file (from `fish-s2 encode` or `speak --save-codes`) back to audio with the codec."""
    output = args.output or args.codes.with_name(args.codes.name.split(".")[0] + ".wav")
    _check_audio_path(output, "--output")
    codes, _ = read_codes_file(args.codes)
    _, processor = _load(args.model, args.device, quantization=None)
    samples = processor.save_decoded_audio(codes, output)  # any length, in bounded memory
    print(
        f"wrote {output}: {samples / processor.sampling_rate:.2f} s of audio ({codes.shape[1]} frames)",
        file=sys.stderr,
    )


def _memory(args: argparse.Namespace) -> None:
    """Estimate the memory of model + codec + KV cache per dtype/quantization, from the config alone."""
    from .hub import hub_errors
    from .memory import estimate_memory, format_memory_table

    schemes = [QUANTIZATION_ALIASES.get(q, q) for q in (args.quantization or ["none"])]
    with hub_errors(args.model or DEFAULT_MODEL_ID):
        estimates = [
            estimate_memory(
                args.model,
                dtype=args.dtype,
                quantization=scheme,
                max_tokens=args.max_tokens,
                batch_size=args.batch_size,
                codec=args.codec,
            )
            for scheme in schemes
        ]
    print(estimates[0].to_table() if len(estimates) == 1 else format_memory_table(estimates))


if __name__ == "__main__":
    sys.exit(main())
