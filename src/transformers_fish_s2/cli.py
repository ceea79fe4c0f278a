"""The ``fish-s2`` command: speak text, encode/decode reference codes, estimate memory, run the evaluation.

    fish-s2 speak "Hello!" -o hello.wav                      # fishaudio/s2-pro from the Hub (or its cache)
    fish-s2 speak --model ./s2-pro --text-file story.txt -o story.wav --stream
    fish-s2 speak "Hi" --model ./s2-pro -o - | aplay          # WAV on standard output
    fish-s2 speak "Hi" --reference-audio me.wav --reference-text "What I say in me.wav" -o clone.wav
    fish-s2 encode me.wav --text "What I say in me.wav" -o me.codes.safetensors   # reuse without re-encoding
    fish-s2 speak "Hi" --reference-audio me.codes.safetensors -o clone.wav
    fish-s2 decode me.codes.safetensors -o me.decoded.wav
    fish-s2 memory --quantization none --quantization 4bit
    fish-s2 finetune --data my_voice/ --out my_voice_lora/   # LoRA adapter from clips + .lab transcripts
    fish-s2 synthesize lines.jsonl -o corpus/ --voice alice=alice.codes.safetensors   # a dataset of many texts
    fish-s2 serve --model ./s2-pro --port 8000                 # HTTP speech server (see docs/server.md)
    fish-s2 eval --help

Adding a subcommand: write ``add_<name>_parser(commands)`` in its own module (it builds the subparser and
sets ``run=`` to a handler that imports its heavy modules inside), then call it in :func:`build_parser`.
The options every subcommand shares (-q/-v, --threads, --traceback) are added to each one there.

Only argparse and the standard library are imported until a command runs, so ``--help``, ``--version`` and
malformed command lines answer at once; torch and transformers are imported just before the handler.
User mistakes (bad arguments, missing files, an unreachable Hub) end with a one-line
``fish-s2 <command>: error: ...`` and exit status 1 (2 for malformed command lines); ``--traceback`` shows
the full trace instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
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
DTYPE_CHOICES = ("auto", "bfloat16", "float16", "float32")
DTYPE_ALIASES = {
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
    "fp32": "float32",
    "float": "float32",
}
NOISY_LOGGERS = ("transformers", "bitsandbytes", "torch._inductor", "torch._dynamo", "optimum.quanto")
"""Libraries whose warnings and info messages are hidden unless -v is given."""

logger = logging.getLogger("transformers_fish_s2.cli")
"""The CLI's own messages (``wrote ...``, warnings about the input); -q keeps only warnings and errors."""


class CLIError(Exception):
    """A mistake in the command line or its inputs; printed without a stack trace."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanup runs (temporary files, the generation thread) before
    ``fish-s2`` exits with status 143. A ``BaseException`` like ``KeyboardInterrupt``, so no handler swallows it."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


SIGTERM_CLEANUP_COMMANDS = ("speak", "encode", "decode")
"""Commands that write files and so turn SIGTERM into a clean exit (143); others (``serve``: uvicorn drains and
re-raises the signal itself) keep the default handling."""


@contextmanager
def _sigterm_raises(command: str) -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while a file-writing command runs (main thread only: signals go
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


def write_codes_file(
    path: str | os.PathLike, codes, *, sampling_rate: int, text: str | None = None, model: str | None = None
) -> None:
    """Save codes ``[num_codebooks, frames]`` as safetensors (key ``codes``), with the transcript, the codec's
    sample rate and the checkpoint name in the metadata (so another checkpoint can tell it was not made by it)."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    metadata = {"format": CODES_FORMAT, "sampling_rate": str(sampling_rate)}
    if text is not None:
        metadata["text"] = text
    if model is not None:
        metadata["model"] = model
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
    codes, metadata = read_codes_and_metadata(path)
    return codes, metadata.get("text")


def read_codes_and_metadata(path: str | os.PathLike):
    """Codes ``[num_codebooks, frames]`` (int64) and the metadata of a codes file."""
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
    return codes.long(), metadata


def check_codes_match_checkpoint(path: str | os.PathLike, codes, metadata: dict, processor) -> None:
    """Refuse codes that a different codec wrote (another sample rate or number of codebooks): they would
    decode to noise or fail deep inside the model. Checkpoints sharing a codec share its codes."""
    config = processor.codec.config
    problems = []
    if metadata.get("sampling_rate", str(config.sampling_rate)) != str(config.sampling_rate):
        problems.append(
            f"its codec runs at {metadata['sampling_rate']} Hz, this one at {config.sampling_rate} Hz"
        )
    if codes.shape[0] != config.num_codebooks:
        problems.append(f"it has {codes.shape[0]} codebooks, this codec {config.num_codebooks}")
    if problems:
        made_by = f" (written with --model {metadata['model']})" if "model" in metadata else ""
        raise CLIError(
            f"{str(path)!r} comes from another checkpoint{made_by}: {'; '.join(problems)}. Encode the clip "
            "again with `fish-s2 encode --model <this checkpoint>`"
        )


# ------------------------------------------------------------------------------------------------------------
# Argument parsing
# ------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .cli_speak import add_speak_parser

    parser = argparse.ArgumentParser(
        prog="fish-s2",
        description="Fish Audio S2 text-to-speech on Hugging Face transformers.",
        epilog="The default model fishaudio/s2-pro is downloaded from the Hugging Face Hub (about 11 GB; its "
        "license must be accepted there). Offline, pass a local checkpoint folder with --model.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_common_options(parser, default=None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_speak_parser(commands)

    encode = commands.add_parser(
        "encode", help="encode a reference clip to codes", description=_encode.__doc__
    )
    encode.add_argument("audio", type=Path, help="audio file (wav/flac/ogg/mp3, any rate, mixed to mono)")
    encode.add_argument("-o", "--output", type=Path, help="codes file (default: <audio>.codes.safetensors)")
    encode.add_argument("--text", help="transcript of the clip, stored with the codes")
    add_model_options(encode)
    encode.set_defaults(run=_encode)

    decode = commands.add_parser("decode", help="decode a codes file to audio", description=_decode.__doc__)
    decode.add_argument(
        "codes", type=Path, help="codes file written by `fish-s2 encode` or `speak --save-codes`"
    )
    decode.add_argument("-o", "--output", type=Path, help="audio file (default: <codes>.wav)")
    add_model_options(decode)
    decode.set_defaults(run=_decode)

    memory = commands.add_parser(
        "memory", help="estimate memory without loading weights", description=_memory.__doc__
    )
    memory.add_argument("--model", help="checkpoint folder or Hub id (default: the released s2-pro config)")
    add_dtype_option(memory, help="compute dtype (auto: bfloat16, the CUDA default)")
    memory.add_argument(
        "--quantization",
        action="append",
        choices=QUANTIZATION_CHOICES,
        help="repeat to compare several in one table (default: none)",
    )
    memory.add_argument(
        "--max-tokens", type=positive_int, default=2048, help="KV-cache slots (prompt + frames)"
    )
    memory.add_argument("--batch-size", type=positive_int, default=1)
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

    for name, subparser in commands.choices.items():
        if name != "eval":
            add_common_options(subparser, default=argparse.SUPPRESS)
        subparser.set_defaults(command_parser=subparser)
    return parser


def add_common_options(parser: argparse.ArgumentParser, *, default) -> None:
    """-q/-v, --threads and --traceback, accepted before or after the command name. Subcommands get
    ``default=argparse.SUPPRESS`` so that an option given before the command is not reset by them."""
    quiet_or_verbose = parser.add_mutually_exclusive_group()
    quiet_or_verbose.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default,
        help="only warnings and errors; no progress bar",
    )
    quiet_or_verbose.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="also show the libraries' messages (transformers, bitsandbytes, torch.compile)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=default,
        help="CPU threads for torch (default: torch's choice)",
    )
    parser.add_argument(
        "--traceback", action="store_true", default=default, help="show full stack traces of errors"
    )


def add_dtype_option(parser: argparse.ArgumentParser, *, help: str) -> None:
    """``--dtype`` with the one vocabulary every subcommand uses (the bf16/fp16/fp32 short forms too)."""
    parser.add_argument(
        "--dtype", type=dtype_name, default="auto", metavar="{" + ",".join(DTYPE_CHOICES) + "}", help=help
    )


def dtype_name(value: str) -> str:
    """One of :data:`DTYPE_CHOICES` from it or one of its short forms (``bf16``, ``fp32``, ...)."""
    name = DTYPE_ALIASES.get(value.lower(), value.lower())
    if name not in DTYPE_CHOICES:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {value!r} (choose from {', '.join(DTYPE_CHOICES)}; bf16, fp16, fp32 also work)"
        )
    return name


def positive_int(value: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model and --device, the same for every subcommand that loads a checkpoint."""
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL_ID,
        help=f"checkpoint folder or Hub repo id (default {DEFAULT_MODEL_ID})",
    )
    parser.add_argument("--device", help="cuda, cuda:1, cpu, mps, ... (default: cuda, else mps, else cpu)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fish-s2`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["eval"]:
        from .evaluation.cli import main as evaluation_main

        return evaluation_main(argv[1:], prog="fish-s2 eval")
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # argparse would print the top-level usage; the subcommand's is the useful one
            args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exit_:  # --help (0) or a malformed command line (2, message already printed)
        return int(exit_.code or 0)
    try:
        _prepare(args)
        with _sigterm_raises(args.command):
            args.run(args)
    except KeyboardInterrupt:
        print("fish-s2: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("fish-s2: terminated", file=sys.stderr)
        return 143
    except (CLIError, ValueError, OSError) as error:
        if args.traceback:
            raise
        print(f"fish-s2 {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


def _prepare(args: argparse.Namespace) -> None:
    """Import the package's heavy modules (the console script parses its command line without them), then
    apply -q/-v and --threads."""
    from . import load_public_api

    load_public_api()
    configure_output(quiet=bool(args.quiet), verbose=bool(args.verbose))
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)


class _StderrHandler(logging.Handler):
    """Writes bare messages to the current ``sys.stderr`` (looked up per message, so redirections apply)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


def configure_output(*, quiet: bool = False, verbose: bool = False) -> None:
    """Our messages at INFO (WARNING with -q, which also hides download and loading bars); the libraries'
    warnings and info messages hidden unless -v. Idempotent."""
    import warnings

    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as transformers_logging

    logger.handlers = [_StderrHandler()]
    logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)
    if not verbose:
        warnings.filterwarnings("ignore", module=r"(torch|transformers|bitsandbytes|optimum)(\.|$)")
    if quiet:
        disable_progress_bars()
        transformers_logging.disable_progress_bar()


def check_output_path(path: Path, option: str, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> None:
    """Refuse, before anything is loaded, an output file whose extension is wrong or whose folder is missing,
    read-only or full."""
    if path.suffix.lower() not in extensions:
        raise CLIError(f"{option} {str(path)!r}: use one of the extensions {', '.join(extensions)}")
    if not path.parent.is_dir():
        raise CLIError(f"{option} {str(path)!r}: folder {str(path.parent)!r} does not exist")
    try:
        check_writable(path)
    except OSError as error:
        raise CLIError(f"{option}: {error}") from None


def check_codes_path(path: Path, option: str) -> None:
    if path.suffix.lower() != ".safetensors":
        raise CLIError(f"{option} {str(path)!r}: codes files end in .safetensors")
    check_output_path(path, option, (".safetensors",))


def generation_kwargs_from_args(args: argparse.Namespace) -> dict:
    """The generate options from the command line, checked with the same table generate uses."""
    from .modeling.generation_options import FISH_S2_GENERATION_DEFAULTS, check_options

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
    if args.seed is not None and args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    try:
        check_options({**FISH_S2_GENERATION_DEFAULTS, **kwargs})
    except ValueError as error:
        option = str(error).removeprefix("generation config: ").split(" ", 1)
        raise CLIError(f"--{option[0].replace('_', '-')} {option[1]}") from None
    return kwargs


def load_checkpoint(
    model: str, device: str | None, dtype: str | None = None, quantization: str | None = None
):
    """Model and processor for a subcommand, with a checkpoint's problems as one-line :class:`CLIError`s."""
    from .hub import load_model_and_processor
    from .modeling import FishS2CheckpointError

    _check_device(device)
    try:
        model, processor = load_model_and_processor(
            model, device=device, dtype=None if dtype == "auto" else dtype, quantization=quantization
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


# ------------------------------------------------------------------------------------------------------------
# encode / decode / memory
# ------------------------------------------------------------------------------------------------------------


def _encode(args: argparse.Namespace) -> None:
    """Encode a reference clip into codec codes once, so later `speak --reference-audio CODES` skips encoding."""
    from .processing.audio import ReferenceEncoder, load_audio

    output = args.output or args.audio.with_name(args.audio.stem + ".codes.safetensors")
    check_codes_path(output, "--output")
    if not args.audio.is_file():
        raise CLIError(f"audio file not found: {str(args.audio)!r}")
    if args.text is not None and not args.text.strip():
        raise CLIError("--text is empty; give the transcript of the clip or leave --text out")
    _, processor = load_checkpoint(args.model, args.device, quantization=None)
    waveform = load_audio(args.audio, target_rate=processor.sampling_rate, name=str(args.audio))
    codes = ReferenceEncoder(processor.codec, max_entries=0)(waveform)
    write_codes_file(output, codes, text=args.text, sampling_rate=processor.sampling_rate, model=args.model)
    logger.info(
        f"wrote {output}: {codes.shape[1]} frames x {codes.shape[0]} codebooks "
        f"({len(waveform) / processor.sampling_rate:.2f} s of audio)"
    )


def _decode(args: argparse.Namespace) -> None:
    """Decode a codes file (from `fish-s2 encode` or `speak --save-codes`) back to audio with the codec."""
    output = args.output or args.codes.with_name(args.codes.name.split(".")[0] + ".wav")
    check_output_path(output, "--output")
    codes, metadata = read_codes_and_metadata(args.codes)
    _, processor = load_checkpoint(args.model, args.device, quantization=None)
    check_codes_match_checkpoint(args.codes, codes, metadata, processor)
    samples = processor.save_decoded_audio(codes, output)  # any length, in bounded memory
    logger.info(
        f"wrote {output}: {samples / processor.sampling_rate:.2f} s of audio ({codes.shape[1]} frames)"
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
                dtype="bfloat16" if args.dtype == "auto" else args.dtype,
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
