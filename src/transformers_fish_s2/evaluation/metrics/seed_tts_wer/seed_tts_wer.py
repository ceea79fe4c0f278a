"""`evaluate` module: WER/CER with Seed-TTS-eval conventions (works offline from a local path).

Load it with ``evaluate.load(transformers_fish_s2.evaluation.metric_path("seed_tts_wer"))``.
The computation lives in ``transformers_fish_s2.evaluation.wer``; this file only adapts it to
the ``evaluate`` API (and is copied alone by ``evaluate``, hence the absolute import).
"""

import datasets
import evaluate

from transformers_fish_s2.evaluation.wer import error_rates

_DESCRIPTION = """\
Word error rate (or character error rate for Chinese, Cantonese and Japanese) of ASR transcripts of
synthesised speech against the texts that were synthesised, normalised as in Seed-TTS-eval:
punctuation removed except the ASCII apostrophe, English lower-cased and split into words, Chinese
split into characters. Returns the mean of per-utterance rates (the number Seed-TTS-eval and the
Fish Audio S2 report publish), the corpus rate (total edits / total reference tokens) and the number
of utterances whose rate is above 50 %.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): ASR transcripts of the generated audio.
    references (`list` of `str`): the texts that were synthesised.
    lang (`str`, default "en"): language code; "zh", "yue" and "ja" are scored per character.
    unit (`str`, optional): "word" or "char", overriding the language default.
Returns:
    wer (`float`): mean per-utterance error rate (a fraction; the CER when unit is "char").
    corpus_wer (`float`): total edits / total reference tokens.
    num_above_50 (`int`): utterances with an error rate above 0.5.
    num_utterances (`int`), unit (`str`), substitutions, deletions, insertions,
    num_reference_tokens (`int`).
Examples:
    >>> metric = evaluate.load(metric_path("seed_tts_wer"))
    >>> metric.compute(predictions=["hello word"], references=["Hello, world!"])["wer"]
    0.5
"""

_CITATION = """\
@article{anastassiou2024seedtts,
  title={Seed-TTS: A Family of High-Quality Versatile Speech Generation Models},
  author={Anastassiou, Philip and others},
  journal={arXiv preprint arXiv:2406.02430},
  year={2024}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SeedTTSWER(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["https://github.com/BytedanceSpeech/seed-tts-eval"],
        )

    def _compute(self, predictions, references, lang="en", unit=None):
        rates = error_rates(references, predictions, lang=lang, unit=unit)
        return {
            "wer": rates.mean,
            "corpus_wer": rates.corpus,
            "num_above_50": rates.num_above_50,
            "num_utterances": rates.num_utterances,
            "unit": rates.unit,
            "substitutions": rates.substitutions,
            "deletions": rates.deletions,
            "insertions": rates.insertions,
            "num_reference_tokens": rates.num_reference_tokens,
        }
