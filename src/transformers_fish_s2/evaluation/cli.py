"""The command line of the evaluation runner (``fish-s2 eval``, ``python -m transformers_fish_s2.evaluation``).

Only argparse and the standard library are imported here, so ``--help`` and argument errors answer at once;
:mod:`.runner` (torch, the model, the ASR) is imported once the arguments are parsed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import add_dtype_option


def build_parser(
    parser: argparse.ArgumentParser | None = None, *, prog: str = "python -m transformers_fish_s2.evaluation"
) -> argparse.ArgumentParser:
    """Arguments of the runner (the ``fish-s2 eval`` sub-command reuses this with ``prog="fish-s2 eval"``)."""
    parser = parser or argparse.ArgumentParser(
        prog=prog,
        description="Seed-TTS-eval style evaluation of Fish Audio S2: synthesise a meta list with voice "
        "cloning (resumable), transcribe, and report WER/CER, speaker similarity and RTF.",
    )
    parser.add_argument(
        "--model", required=True, help="checkpoint directory or Hub id (e.g. fishaudio/s2-pro)"
    )
    parser.add_argument(
        "--meta", required=True, help="Seed-TTS meta list: name|prompt_text|prompt_wav|target_text"
    )
    parser.add_argument("--output-dir", required=True, help="where wavs and the report go; rerun to resume")
    parser.add_argument("--asr", required=True, help="ASR model for pipeline('automatic-speech-recognition'), "
                        "e.g. openai/whisper-large-v3 (Seed-TTS-eval's English ASR)")  # fmt: skip
    parser.add_argument(
        "--asr-language", help="Whisper only: force the transcription language (e.g. english)"
    )
    parser.add_argument("--asr-batch-size", type=int, default=1, help="pipeline batch size; 1 (default) as "
                        "Seed-TTS-eval: batching pads, which changes CTC models' transcripts")  # fmt: skip
    parser.add_argument("--speaker-model", help="x-vector model for SIM (AutoModelForAudioXVector), "
                        "e.g. microsoft/wavlm-base-plus-sv; omitted: no SIM")  # fmt: skip
    parser.add_argument("--lang", default="en", help="text language: en (words) or zh/ja/yue (characters)")
    parser.add_argument("--batch-size", type=int, default=1, help="utterances generated together")
    parser.add_argument("--limit", type=int, help="only the first N utterances")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    add_dtype_option(parser, help="model weights; auto = bfloat16 on GPU, float32 on CPU")
    parser.add_argument("--max-new-tokens", type=int, help="frames per utterance at most")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--greedy", action="store_true", help="do_sample=False")
    parser.add_argument("--generation-kwargs", default="{}", help="more generate() kwargs as a JSON object")
    parser.add_argument("--dataset-name", help="name used in the report (default: the meta path)")
    return parser


def main(argv: list[str] | None = None, *, prog: str = "python -m transformers_fish_s2.evaluation") -> int:
    """Command-line entry point; returns the exit status (0 ok, 1 failed, 2 bad arguments). Errors are one
    ``<prog>: error: ...`` line, like argparse's and the other ``fish-s2`` commands'."""
    parser = build_parser(prog=prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    from .runner import run_from_args

    try:
        report = run_from_args(args)
    except (FileNotFoundError, ValueError, TypeError, OSError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    wer = report["wer"]
    summary = f"{wer['name']} {100 * wer['mean']:.3f} % (corpus {100 * wer['corpus']:.3f} %, {wer['num_above_50']} > 50 %)"
    if report["speaker_similarity"] is not None:
        summary += (
            f", SIM {report['speaker_similarity']['mean']:.4f} ({report['speaker_similarity']['embedder']})"
        )
    if report["speed"]["rtf"] is not None:
        summary += f", RTF {report['speed']['rtf']:.3f}"
    print(f"{summary}\nreport: {Path(args.output_dir) / 'report.md'}")
    return 0
