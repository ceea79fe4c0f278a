"""Measure generated speech the way the S2 report does (Seed-TTS-eval): WER/CER and speaker similarity.

Plain functions (``error_rates``, ``speaker_similarity``), ``evaluate`` modules shipped in the package
(``evaluate.load(metric_path("seed_tts_wer"))``, ``metric_path("speaker_similarity")``; they load
offline), and a runner over a Seed-TTS meta list (``python -m transformers_fish_s2.evaluation``).
"""

from pathlib import Path

from ..lazy_exports import lazy_exports
from .meta import MetaEntry, read_meta
from .text_normalization import normalize_for_error_rate, remove_punctuation, unit_for_language
from .wer import ErrorRates, UtteranceErrors, error_rates, utterance_errors

_EXPORTS = {
    "main": ".cli",
    "run_evaluation": ".runner",
    **dict.fromkeys(("SpeakerEmbedder", "SpeakerSimilarity", "speaker_similarity"), ".speaker"),
}
# `fish-s2 eval --help` imports .cli through this package: the torch-importing modules load on first use.
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

METRICS = ("seed_tts_wer", "speaker_similarity")


def metric_path(name: str) -> str:
    """Local path of a shipped ``evaluate`` module, for ``evaluate.load(metric_path(name))`` offline."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; shipped metrics are {', '.join(METRICS)}")
    return str(Path(__file__).parent / "metrics" / name / f"{name}.py")


__all__ = [
    "METRICS",
    "ErrorRates",
    "MetaEntry",
    "SpeakerEmbedder",
    "SpeakerSimilarity",
    "UtteranceErrors",
    "error_rates",
    "main",
    "metric_path",
    "normalize_for_error_rate",
    "read_meta",
    "remove_punctuation",
    "run_evaluation",
    "speaker_similarity",
    "unit_for_language",
    "utterance_errors",
]

