"""``fish-s2 serve`` (the speech server) and ``fish-s2 voices add|list|remove`` (its voices folder).

    fish-s2 serve --model ./s2-pro --port 8000 --max-batch-size 8 --voices-dir ./voices
    fish-s2 voices add alice alice.wav --text "What Alice says in the clip" --voices-dir ./voices
    fish-s2 voices list --voices-dir ./voices

Registered in ``cli.py``; heavy imports happen inside the commands.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .cli import CLIError, add_dtype_option, add_model_options, load_checkpoint

API_KEY_ENV = "FISH_S2_API_KEY"


def add_serve_parsers(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve", help="run the OpenAI- and fish-speech-compatible speech server", description=_serve.__doc__
    )
    add_model_options(serve)
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    serve.add_argument("--port", type=int, default=8000)
    add_dtype_option(serve, help="model weights (auto: bfloat16 on CUDA, float32 otherwise)")
    serve.add_argument("--compile", action="store_true", help="torch.compile the engine's frame step")
    serve.add_argument("--max-batch-size", type=int, default=8, help="requests generated at once (default 8)")
    serve.add_argument("--max-queue-size", type=int, default=64, help="requests that may wait for a slot")
    serve.add_argument(
        "--max-context", type=int, help="KV positions per slot (default: min(model context, 4096))"
    )
    serve.add_argument("--voices-dir", type=Path, help="saved voices (default: $FISH_S2_VOICES_DIR or "
                       "~/.local/share/fish-s2/voices)")  # fmt: skip
    serve.add_argument(
        "--api-key", help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}; unset: no key)"
    )
    serve.add_argument("--model-name", default="s2-pro", help="the model id /v1/models reports")
    serve.add_argument("--max-input-chars", type=int, default=4096)
    serve.add_argument("--max-references", type=int, default=4, help="inline reference clips per request")
    serve.add_argument("--max-reference-seconds", type=float, default=60.0)
    serve.add_argument("--max-body-mb", type=float, default=32.0, help="largest request body in MiB")
    serve.add_argument(
        "--drain-seconds", type=float, default=30.0, help="grace period for in-flight requests"
    )
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.set_defaults(run=_serve)

    voices = commands.add_parser("voices", help="manage saved voices", description=_voices.__doc__)
    actions = voices.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="encode a clip once and save it as a named voice")
    add.add_argument("name", help="1-64 letters, digits, '_' or '-'")
    add.add_argument("audio", type=Path, help="reference clip (wav/flac/ogg/mp3)")
    add.add_argument("--text", required=True, help="transcript of the clip")
    add.add_argument("--overwrite", action="store_true", help="replace a voice of the same name")
    add_model_options(add)
    for parser in (add, actions.add_parser("list", help="list saved voices"),
                   actions.add_parser("remove", help="delete a saved voice")):  # fmt: skip
        parser.add_argument(
            "--voices-dir", type=Path, help="default: $FISH_S2_VOICES_DIR or ~/.local/share/fish-s2/voices"
        )
    actions.choices["remove"].add_argument("name")
    voices.set_defaults(run=_voices)


def _serve(args: argparse.Namespace) -> None:
    """Serve speech over HTTP: OpenAI's POST /v1/audio/speech, fish-speech's POST /v1/tts, saved voices under
    /v1/voices, and /health, /ready, /metrics, /v1/models. Concurrent requests are batched frame by frame."""
    for name in ("max_batch_size", "port", "max_input_chars", "max_references"):
        if getattr(args, name) < (0 if name == "port" else 1):
            raise CLIError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    from .serving import FishS2Engine
    from .serving.app import create_app
    from .serving.server import run
    from .serving.speech import ServerSettings
    from .serving.voices import VoiceStore, default_voices_dir

    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    settings = ServerSettings(
        model_name=args.model_name,
        api_key=api_key,
        max_input_chars=args.max_input_chars,
        max_references=args.max_references,
        max_reference_seconds=args.max_reference_seconds,
        max_body_bytes=int(args.max_body_mb * 2**20),
        drain_seconds=args.drain_seconds,
    )
    model, processor = load_checkpoint(args.model, args.device, None if args.dtype == "auto" else args.dtype)
    engine = FishS2Engine(
        model,
        processor,
        max_batch_size=args.max_batch_size,
        max_queue_size=args.max_queue_size,
        max_context=args.max_context,
        compile=args.compile,
    )
    voices_dir = args.voices_dir or default_voices_dir()
    app = create_app(engine, VoiceStore(voices_dir), settings)
    print(
        f"fish-s2 serve: listening on http://{args.host}:{args.port} | model {args.model} on {model.device} "
        f"({model.dtype}) | max batch size {args.max_batch_size}, queue {args.max_queue_size} | voices in "
        f"{voices_dir} | API key {'required' if api_key else 'not required'}",
        file=sys.stderr,
        flush=True,
    )
    run(app, host=args.host, port=args.port, drain_seconds=args.drain_seconds, log_level=args.log_level)


def _voices(args: argparse.Namespace) -> None:
    """Add, list or remove the saved voices a server uses (`voice` / `reference_id` in requests)."""
    from .serving.voices import VoiceError, VoiceStore, check_voice_name, default_voices_dir

    folder = args.voices_dir or default_voices_dir()
    try:
        if args.action == "list":
            store = VoiceStore(folder)
            for name in store.names():
                voice = store.get(name)
                print(f"{name}\t{voice.codes.shape[1]} frames\t{voice.text}")
            return
        if args.action == "remove":
            VoiceStore(folder).remove(args.name)
            print(f"removed voice {args.name!r} from {folder}", file=sys.stderr)
            return
        check_voice_name(args.name)
        if not args.audio.is_file():
            raise CLIError(f"audio file not found: {str(args.audio)!r}")
        from .processing.audio import ReferenceEncoder, load_audio

        _, processor = load_checkpoint(args.model, args.device)
        store = VoiceStore(folder)
        store.check_name_available(args.name, overwrite=args.overwrite)
        waveform = load_audio(args.audio, target_rate=processor.sampling_rate, name=str(args.audio))
        codes = ReferenceEncoder(processor.codec, max_entries=0)(waveform)
        store.add(
            args.name, codes, args.text, sampling_rate=processor.sampling_rate, overwrite=args.overwrite
        )
        print(f"saved voice {args.name!r} ({codes.shape[1]} frames) in {folder}", file=sys.stderr)
    except VoiceError as error:
        raise CLIError(str(error)) from None
