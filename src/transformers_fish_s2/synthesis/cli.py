"""``fish-s2 synthesize``: a corpus of texts into an audio dataset, on one or many processes.

    fish-s2 synthesize lines.jsonl -o corpus/ --voice alice=alice.codes.safetensors --max-new-tokens 1024
    accelerate launch --multi_gpu --num_processes 8 -m transformers_fish_s2.cli synthesize lines.jsonl -o corpus/

Only argparse is imported at module level: ``fish-s2 --help`` must stay fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .inputs import DEFAULT_COLUMNS


def add_synthesize_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``synthesize`` on the ``fish-s2`` sub-command parser."""
    from ..cli import add_dtype_option, add_model_options

    parser = commands.add_parser(
        "synthesize", help="speak a corpus of texts into an audio dataset", description=run.__doc__
    )
    parser.add_argument(
        "input", help="a .jsonl/.csv/.txt file, a save_to_disk folder or a datasets name (Hub or local)"
    )
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="dataset folder (created; resumable)"
    )
    add_model_options(parser)
    add_dtype_option(parser, help="model weights (auto: bfloat16 on CUDA, float32 otherwise)")
    columns = parser.add_argument_group("input columns (defaults are used when the input has them)")
    columns.add_argument("--split", default="train", help="split of a datasets input (default train)")
    for role, default in DEFAULT_COLUMNS.items():
        columns.add_argument(
            f"--{role.replace('_', '-')}-column", metavar="NAME", help=f"default {default!r}"
        )
    columns.add_argument(
        "--voice", action="append", default=[], metavar="NAME=FILE",
        help="a voice the voice column may name: a codes file from `fish-s2 encode --text` (repeat)",
    )  # fmt: skip
    generation = parser.add_argument_group("generation (the same for every row)")
    generation.add_argument(
        "--seed", type=int, default=0, help="rows without a seed column get seed + row id"
    )
    generation.add_argument("--max-new-tokens", type=int, help="frames per text chunk at most (21.5 = 1 s)")
    generation.add_argument("--temperature", type=float)
    generation.add_argument("--top-p", type=float)
    generation.add_argument("--top-k", type=int)
    generation.add_argument("--greedy", action="store_true", help="always take the most likely token")
    generation.add_argument("--chunk-length", type=int, help="UTF-8 bytes per chunk of long text")
    run_options = parser.add_argument_group("running and output")
    run_options.add_argument("--batch-size", type=int, default=8, help="rows decoding together per process")
    run_options.add_argument(
        "--max-context", type=int, help="KV-cache positions per row (long multi-chunk texts)"
    )
    run_options.add_argument(
        "--compile", action="store_true", help="compile the frame step (CUDA graphs on CUDA)"
    )
    run_options.add_argument("--shard-size", type=int, default=64, help="rows per Parquet shard (default 64)")
    run_options.add_argument("--audio-format", choices=("wav", "flac"), default="wav",
                             help="wav: 32-bit float, exact; flac: 16-bit, ~4x smaller")  # fmt: skip
    run_options.add_argument(
        "--push-to-hub", metavar="REPO", help="upload the finished dataset to this Hub repo"
    )
    run_options.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="progress bar (default: when stderr is a terminal)",
    )  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    """Speak every row of a JSONL/CSV/TXT file or a datasets dataset into a Parquet audio dataset that
    `datasets.load_dataset(OUTPUT)` loads. Killed and restarted with the same command, it continues where it
    stopped. Under `accelerate launch` (or torchrun) the processes split the rows."""
    from ..cli import CLIError, generation_kwargs_from_args
    from ..hub import load_model_and_processor
    from .inputs import read_rows
    from .runner import process_state, synthesize

    try:
        import datasets  # noqa: F401  (the output's features; loaded here to fail before the model loads)
    except ImportError:
        raise CLIError("synthesize needs datasets: pip install 'transformers-fish-s2[synthesize]'") from None
    if args.push_to_hub:
        _check_can_push()
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")
    generation = generation_kwargs_from_args(args)
    if args.chunk_length is not None:
        generation["chunk_length"] = args.chunk_length
    columns = {role: getattr(args, f"{role}_column") for role in DEFAULT_COLUMNS}
    rows = read_rows(
        args.input,
        split=args.split,
        columns={role: name for role, name in columns.items() if name is not None},
        voices=_voices(args.voice),
        seed=args.seed,
    )
    state, device = process_state(args.device)
    model, processor = load_model_and_processor(
        args.model,
        device=device,
        dtype=None if args.dtype == "auto" else args.dtype,
    )
    if processor.codec is None:
        raise CLIError("the checkpoint has no codec (codec.pth or codec/), so no audio can be made")
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    summary = synthesize(
        model, processor, rows, args.output,
        generation=generation, shard_size=args.shard_size, max_batch_size=args.batch_size,
        max_context=args.max_context, compile=args.compile,
        audio_format=args.audio_format, model_name=str(args.model), state=state, progress=show_progress,
    )  # fmt: skip
    print(
        f"process {state.process_index + 1}/{state.num_processes}: {summary.rows} rows, "
        f"{summary.audio_seconds:.1f} s of audio in {summary.seconds:.1f} s "
        f"({summary.skipped_shards} shards already written)",
        file=sys.stderr,
    )
    if summary.manifest is not None:
        manifest = summary.manifest
        print(
            f"wrote {args.output}: {manifest['rows']} rows, {manifest['audio_seconds']:.1f} s",
            file=sys.stderr,
        )
        if args.push_to_hub:
            _push(args.output, args.push_to_hub)


def _voices(specs: list[str]) -> dict[str, list[dict]]:
    """``NAME=FILE`` voice definitions as references (codes files carry their transcript)."""
    from ..cli import CLIError, read_codes_file

    voices = {}
    for spec in specs:
        name, _, file = spec.partition("=")
        if not name or not file:
            raise CLIError(
                f"--voice {spec!r}: expected NAME=FILE (a codes file from `fish-s2 encode --text`)"
            )
        if name in voices:
            raise CLIError(f"--voice {name!r} is given twice")
        codes, text = read_codes_file(file)
        if text is None:
            raise CLIError(
                f"--voice {name}: {file!r} stores no transcript; encode it with `fish-s2 encode --text`"
            )
        voices[name] = [{"text": text, "codes": codes}]
    return voices


def _check_can_push() -> None:
    """Fail before hours of synthesis, not after, when the upload cannot happen."""
    from huggingface_hub import constants, get_token

    from ..cli import CLIError

    if constants.HF_HUB_OFFLINE:
        raise CLIError(
            "--push-to-hub: offline mode is on (HF_HUB_OFFLINE); push the folder later with `hf upload`"
        )
    if get_token() is None:
        raise CLIError("--push-to-hub needs a Hugging Face token: run `hf auth login` or set HF_TOKEN")


def _push(folder: Path, repo: str) -> None:
    from huggingface_hub import HfApi

    from ..hub import hub_errors

    with hub_errors(repo):
        api = HfApi()
        api.create_repo(repo, repo_type="dataset", exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=folder, repo_type="dataset")
    print(f"pushed {folder} to https://huggingface.co/datasets/{repo}", file=sys.stderr)
