"""The evaluation report: ``results.json`` (everything) and ``report.md`` (tables + a model-card snippet).

Numbers are written as fractions in JSON and as percentages (Seed-TTS-eval's convention: "0.99" means
0.99 % WER) in Markdown and in the ``model-index`` snippet.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"


def _percent(fraction: float) -> float:
    return round(100.0 * fraction, 3)


def model_index(report: dict) -> dict:
    """A Hub ``model-index`` entry (the YAML a model card's front matter carries) for this run."""
    wer = report["wer"]
    metrics = [
        {
            "type": "wer" if wer["unit"] == "word" else "cer",
            "value": _percent(wer["mean"]),
            "name": f"{wer['name']} (%, mean per utterance, ASR: {report['asr']})",
        }
    ]
    similarity = report.get("speaker_similarity")
    if similarity is not None:
        metrics.append(
            {
                "type": "speaker_similarity",
                "value": round(similarity["mean"], 4),
                "name": f"SIM (embedder: {similarity['embedder']})",
            }
        )
    return {
        "model-index": [
            {
                "name": report["model"],
                "results": [
                    {
                        "task": {"type": "text-to-speech", "name": "Text-to-Speech"},
                        "dataset": {
                            "type": "seed-tts-eval",
                            "name": report["dataset"],
                            "split": report["lang"],
                        },
                        "metrics": metrics,
                    }
                ],
            }
        ]
    }


def _cell(text: str, limit: int = 200) -> str:
    """Table-safe text, shortened (a hallucinating model can produce a page per utterance)."""
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_markdown(report: dict, worst: int = 10) -> str:
    """A human-readable summary: headline numbers, settings, speed, model-index, worst utterances."""
    wer, speed = report["wer"], report["speed"]
    similarity = report.get("speaker_similarity")
    name = wer["name"]
    lines = [
        f"# {report['model']} on {report['dataset']}",
        "",
        f"{report['num_utterances']} utterances, language `{report['lang']}`, ASR `{report['asr']}`.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| {name} (mean per utterance, Seed-TTS-eval number) | {_percent(wer['mean'])} % |",
        f"| {name} (corpus: total edits / total reference {wer['unit']}s) | {_percent(wer['corpus'])} % |",
        f"| utterances with {name} > 50 % | {wer['num_above_50']} |",
    ]
    if similarity is not None:
        lines.append(f"| SIM (embedder `{similarity['embedder']}`) | {similarity['mean']:.4f} |")
    lines.append(
        f"| RTF (synthesis time / audio time) | {speed['rtf']:.4f} |"
        if speed["rtf"] is not None
        else "| RTF | n/a (no timed synthesis) |"
    )
    lines += [
        "",
        "SIM values are only comparable between runs that use the same embedder; the S2 report's numbers "
        "come from Seed-TTS-eval (Whisper-large-v3 for English, Paraformer-zh for Chinese, a WavLM-large "
        "speaker-verification model for SIM).",
        "",
        "## Settings",
        "",
        "```json",
        json.dumps({"generation": report["generation"], "speed": speed}, indent=2, ensure_ascii=False),
        "```",
        "",
        "## Model card snippet",
        "",
        "```yaml",
        yaml.safe_dump(model_index(report), sort_keys=False, allow_unicode=True).rstrip(),
        "```",
    ]
    rows = sorted(report["utterances"], key=lambda row: row["error_rate"], reverse=True)[:worst]
    if rows:
        lines += [
            "",
            f"## Highest {name}",
            "",
            f"| name | {name} % | target | transcript |",
            "|---|---|---|---|",
        ]
        for row in rows:
            cells = [row["name"], f"{_percent(row['error_rate'])}", row["target_text"], row["transcript"]]
            lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_report(report: dict, output_dir: str | Path) -> tuple[Path, Path]:
    """Write ``results.json`` and ``report.md`` into ``output_dir``; returns their paths."""
    output_dir = Path(output_dir)
    json_path, markdown_path = output_dir / RESULTS_FILE, output_dir / REPORT_FILE
    _write_atomically(json_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    _write_atomically(markdown_path, render_markdown(report))
    return json_path, markdown_path
