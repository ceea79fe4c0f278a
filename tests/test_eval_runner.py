"""The Seed-TTS-eval style runner end to end on the tiny fixture, with a tiny random ASR (Wav2Vec2-CTC)
and a tiny random x-vector model built here. The numbers are meaningless; the plumbing, resumability
and report are what is checked."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import soxr
import torch
import yaml
from conftest import EXPECTED, TINY
from test_evaluation import tiny_xvector

from transformers_fish_s2.evaluation import SpeakerEmbedder, error_rates
from transformers_fish_s2.evaluation.cli import main
from transformers_fish_s2.evaluation.runner import (
    load_entries,
    read_synthesis_log,
    run_evaluation,
    transcribe,
)

FRAME = 2048
GENERATION = {"do_sample": False, "max_new_tokens": 10}
TEXTS = {"utt-a": "Hello, world!", "utt-b": "Nice to meet you.", "utt-c": "It's a tiny test."}


def tiny_asr(directory, save: bool = False):
    """A random character CTC recogniser with a tokenizer built in ``directory`` (no download): a
    pipeline, or (``save=True``) the directory holding the saved model for ``pipeline(model=...)``."""
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        pipeline,
    )

    vocab = {
        "<pad>": 0,
        "<unk>": 1,
        "|": 2,
        **{c: i + 3 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz'")},
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(directory / "vocab.json"), word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True)
    config = Wav2Vec2Config(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2, pad_token_id=0, feat_extract_norm="layer",
    )  # fmt: skip
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(config).eval()
    if save:
        for part in (model, tokenizer, extractor):
            part.save_pretrained(directory)
        return str(directory)
    return pipeline(
        "automatic-speech-recognition", model=model, tokenizer=tokenizer, feature_extractor=extractor
    )


@pytest.fixture(scope="module")
def tiny_tts():
    from transformers_fish_s2.modeling.modeling_fish_s2 import FishS2ForConditionalGeneration
    from transformers_fish_s2.processing.processing_fish_s2 import FishS2Processor

    model = FishS2ForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32)
    return model, FishS2Processor.from_pretrained(TINY)


@pytest.fixture
def meta(tmp_path):
    """A Seed-TTS meta list: prompts at 44.1 kHz and (resampled) 16 kHz, relative paths, a 5-field line."""
    waveform, rate = soundfile.read(EXPECTED / "test_waveform_44k1_pcm16.wav", dtype="float32")
    prompts = tmp_path / "set" / "prompt-wavs"
    prompts.mkdir(parents=True)
    soundfile.write(prompts / "p44.wav", waveform[: rate // 2], rate)
    soundfile.write(prompts / "p16.wav", soxr.resample(waveform[rate // 2 : rate], rate, 16000), 16000)
    lines = [
        "utt-a|This is the prompt.|prompt-wavs/p44.wav|Hello, world!",
        "utt-b|Another prompt.|prompt-wavs/p16.wav|Nice to meet you.|wavs/ground-truth.wav",
        "utt-c|This is the prompt.|prompt-wavs/p44.wav|It's a tiny test.",
    ]
    path = tmp_path / "set" / "meta.lst"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_runner_end_to_end_resumes_and_reports(tiny_tts, meta, tmp_path):
    model, processor = tiny_tts
    asr = tiny_asr(tmp_path / "asr")
    xvector, extractor = tiny_xvector()
    embedder = SpeakerEmbedder(xvector, extractor, name="tiny-wavlm-sv")
    out = tmp_path / "run"
    calls = []
    generate = model.generate

    def counting_generate(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return generate(*args, **kwargs)

    model.generate = counting_generate
    try:
        report = run_evaluation(model, processor, meta, out, asr=asr, speaker_embedder=embedder, batch_size=2,
                                generation_kwargs=GENERATION, model_name="s2-tiny-a", dataset_name="tiny-set")  # fmt: skip
        assert calls == [2, 1]  # 3 utterances in batches of 2

        # audio on disk matches the logged frame counts; the report agrees with the files
        log = read_synthesis_log(out)
        assert set(log) == set(TEXTS)
        for name, row in log.items():
            info = soundfile.info(str(out / "wavs" / f"{name}.wav"))
            assert info.samplerate == 44100 and 1 <= row["frames"] <= GENERATION["max_new_tokens"]
            assert info.frames == row["frames"] * FRAME
        rows = {row["name"]: row for row in report["utterances"]}
        assert [row["name"] for row in report["utterances"]] == list(TEXTS)
        for name, row in rows.items():
            assert row["target_text"] == TEXTS[name]
            waveform, rate = soundfile.read(out / "wavs" / f"{name}.wav", dtype="float32")
            assert row["transcript"] == transcribe(asr, [waveform], rate)[0]
            assert row["audio_seconds"] == pytest.approx(len(waveform) / rate)
            assert -1.0 <= row["speaker_similarity"] <= 1.0
        expected = error_rates(list(TEXTS.values()), [rows[n]["transcript"] for n in TEXTS], lang="en")
        assert report["wer"]["mean"] == pytest.approx(expected.mean)
        assert report["wer"]["corpus"] == pytest.approx(expected.corpus)
        assert report["wer"]["num_above_50"] == expected.num_above_50
        assert report["speaker_similarity"]["embedder"] == "tiny-wavlm-sv"
        assert report["speaker_similarity"]["mean"] == pytest.approx(
            np.mean([r["speaker_similarity"] for r in rows.values()])
        )
        speed = report["speed"]
        assert speed["timed_utterances"] == 3 and speed["rtf"] > 0 and speed["device"] == "cpu"
        assert speed["rtf"] == pytest.approx(speed["synthesis_seconds"] / speed["audio_seconds"])
        assert report["generation"]["max_new_tokens"] == 10 and report["generation"]["do_sample"] is False
        assert report["generation"]["batch_size"] == 2

        # both files on disk; the JSON is the returned report, the Markdown carries a valid model-index
        assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(report))
        markdown = (out / "report.md").read_text()
        snippet = yaml.safe_load(markdown.split("```yaml\n")[1].split("```")[0])
        (entry,) = snippet["model-index"]
        assert entry["name"] == "s2-tiny-a"
        metrics = {m["type"]: m for m in entry["results"][0]["metrics"]}
        assert metrics["wer"]["value"] == round(100 * report["wer"]["mean"], 3)
        assert "tiny-wavlm-sv" in metrics["speaker_similarity"]["name"]
        worst = [line for line in markdown.splitlines() if line.startswith("| utt-")]
        assert len(worst) == 3 and all(
            len(line.split(" | ")[-1]) <= 202 for line in worst
        )  # cells cut at 200

        # resume: only the missing utterance is generated; a half-written file from a killed run is ignored
        kept = {name: (out / "wavs" / f"{name}.wav").read_bytes() for name in ("utt-a", "utt-c")}
        (out / "wavs" / "utt-b.wav").unlink()
        (out / "wavs" / ".utt-b.partial.wav").write_bytes(b"not audio")
        calls.clear()
        resumed = run_evaluation(model, processor, meta, out, asr=asr, speaker_embedder=embedder, batch_size=2,
                                 generation_kwargs=GENERATION)  # fmt: skip
        assert calls == [1]
        assert all((out / "wavs" / f"{name}.wav").read_bytes() == data for name, data in kept.items())
        assert (out / "wavs" / "utt-b.wav").is_file() and not (out / "wavs" / ".utt-b.partial.wav").exists()
        assert len((out / "synthesis.jsonl").read_text().splitlines()) == 4
        assert resumed["speed"]["timed_utterances"] == 3
        assert [r["name"] for r in resumed["utterances"]] == list(TEXTS)

        # everything on disk: no model needed, nothing generated
        calls.clear()
        again = run_evaluation(None, None, meta, out, asr=asr, generation_kwargs=GENERATION)
        assert calls == [] and again["speaker_similarity"] is None
        assert again["wer"]["mean"] == pytest.approx(resumed["wer"]["mean"])
    finally:
        model.generate = generate


def test_cli_main_runs_from_saved_models_and_reports_errors(meta, tmp_path, capsys):
    asr_dir = tiny_asr(tmp_path / "asr", save=True)
    xvector, extractor = tiny_xvector()
    xvector.save_pretrained(tmp_path / "sv")
    extractor.save_pretrained(tmp_path / "sv")
    out = tmp_path / "cli"
    argv = ["--model", str(TINY), "--meta", str(meta), "--output-dir", str(out), "--asr", asr_dir,
            "--speaker-model", str(tmp_path / "sv"), "--limit", "1", "--greedy", "--max-new-tokens", "6",
            "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "WER" in printed and "report:" in printed
    report = json.loads((out / "results.json").read_text())
    assert report["num_utterances"] == 1 and report["asr"] == asr_dir
    assert report["speaker_similarity"]["embedder"] == str(tmp_path / "sv")
    assert report["generation"]["do_sample"] is False and report["generation"]["max_new_tokens"] == 6

    assert main([*argv[:2], "--meta", str(tmp_path / "missing.lst"), *argv[4:]]) == 1
    assert "meta list not found" in capsys.readouterr().err
    assert main([*argv, "--generation-kwargs", "[1]"]) == 1
    assert "--generation-kwargs must be a JSON object" in capsys.readouterr().err
    assert main([*argv, "--limit", "0"]) == 1
    assert "limit must be a positive int" in capsys.readouterr().err
    assert main([*argv, "--lang", ""]) == 1
    assert "lang must be a non-empty language code" in capsys.readouterr().err
    assert main(["--model", str(TINY)]) == 2  # argparse: required arguments missing


def test_meta_list_errors_name_the_line(tmp_path):
    from transformers_fish_s2.evaluation.meta import read_meta

    path = tmp_path / "meta.lst"
    path.write_text("a|p|p.wav|t\nb|only three|fields\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"meta.lst:2: expected .* got 3"):
        read_meta(path)
    path.write_text("a|p|p.wav|t\na|p|p.wav|t\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'a' repeats line 1"):
        read_meta(path)
    path.write_text("../x|p|p.wav|t\n", encoding="utf-8")
    with pytest.raises(ValueError, match="usable as a file name"):
        read_meta(path)
    path.write_text("a|p|/abs/p.wav|t|gt.wav\n", encoding="utf-8")
    (entry,) = read_meta(path)
    assert str(entry.prompt_wav) == "/abs/p.wav" and entry.target_wav == tmp_path / "gt.wav"
    with pytest.raises(FileNotFoundError, match="1 prompt wav.s. not found, first: '/abs/p.wav'"):
        load_entries(path)
