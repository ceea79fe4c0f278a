"""Evaluation metrics: Seed-TTS WER/CER against hand-computed numbers, speaker similarity, evaluate modules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
import torch

from transformers_fish_s2.evaluation import (
    SpeakerEmbedder,
    error_rates,
    metric_path,
    normalize_for_error_rate,
    speaker_similarity,
    unit_for_language,
)

# Hand-computed (see comments): tokens after normalisation and the edits between them.
ENGLISH = [
    # [hello, world] vs [hello, word]: 1 substitution / 2 words
    ("Hello, world!", "hello word", 1 / 2),
    # [it's, a, test] vs [its, a, test]: the apostrophe is kept, so "it's" != "its": 1 / 3
    ("It's a test.", "its a test", 1 / 3),
    # [the, quick, brown, fox] vs the same + [jumps, over]: 2 insertions / 4 words, not above 50 %
    ("The quick brown fox.", "the quick brown fox jumps over", 2 / 4),
    # [one, two] vs []: 2 deletions / 2 words
    ("One two", "", 2 / 2),
]
ENGLISH_MEAN = (1 / 2 + 1 / 3 + 2 / 4 + 1) / 4  # 0.58333...
ENGLISH_CORPUS = (1 + 1 + 2 + 2) / (2 + 3 + 4 + 2)  # 6 / 11 = 0.5454...

CHINESE = [
    # punctuation (full-width) removed, characters compared: identical
    ("你好，世界。", "你好世界", 0.0),
    # 6 characters, 气 -> 汽: 1 / 6
    ("今天天气很好！", "今天天汽很好", 1 / 6),
    # [我, 爱, A, I] vs [我, 爱, a, i]: Latin letters are characters too and case is kept: 2 / 4
    ("我爱AI。", "我爱 ai", 2 / 4),
]
CHINESE_MEAN = (0 + 1 / 6 + 2 / 4) / 3  # 2 / 9
CHINESE_CORPUS = (0 + 1 + 2) / (4 + 6 + 4)  # 3 / 14


def test_normalization_follows_seed_tts_conventions():
    assert normalize_for_error_rate("Don't STOP — “now”… (ok)?", "en") == ["don't", "stop", "now", "ok"]
    # the typographic apostrophe is punctuation in Seed-TTS (zhon lists it); only ASCII ' survives
    assert normalize_for_error_rate("don’t", "en") == ["dont"]
    assert normalize_for_error_rate("a-b c_d $5 ＄５", "en") == ["ab", "cd", "5", "５"]
    assert normalize_for_error_rate("《你好》、世界！Hi", "zh") == ["你", "好", "世", "界", "H", "i"]
    assert unit_for_language("zh") == unit_for_language("ja") == unit_for_language("zh-CN") == "char"
    assert unit_for_language("en") == unit_for_language("de") == "word"
    assert unit_for_language("zh", unit="word") == "word"


def test_english_wer_matches_hand_computed_numbers():
    refs, hyps, rates = zip(*ENGLISH)
    result = error_rates(refs, hyps, lang="en")
    assert [u.error_rate for u in result.utterances] == pytest.approx(rates, abs=1e-12)
    assert result.mean == pytest.approx(ENGLISH_MEAN, abs=1e-12)
    assert result.corpus == pytest.approx(ENGLISH_CORPUS, abs=1e-12)
    assert result.num_above_50 == 1  # only the all-deleted utterance; exactly 50 % does not count
    edits = (result.substitutions, result.deletions, result.insertions, result.num_reference_tokens)
    assert edits == (2, 2, 2, 11)
    assert result.unit == "word" and result.name == "WER" and result.num_utterances == 4


def test_chinese_cer_matches_hand_computed_numbers():
    refs, hyps, rates = zip(*CHINESE)
    result = error_rates(refs, hyps, lang="zh")
    assert [u.error_rate for u in result.utterances] == pytest.approx(rates, abs=1e-12)
    assert result.mean == pytest.approx(CHINESE_MEAN, abs=1e-12)
    assert result.corpus == pytest.approx(CHINESE_CORPUS, abs=1e-12)
    assert result.num_above_50 == 0
    assert result.unit == "char" and result.name == "CER"


def test_error_rates_reject_bad_input_with_specific_messages():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        error_rates(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="at least one utterance"):
        error_rates([], [])
    with pytest.raises(TypeError, match="not a single string"):
        error_rates("hello", "hello")
    with pytest.raises(ValueError, match=r"utterance 1: reference '\?!' is empty after normalisation"):
        error_rates(["fine", "?!"], ["fine", "x"])
    with pytest.raises(TypeError, match="utterance 0: text must be a str"):
        error_rates([None], ["x"])
    with pytest.raises(ValueError, match="unit must be 'word' or 'char'"):
        error_rates(["a"], ["a"], unit="phone")


def test_seed_tts_wer_evaluate_module_loads_offline_and_matches(monkeypatch):
    import evaluate

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    metric = evaluate.load(metric_path("seed_tts_wer"))
    refs, hyps, _ = zip(*ENGLISH)
    out = metric.compute(predictions=list(hyps), references=list(refs))
    assert out["wer"] == pytest.approx(ENGLISH_MEAN, abs=1e-12)
    assert out["corpus_wer"] == pytest.approx(ENGLISH_CORPUS, abs=1e-12)
    assert out["num_above_50"] == 1 and out["unit"] == "word"
    refs, hyps, _ = zip(*CHINESE)
    out = metric.compute(predictions=list(hyps), references=list(refs), lang="zh")
    assert out["wer"] == pytest.approx(CHINESE_MEAN, abs=1e-12) and out["unit"] == "char"
    assert out["corpus_wer"] == pytest.approx(CHINESE_CORPUS, abs=1e-12)


def tiny_xvector(seed: int = 0):
    """A random WavLM x-vector model small enough to run in milliseconds (scores are meaningless)."""
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    config = WavLMConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, conv_dim=(8, 8),
        conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
        tdnn_dim=(8, 8), tdnn_kernel=(3, 1), tdnn_dilation=(1, 1), xvector_output_dim=8, num_buckets=8,
        max_bucket_distance=16,
    )  # fmt: skip
    torch.manual_seed(seed)
    return WavLMForXVector(config), Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True)


def noise(seconds: float, rate: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * rate)) * 0.1).astype(np.float32)


def test_speaker_similarity_is_cosine_of_embeddings():
    model, extractor = tiny_xvector()
    embedder = SpeakerEmbedder(model, extractor, name="tiny-wavlm-sv")
    a, b = noise(1.0, 16000, 1), noise(1.2, 16000, 2)
    a44 = noise(1.0, 44100, 3)
    result = speaker_similarity([a, a, a44], [a, b, b], embedder, sampling_rate=[16000, 16000, 44100],
                                reference_sampling_rate=16000)  # fmt: skip
    expected = float(embedder.embed(a, 16000) @ embedder.embed(b, 16000))
    assert result.embedder == "tiny-wavlm-sv"
    assert result.scores[0] == pytest.approx(1.0, abs=1e-5)  # an utterance is its own speaker
    assert result.scores[1] == pytest.approx(expected, abs=1e-6) and abs(expected) < 0.9999
    assert result.mean == pytest.approx(sum(result.scores) / 3, abs=1e-9)
    # stereo [L, 2] equals its channel mean
    stereo = np.stack([a, a], axis=1)
    assert torch.allclose(embedder.embed(stereo, 16000), embedder.embed(a, 16000), atol=1e-6)
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        speaker_similarity([a, a], [a], embedder, sampling_rate=16000)
    with pytest.raises(ValueError, match="pair 0: audio contains 1600 NaN"):
        speaker_similarity([np.full(1600, np.nan, np.float32)], [a], embedder, sampling_rate=16000)
    with pytest.raises(ValueError, match="sampling_rate has 1 entries for 2 waveforms"):
        speaker_similarity([a, a], [a, a], embedder, sampling_rate=[16000])


def test_speaker_similarity_evaluate_module_loads_offline(monkeypatch, tmp_path):
    import evaluate

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, extractor = tiny_xvector()
    embedder = SpeakerEmbedder(model, extractor, name="tiny-wavlm-sv")
    a, b = noise(0.8, 16000, 4), noise(0.6, 22050, 5)
    metric = evaluate.load(metric_path("speaker_similarity"))
    out = metric.compute(predictions=[a, a], references=[a, a], embedder=embedder, sampling_rate=16000)
    assert out["embedder"] == "tiny-wavlm-sv" and out["scores"] == pytest.approx([1.0, 1.0], abs=1e-5)
    # file paths (each file's own rate) give the same numbers as the plain function
    soundfile.write(tmp_path / "a.wav", a, 16000, subtype="FLOAT")
    soundfile.write(tmp_path / "b.wav", b, 22050, subtype="FLOAT")
    out = metric.compute(predictions=[str(tmp_path / "a.wav")], references=[str(tmp_path / "b.wav")],
                         model=model, feature_extractor=extractor, embedder_name="tiny")  # fmt: skip
    plain = speaker_similarity([a], [b], embedder, sampling_rate=16000, reference_sampling_rate=22050)
    assert out["embedder"] == "tiny"
    assert math.isclose(out["speaker_similarity"], plain.mean, abs_tol=1e-6)
    with pytest.raises(FileNotFoundError, match=r"references\[0\]: audio file not found: .*missing.wav"):
        metric.compute(predictions=[str(tmp_path / "a.wav")], references=[str(tmp_path / "missing.wav")],
                       embedder=embedder)  # fmt: skip
    with pytest.raises(ValueError, match="pass `embedder=SpeakerEmbedder"):
        metric.compute(predictions=[a], references=[a], sampling_rate=16000)


def test_metric_path_names_the_shipped_metrics():
    with pytest.raises(ValueError, match="shipped metrics are seed_tts_wer, speaker_similarity"):
        metric_path("wer")
