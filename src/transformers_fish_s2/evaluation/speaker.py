"""Speaker similarity (SIM): cosine of speaker embeddings of generated and reference audio.

Any transformers x-vector model works (``AutoModelForAudioXVector``: WavLM/Wav2Vec2/UniSpeech-SAT
``...ForXVector``, e.g. ``microsoft/wavlm-base-plus-sv``), or any module whose output has an
``embeddings`` field. Scores from different embedders are **not comparable** (Seed-TTS-eval uses a
WavLM-large + ECAPA-TDNN verifier that is not a transformers model), so every result carries the
embedder's name.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..processing.audio import as_mono_float32, resample


class SpeakerEmbedder:
    """An x-vector model and its feature extractor, turning waveforms into unit-norm embeddings."""

    def __init__(self, model: torch.nn.Module, feature_extractor, name: str | None = None):
        if not hasattr(feature_extractor, "sampling_rate"):
            raise TypeError(
                "feature_extractor must be a transformers audio feature extractor (with sampling_rate)"
            )
        self.model = model.eval()
        self.feature_extractor = feature_extractor
        self.name = name or getattr(model, "name_or_path", "") or type(model).__name__

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, device: str | torch.device | None = None, **kwargs
    ) -> SpeakerEmbedder:
        """Load e.g. ``microsoft/wavlm-base-plus-sv`` with the Auto classes."""
        from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

        try:
            feature_extractor = AutoFeatureExtractor.from_pretrained(name_or_path)
            model = AutoModelForAudioXVector.from_pretrained(name_or_path, **kwargs)
        except OSError as error:
            raise OSError(
                f"could not load the speaker-embedding model {name_or_path!r} (is it downloaded, or are you "
                f"offline with HF_HUB_OFFLINE=1?): {error}"
            ) from error
        if device is not None:
            model = model.to(device)
        return cls(model, feature_extractor, name=name_or_path)

    @property
    def sampling_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    @torch.no_grad()
    def embed(self, audio, sampling_rate: int) -> torch.Tensor:
        """Unit-norm embedding ``[D]`` of one waveform (one at a time: padding would shift x-vectors)."""
        if (
            isinstance(sampling_rate, bool)
            or not isinstance(sampling_rate, numbers.Integral)
            or sampling_rate <= 0
        ):
            raise ValueError(f"sampling_rate must be a positive int (Hz), got {sampling_rate!r}")
        waveform = resample(as_mono_float32(audio), int(sampling_rate), self.sampling_rate)
        features = self.feature_extractor(waveform, sampling_rate=self.sampling_rate, return_tensors="pt")
        parameter = next(self.model.parameters())
        features = {
            key: value.to(parameter.device, parameter.dtype if value.is_floating_point() else value.dtype)
            for key, value in features.items()
        }
        output = self.model(**features)
        embeddings = getattr(output, "embeddings", None)
        if embeddings is None:
            raise TypeError(
                f"{type(self.model).__name__} returned no `embeddings`; pass an x-vector model "
                "(AutoModelForAudioXVector, e.g. WavLMForXVector)"
            )
        return torch.nn.functional.normalize(embeddings[0].float(), dim=-1).cpu()


@dataclass(frozen=True)
class SpeakerSimilarity:
    """Mean and per-pair cosine similarities, labelled with the embedder that produced them."""

    embedder: str
    mean: float
    scores: tuple[float, ...]

    def summary(self) -> dict:
        return {"embedder": self.embedder, "mean": self.mean, "num_pairs": len(self.scores)}


def _per_item(rate: int | Sequence[int], count: int, what: str) -> list[int]:
    if isinstance(rate, numbers.Integral):
        return [int(rate)] * count
    rates = list(rate)
    if len(rates) != count:
        raise ValueError(
            f"{what} has {len(rates)} entries for {count} waveforms; give one int or one per waveform"
        )
    return rates


def speaker_similarity(
    predictions: Sequence,
    references: Sequence,
    embedder: SpeakerEmbedder,
    sampling_rate: int | Sequence[int],
    reference_sampling_rate: int | Sequence[int] | None = None,
) -> SpeakerSimilarity:
    """Cosine similarity between each generated waveform and its reference (the voice prompt).

    ``predictions`` and ``references`` are waveforms (arrays or tensors), paired by position. Each
    sampling rate is one int or one per waveform; ``reference_sampling_rate`` defaults to
    ``sampling_rate``.
    """
    if len(predictions) != len(references):
        raise ValueError(
            f"got {len(predictions)} predictions but {len(references)} references; they must pair up"
        )
    if not predictions:
        raise ValueError("predictions is empty; speaker similarity needs at least one pair")
    if reference_sampling_rate is None:
        reference_sampling_rate = sampling_rate
    prediction_rates = _per_item(sampling_rate, len(predictions), "sampling_rate")
    reference_rates = _per_item(reference_sampling_rate, len(references), "reference_sampling_rate")
    scores = []
    for index, (prediction, reference) in enumerate(zip(predictions, references)):
        try:
            generated = embedder.embed(prediction, prediction_rates[index])
            prompt = embedder.embed(reference, reference_rates[index])
        except ValueError as error:
            raise ValueError(f"pair {index}: {error}") from None
        scores.append(float(generated @ prompt))
    return SpeakerSimilarity(embedder=embedder.name, mean=sum(scores) / len(scores), scores=tuple(scores))
