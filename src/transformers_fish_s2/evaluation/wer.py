"""Word/character error rates with Seed-TTS-eval conventions; needs only ``jiwer``.

Seed-TTS-eval reports the **mean of per-utterance error rates** (each utterance weighs the same, so a
short sentence with one wrong word counts a lot). Many ASR papers report the **corpus** rate instead
(total edits / total reference tokens). Both are returned, with the number of utterances whose rate
exceeds 50 % (usually hallucinations or truncations, which dominate the mean).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from .text_normalization import Unit, normalize_for_error_rate, unit_for_language

#: An utterance "fails" above this per-utterance error rate (Seed-TTS-eval's threshold).
FAILURE_THRESHOLD = 0.5


@dataclass(frozen=True)
class UtteranceErrors:
    """Edit counts of one normalised reference/hypothesis pair."""

    reference: str
    hypothesis: str
    substitutions: int
    deletions: int
    insertions: int
    hits: int

    @property
    def num_reference_tokens(self) -> int:
        return self.substitutions + self.deletions + self.hits

    @property
    def error_rate(self) -> float:
        return (self.substitutions + self.deletions + self.insertions) / self.num_reference_tokens


@dataclass(frozen=True)
class ErrorRates:
    """Aggregates over a test set. Rates are fractions (0.0099 is the "0.99 %" of a paper table)."""

    lang: str
    unit: Unit
    mean: float
    """Mean of per-utterance rates: the number Seed-TTS-eval (and the S2 report) publishes."""
    corpus: float
    """Total edits / total reference tokens."""
    num_above_50: int
    num_utterances: int
    substitutions: int
    deletions: int
    insertions: int
    num_reference_tokens: int
    utterances: tuple[UtteranceErrors, ...]

    @property
    def name(self) -> str:
        return "CER" if self.unit == "char" else "WER"

    def summary(self) -> dict:
        """The aggregates as a JSON-ready dict (no per-utterance detail)."""
        out = asdict(self)
        del out["utterances"]
        return out


def utterance_errors(
    reference: str, hypothesis: str, lang: str = "en", unit: Unit | None = None
) -> UtteranceErrors:
    """Normalise one pair and count its edits. The normalised reference must not be empty."""
    import jiwer

    ref_tokens = normalize_for_error_rate(reference, lang, unit)
    hyp_tokens = normalize_for_error_rate(hypothesis, lang, unit)
    if not ref_tokens:
        raise ValueError(f"reference {reference!r} is empty after normalisation; its error rate is undefined")
    ref, hyp = " ".join(ref_tokens), " ".join(hyp_tokens)
    out = jiwer.process_words(ref, hyp)
    return UtteranceErrors(ref, hyp, out.substitutions, out.deletions, out.insertions, out.hits)


def error_rates(
    references: Sequence[str], hypotheses: Sequence[str], lang: str = "en", unit: Unit | None = None
) -> ErrorRates:
    """Seed-TTS-eval WER (``lang="en"``, words) or CER (``lang="zh"``, characters) of a test set.

    ``references`` are the texts that were synthesised, ``hypotheses`` the ASR transcripts, in the
    same order. ``unit`` overrides the language's default token unit.
    """
    if isinstance(references, str) or isinstance(hypotheses, str):
        raise TypeError("references and hypotheses must be sequences of strings, not a single string")
    if len(references) != len(hypotheses):
        raise ValueError(
            f"got {len(references)} references but {len(hypotheses)} hypotheses; they must pair up"
        )
    if not references:
        raise ValueError("references is empty; an error rate needs at least one utterance")
    resolved_unit = unit_for_language(lang, unit)
    utterances = []
    for index, (reference, hypothesis) in enumerate(zip(references, hypotheses)):
        try:
            utterances.append(utterance_errors(reference, hypothesis, lang, resolved_unit))
        except (TypeError, ValueError) as error:
            raise type(error)(f"utterance {index}: {error}") from None
    rates = [u.error_rate for u in utterances]
    subs = sum(u.substitutions for u in utterances)
    dels = sum(u.deletions for u in utterances)
    ins = sum(u.insertions for u in utterances)
    num_tokens = sum(u.num_reference_tokens for u in utterances)
    return ErrorRates(
        lang=lang,
        unit=resolved_unit,
        mean=sum(rates) / len(rates),
        corpus=(subs + dels + ins) / num_tokens,
        num_above_50=sum(rate > FAILURE_THRESHOLD for rate in rates),
        num_utterances=len(utterances),
        substitutions=subs,
        deletions=dels,
        insertions=ins,
        num_reference_tokens=num_tokens,
        utterances=tuple(utterances),
    )
