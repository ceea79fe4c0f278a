"""Seed-TTS-eval style runner: synthesise a meta list with voice cloning, transcribe, score, report.

Output folder layout (a rerun with the same folder resumes: finished utterances are not synthesised
again, and their timings are kept):

    wavs/<name>.wav     generated speech (written atomically, so a killed run leaves no half file)
    synthesis.jsonl     one line per synthesised utterance: audio seconds, synthesis seconds, frames
    results.json        settings, aggregates and per-utterance rows
    report.md           the same for humans, with a ``model-index`` snippet for a model card

``python -m transformers_fish_s2.evaluation --help`` (and ``fish-s2 eval``) run it from the shell (:mod:`.cli`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import soundfile
import torch

from .meta import MetaEntry, read_meta
from .report import write_report
from .speaker import SpeakerEmbedder, speaker_similarity
from .text_normalization import unit_for_language
from .wer import error_rates

WAV_DIR = "wavs"
SYNTHESIS_LOG = "synthesis.jsonl"
FRAMES_PER_SECOND = 44100 / 2048


def _output_wav(output_dir: Path, entry: MetaEntry) -> Path:
    return output_dir / WAV_DIR / f"{entry.name}.wav"


def read_synthesis_log(output_dir: str | Path) -> dict[str, dict]:
    """The timing rows of earlier runs, by utterance name (the last row wins)."""
    path = Path(output_dir) / SYNTHESIS_LOG
    rows: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["name"]] = row
    return rows


def synthesize(
    model,
    processor,
    entries: Sequence[MetaEntry],
    output_dir: str | Path,
    *,
    batch_size: int = 1,
    generation_kwargs: dict | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    """Generate every entry whose wav is not on disk yet; returns the names synthesised now.

    Each batch is seeded with ``seed`` + the index of its first entry, so an uninterrupted run is
    reproducible; a resumed run batches the remaining entries differently and may sample differently.
    """
    from ..processing.audio import save_audio

    output_dir = Path(output_dir)
    (output_dir / WAV_DIR).mkdir(parents=True, exist_ok=True)
    indexed = [(i, e) for i, e in enumerate(entries) if not _output_wav(output_dir, e).is_file()]
    if indexed and (model is None or processor is None):
        raise ValueError(
            f"{len(indexed)} utterances have no audio in {output_dir / WAV_DIR} and no model was given"
        )
    generation_kwargs = dict(generation_kwargs or {})
    done: list[str] = []
    with open(output_dir / SYNTHESIS_LOG, "a", encoding="utf-8") as log:
        for start in range(0, len(indexed), batch_size):
            batch = indexed[start : start + batch_size]
            torch.manual_seed(seed + batch[0][0])
            began = time.perf_counter()
            inputs = processor(
                [entry.target_text for _, entry in batch],
                references=[
                    [{"text": entry.prompt_text, "audio": str(entry.prompt_wav)}] for _, entry in batch
                ],
                return_tensors="pt",
            ).to(model.device)
            with torch.inference_mode():
                output = model.generate(**inputs, **generation_kwargs, return_dict_in_generate=True)
            audios = processor.batch_decode(output, return_tensors="np")
            if model.device.type == "cuda":
                torch.cuda.synchronize(model.device)
            elapsed = time.perf_counter() - began
            seconds = [len(audio) / processor.sampling_rate for audio in audios]
            for (_, entry), audio, audio_seconds, frames in zip(
                batch, audios, seconds, output.lengths.tolist()
            ):
                path = _output_wav(output_dir, entry)
                partial = path.with_name(f".{path.stem}.partial.wav")
                if len(audio):
                    save_audio(audio, partial, processor.sampling_rate)
                else:  # the model stopped at once; an empty wav records that (save_audio refuses it)
                    soundfile.write(
                        partial, np.zeros(0, np.float32), processor.sampling_rate, subtype="PCM_16"
                    )
                os.replace(partial, path)
                row = {
                    "name": entry.name,
                    "audio_seconds": audio_seconds,
                    # the batch's wall time shared in proportion to audio length: every row has the batch RTF
                    "synthesis_seconds": elapsed * audio_seconds / max(sum(seconds), 1e-9),
                    "frames": int(frames),
                    "batch_size": len(batch),
                }
                log.write(json.dumps(row, ensure_ascii=False) + "\n")
                done.append(entry.name)
            log.flush()
            if progress is not None:
                progress(f"synthesised {start + len(batch)}/{len(indexed)} ({elapsed:.1f} s for this batch)")
    return done


def load_asr(asr: str | Callable, device: str | torch.device | None = None) -> Callable:
    """An ASR callable: a transformers ``automatic-speech-recognition`` pipeline built from a model name
    or path, or the object given (anything that maps a list of ``{"raw", "sampling_rate"}`` dicts to a
    list of ``{"text": ...}`` dicts, e.g. a wrapper around FunASR Paraformer for Chinese)."""
    if isinstance(asr, (str, os.PathLike)):
        from transformers import pipeline

        try:
            return pipeline("automatic-speech-recognition", model=str(asr), device=device)
        except OSError as error:
            raise OSError(
                f"could not load the ASR model {str(asr)!r} (is it downloaded, or are you offline with "
                f"HF_HUB_OFFLINE=1?): {error}"
            ) from error
    if not callable(asr):
        raise TypeError(f"asr must be a model name/path or a callable ASR pipeline, got {type(asr).__name__}")
    return asr


def _asr_name(asr: Callable) -> str:
    model = getattr(asr, "model", None)
    return (
        getattr(asr, "name", None)
        or getattr(model, "name_or_path", None)
        or getattr(asr, "__name__", None)
        or type(model if model is not None else asr).__name__
    )


def _asr_sampling_rate(asr: Callable) -> int:
    """The rate the ASR wants: its feature extractor's (pipelines), its own ``sampling_rate``, or 16 kHz."""
    rate = getattr(getattr(asr, "feature_extractor", None), "sampling_rate", None)
    return int(rate or getattr(asr, "sampling_rate", None) or 16000)


def transcribe(asr: Callable, waveforms: Sequence[np.ndarray], sampling_rate: int, **asr_kwargs) -> list[str]:
    """Transcripts of mono float32 waveforms, resampled here (with soxr) to the ASR's rate: the
    transformers pipeline's own resampler needs torchaudio."""
    from ..processing.audio import resample

    rate = _asr_sampling_rate(asr)
    inputs = [
        {"raw": resample(waveform, sampling_rate, rate), "sampling_rate": rate} for waveform in waveforms
    ]
    outputs = asr(inputs, **asr_kwargs)
    if len(outputs) != len(inputs):
        raise ValueError(f"the ASR returned {len(outputs)} results for {len(inputs)} inputs")
    return [(out["text"] if isinstance(out, dict) else str(out)).strip() for out in outputs]


def _settings(model, generation_kwargs: dict, batch_size: int, seed: int) -> dict:
    config = getattr(model, "generation_config", None)
    settings = config.to_diff_dict() if config is not None else {}
    settings = {
        key: value
        for key, value in settings.items()
        if not key.startswith("_") and key != "transformers_version"
    }
    settings.update(generation_kwargs)
    return json.loads(json.dumps({**settings, "batch_size": batch_size, "seed": seed}, default=str))


def load_entries(meta: str | Path | Sequence[MetaEntry], limit: int | None = None) -> list[MetaEntry]:
    """The first ``limit`` entries of a meta list (path or entries), checking that every prompt wav exists."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    entries = read_meta(meta) if isinstance(meta, (str, os.PathLike)) else list(meta)
    entries = entries[:limit] if limit is not None else entries
    missing = [str(e.prompt_wav) for e in entries if not e.prompt_wav.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} prompt wav(s) not found, first: {missing[0]!r}")
    return entries


def run_evaluation(
    model,
    processor,
    meta: str | Path | Sequence[MetaEntry],
    output_dir: str | Path,
    *,
    asr: str | Callable,
    speaker_embedder: SpeakerEmbedder | str | None = None,
    lang: str = "en",
    batch_size: int = 1,
    generation_kwargs: dict | None = None,
    seed: int = 0,
    limit: int | None = None,
    asr_batch_size: int = 1,
    asr_kwargs: dict | None = None,
    model_name: str | None = None,
    dataset_name: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Synthesise (resuming), transcribe, score WER/CER (+ SIM if an embedder is given) and write the
    report into ``output_dir``. Returns the report dict that ``results.json`` holds.

    ``model``/``processor``: a ``FishS2ForConditionalGeneration`` and its ``FishS2Processor`` (may be
    ``None`` when every output is already on disk). ``asr``: a model name/path for
    ``pipeline("automatic-speech-recognition")`` or a callable (see :func:`load_asr`).
    ``speaker_embedder``: a :class:`SpeakerEmbedder` or an x-vector model name/path; ``None`` skips SIM.
    ``asr_batch_size`` > 1 batches a pipeline; the default 1 transcribes one utterance at a time like
    Seed-TTS-eval (padding a batch changes the transcripts of CTC models).
    """
    for name, value in (("batch_size", batch_size), ("asr_batch_size", asr_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    unit_for_language(lang)  # a bad language fails now, not after hours of synthesis
    meta_name = "/".join(Path(meta).parts[-2:]) if isinstance(meta, (str, os.PathLike)) else "custom list"
    entries = load_entries(meta, limit)
    output_dir = Path(output_dir)
    generation_kwargs = dict(generation_kwargs or {})
    asr = load_asr(asr)
    if isinstance(speaker_embedder, (str, os.PathLike)):
        device = model.device if model is not None else None
        speaker_embedder = SpeakerEmbedder.from_pretrained(str(speaker_embedder), device=device)

    synthesize(model, processor, entries, output_dir, batch_size=batch_size, generation_kwargs=generation_kwargs,
               seed=seed, progress=progress)  # fmt: skip
    transcripts, scores, durations = _score_audio(
        entries, output_dir, asr, speaker_embedder, asr_batch_size, asr_kwargs or {}, progress
    )

    rates = error_rates([e.target_text for e in entries], transcripts, lang=lang)
    timings = read_synthesis_log(output_dir)
    utterances = []
    for entry, transcript, errors, score, seconds in zip(
        entries, transcripts, rates.utterances, scores, durations
    ):
        timing = timings.get(entry.name, {})
        utterances.append(
            {
                "name": entry.name,
                "target_text": entry.target_text,
                "transcript": transcript,
                "normalized_reference": errors.reference,
                "normalized_transcript": errors.hypothesis,
                "error_rate": errors.error_rate,
                "substitutions": errors.substitutions,
                "deletions": errors.deletions,
                "insertions": errors.insertions,
                "reference_tokens": errors.num_reference_tokens,
                "speaker_similarity": score,
                "audio_seconds": seconds,
                "synthesis_seconds": timing.get("synthesis_seconds"),
                "frames": timing.get("frames"),
            }
        )
    timed = [row for row in utterances if row["synthesis_seconds"] is not None]
    synthesis_seconds = sum(row["synthesis_seconds"] for row in timed)
    timed_audio = sum(row["audio_seconds"] for row in timed)
    parameter = next(model.parameters(), None) if model is not None else None
    report = {
        "model": model_name or (getattr(model, "name_or_path", "") if model is not None else "") or "unknown",
        "dataset": dataset_name or meta_name,
        "lang": lang,
        "num_utterances": len(entries),
        "num_empty_outputs": sum(seconds == 0 for seconds in durations),
        "asr": _asr_name(asr),
        "wer": {**rates.summary(), "name": rates.name},
        "speaker_similarity": None,
        "generation": _settings(model, generation_kwargs, batch_size, seed),
        "speed": {
            "rtf": synthesis_seconds / timed_audio if timed and timed_audio > 0 else None,
            "synthesis_seconds": synthesis_seconds,
            "audio_seconds": timed_audio,
            "frames_per_second": sum(row["frames"] or 0 for row in timed) / synthesis_seconds
            if timed
            else None,
            "timed_utterances": len(timed),
            "device": str(parameter.device) if parameter is not None else None,
            "dtype": str(parameter.dtype).removeprefix("torch.") if parameter is not None else None,
            "note": "wall time of processor (reference encoding) + generate + codec decode, per batch",
        },
        "utterances": utterances,
        "versions": _versions(),
    }
    scored = [score for score in scores if score is not None]
    if speaker_embedder is not None and scored:
        report["speaker_similarity"] = {
            "embedder": speaker_embedder.name,
            "mean": sum(scored) / len(scored),
            "num_pairs": len(scored),
            "reference": "the prompt wav of each utterance",
        }
    write_report(report, output_dir)
    return report


def _score_audio(entries, output_dir, asr, embedder, asr_batch_size, asr_kwargs, progress, chunk=16):
    """Transcripts, SIM scores and durations, reading wavs a chunk at a time. An empty output (the model
    stopped at once) gets the transcript "" (every reference token deleted) and no SIM score."""
    from ..processing.audio import as_mono_float32, read_audio

    is_pipeline = hasattr(asr, "feature_extractor") and hasattr(asr, "model")
    transcripts, scores, durations = [], [], []
    for start in range(0, len(entries), chunk):
        batch = entries[start : start + chunk]
        texts: list[str] = [""] * len(batch)
        batch_scores: list[float | None] = [None] * len(batch)
        waveforms, rates, spoken = [], [], []
        for i, entry in enumerate(batch):
            path = _output_wav(output_dir, entry)
            info = soundfile.info(str(path))
            durations.append(info.frames / info.samplerate)
            if info.frames == 0:
                continue
            data, rate = read_audio(path, name=f"output of {entry.name!r}")
            waveforms.append(as_mono_float32(data, name=f"output of {entry.name!r}"))
            rates.append(rate)
            spoken.append(i)
        if len(set(rates)) > 1:
            raise ValueError(
                f"outputs in {output_dir / WAV_DIR} have mixed sampling rates {sorted(set(rates))}"
            )
        if spoken:
            kwargs = {"batch_size": asr_batch_size, **asr_kwargs} if is_pipeline else dict(asr_kwargs)
            for i, text in zip(spoken, transcribe(asr, waveforms, rates[0], **kwargs)):
                texts[i] = text
            if embedder is not None:
                prompts = [
                    read_audio(batch[i].prompt_wav, name=f"prompt of {batch[i].name!r}") for i in spoken
                ]
                similarity = speaker_similarity(
                    waveforms, [audio for audio, _ in prompts], embedder, rates, [rate for _, rate in prompts]
                )
                for i, score in zip(spoken, similarity.scores):
                    batch_scores[i] = score
        transcripts += texts
        scores += batch_scores
        if progress is not None:
            progress(f"scored {start + len(batch)}/{len(entries)}")
    return transcripts, scores, durations


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("transformers-fish-s2", "transformers", "torch", "jiwer"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out


def _generation_kwargs(args: argparse.Namespace) -> dict:
    try:
        kwargs = json.loads(args.generation_kwargs)
    except json.JSONDecodeError as error:
        raise ValueError(f"--generation-kwargs is not valid JSON: {error}") from None
    if not isinstance(kwargs, dict):
        raise ValueError("--generation-kwargs must be a JSON object")
    for option in ("max_new_tokens", "temperature", "top_p", "top_k"):
        if getattr(args, option) is not None:
            kwargs[option] = getattr(args, option)
    if args.greedy:
        kwargs["do_sample"] = False
    return kwargs


def run_from_args(args: argparse.Namespace) -> dict:
    """Load everything the parsed arguments name and run :func:`run_evaluation`."""
    from ..modeling.modeling_fish_s2 import FishS2ForConditionalGeneration
    from ..processing.processing_fish_s2 import FishS2Processor

    load_entries(args.meta, args.limit)  # fail on a bad list or language before loading any model
    unit_for_language(args.lang)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = args.dtype
    if dtype == "auto":
        dtype = "float32" if device.type == "cpu" else "bfloat16"
    generation_kwargs = _generation_kwargs(args)
    asr = load_asr(args.asr, device=device)
    asr_kwargs = {}
    if args.asr_language:
        if getattr(getattr(asr.model, "config", None), "model_type", None) != "whisper":
            raise ValueError("--asr-language only applies to Whisper ASR models")
        asr_kwargs["generate_kwargs"] = {"language": args.asr_language, "task": "transcribe"}
    embedder = (
        SpeakerEmbedder.from_pretrained(args.speaker_model, device=device) if args.speaker_model else None
    )
    model = FishS2ForConditionalGeneration.from_pretrained(args.model, dtype=getattr(torch, dtype)).to(device)
    processor = FishS2Processor.from_pretrained(args.model)
    if getattr(processor, "codec", None) is not None:
        processor.codec.to(device)
    return run_evaluation(
        model, processor, args.meta, args.output_dir, asr=asr, speaker_embedder=embedder, lang=args.lang,
        batch_size=args.batch_size, generation_kwargs=generation_kwargs, seed=args.seed, limit=args.limit,
        asr_batch_size=args.asr_batch_size, asr_kwargs=asr_kwargs, model_name=args.model,
        dataset_name=args.dataset_name, progress=lambda message: print(message, file=sys.stderr),
    )  # fmt: skip
