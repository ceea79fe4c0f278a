"""`evaluate` module: speaker similarity (cosine of x-vector embeddings), offline from a local path.

Load it with ``evaluate.load(transformers_fish_s2.evaluation.metric_path("speaker_similarity"))``.
The computation lives in ``transformers_fish_s2.evaluation.speaker``; this file adapts it
to the ``evaluate`` API (and is copied alone by ``evaluate``, hence the absolute import).
"""

import datasets
import evaluate

from transformers_fish_s2.evaluation.speaker import SpeakerEmbedder, speaker_similarity
from transformers_fish_s2.processing.audio import read_audio

_DESCRIPTION = """\
Speaker similarity (SIM) between generated speech and the voice prompt it cloned: the cosine of
speaker embeddings from an x-vector model (any `AutoModelForAudioXVector`, e.g. WavLMForXVector).
Scores from different embedders are not comparable; the result names the embedder.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: generated waveforms (lists/arrays of floats) or paths to audio files.
    references: voice-prompt waveforms or paths, paired with predictions by position.
    embedder (`SpeakerEmbedder`): the speaker model; or pass `model` and `feature_extractor` instead
        (and optionally `embedder_name`).
    sampling_rate (`int`): rate of waveform predictions (ignored for paths: the file's rate is used).
    reference_sampling_rate (`int`, optional): rate of waveform references; defaults to sampling_rate.
Returns:
    speaker_similarity (`float`): mean cosine similarity.
    embedder (`str`): name of the embedding model.
    scores (`list` of `float`): per-pair similarities.
"""


def _load_all(items, sampling_rate, what):
    """Waveforms and their rates from a column of waveforms or of paths."""
    if items and isinstance(items[0], str):
        loaded = [read_audio(path, name=f"{what}[{i}]") for i, path in enumerate(items)]
        return [waveform for waveform, _ in loaded], [rate for _, rate in loaded]
    if sampling_rate is None:
        raise ValueError(f"{what} are waveforms, so their sampling rate must be given")
    return items, sampling_rate


_AUDIO_ARRAY = datasets.Features(
    {
        "predictions": datasets.Sequence(datasets.Value("float32")),
        "references": datasets.Sequence(datasets.Value("float32")),
    }
)
_AUDIO_PATH = datasets.Features(
    {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SpeakerSimilarity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=[_AUDIO_ARRAY, _AUDIO_PATH],
        )

    def _compute(
        self,
        predictions,
        references,
        embedder=None,
        model=None,
        feature_extractor=None,
        embedder_name=None,
        sampling_rate=None,
        reference_sampling_rate=None,
    ):
        if embedder is None:
            if model is None or feature_extractor is None:
                raise ValueError(
                    "pass `embedder=SpeakerEmbedder(...)`, or both `model` and `feature_extractor`"
                )
            embedder = SpeakerEmbedder(model, feature_extractor, name=embedder_name)
        predictions, prediction_rates = _load_all(predictions, sampling_rate, "predictions")
        if reference_sampling_rate is None:
            reference_sampling_rate = sampling_rate
        references, reference_rates = _load_all(references, reference_sampling_rate, "references")
        result = speaker_similarity(predictions, references, embedder, prediction_rates, reference_rates)
        return {"speaker_similarity": result.mean, "embedder": result.embedder, "scores": list(result.scores)}
