"""The output folder of a synthesis job: a ``datasets``-loadable audio dataset in Parquet shards.

    OUT/job.json                                what was asked (checked again on a restart)
    OUT/data/shard-00000-of-00005.parquet       rows 0 .. shard_size-1, in row order
    OUT/manifest.json, OUT/README.md            written once every shard exists (summary, dataset card)

Shard ``k`` always holds rows ``k*shard_size ..``, whichever process made it and however often the job was
restarted, so the dataset is the same row for row. A shard is written under a hidden temporary name and
renamed when complete: a file under its final name is finished, which is what a restart relies on.
Shards are written with pyarrow and the ``datasets`` feature metadata (``datasets`` itself would need
torchcodec just to store bytes), so ``load_dataset(OUT)`` sees an ``Audio`` column.
"""

from __future__ import annotations

import io
import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from ..files import atomic_output

AUDIO_FORMATS = ("wav", "flac")
"""Audio encodings of the ``audio`` column: WAV 32-bit float keeps the model's output exactly; FLAC 16-bit is
about a quarter of the size (what training corpora usually use)."""


def features(sampling_rate: int):
    """The dataset's columns and types."""
    from datasets import Audio, Features, Value

    return Features(
        {
            "id": Value("int64"),
            "text": Value("string"),
            "voice": Value("string"),
            "seed": Value("int64"),
            "audio": Audio(sampling_rate=sampling_rate),
            "duration": Value("float64"),
            "frames": Value("int32"),
            "eos_reached": Value("bool"),
        }
    )


def encode_audio(audio: np.ndarray, sampling_rate: int, audio_format: str) -> bytes:
    """One waveform as the bytes of an audio file (the ``Audio`` feature's storage).

    The float WAV header is written here because libsndfile adds a PEAK chunk with the current time to float
    WAVs: the same audio would give different bytes in every run, and a restarted job a different dataset.
    """
    audio = np.clip(audio, -1.0, 1.0)
    if audio_format == "flac":
        buffer = io.BytesIO()
        soundfile.write(buffer, audio, sampling_rate, format="FLAC", subtype="PCM_16")
        return buffer.getvalue()
    data = audio.astype("<f4").tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        *(b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 3, 1, sampling_rate, 4 * sampling_rate, 4, 32),
        *(b"data", len(data)),
    )  # RIFF, format chunk (3 = IEEE float, mono, 32 bits), data chunk
    return header + data


def shard_path(output_dir: Path, index: int, count: int) -> Path:
    return output_dir / "data" / f"shard-{index:05d}-of-{count:05d}.parquet"


def write_shard(path: Path, records: Sequence[dict[str, Any]], sampling_rate: int) -> None:
    """Write one shard's rows beside ``path`` and rename it into place."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(list(records), schema=features(sampling_rate).arrow_schema)
    with atomic_output(path) as temporary:
        pq.write_table(table, temporary)


def prepare(output_dir: Path, job: dict[str, Any], *, main: bool) -> None:
    """Check that ``output_dir`` is new or holds this same job; the main process then records the job and
    removes temporary files a killed run left behind (before the other processes start writing)."""
    job_file = output_dir / "job.json"
    if job_file.is_file():
        previous = json.loads(job_file.read_text())
        if previous != job:
            changed = sorted(key for key in job.keys() | previous.keys() if job.get(key) != previous.get(key))
            raise ValueError(
                f"{str(output_dir)!r} holds another job (different {', '.join(changed)}); "
                "restart with the same input and options, or use a new output folder"
            )
    if not main:
        return
    (output_dir / "data").mkdir(parents=True, exist_ok=True)
    _write_json(job_file, job)
    for stale in (output_dir / "data").glob(".*.partial"):
        stale.unlink(missing_ok=True)


def write_manifest(output_dir: Path, job: dict[str, Any], shard_count: int) -> dict[str, Any]:
    """Summarize the finished dataset (read from the shards themselves) in manifest.json and a dataset card."""
    import pyarrow.parquet as pq

    shards = [shard_path(output_dir, index, shard_count) for index in range(shard_count)]
    missing = [path.name for path in shards if not path.is_file()]
    if missing:
        raise RuntimeError(f"{len(missing)} shards are missing after every process finished: {missing[:5]}")
    stats = pq.ParquetDataset([str(path) for path in shards]).read(columns=["duration", "eos_reached"])
    manifest = {
        "rows": stats.num_rows,
        "audio_seconds": round(float(np.sum(stats["duration"].to_numpy())), 3),
        "rows_without_end_token": int(stats.num_rows - np.sum(stats["eos_reached"].to_numpy())),
        "shards": [path.relative_to(output_dir).as_posix() for path in shards],
        "job": job,
    }
    _write_json(output_dir / "manifest.json", manifest)
    with atomic_output(output_dir / "README.md") as temporary:
        temporary.write_text(_card(manifest), encoding="utf-8")
    return manifest


def _card(manifest: dict[str, Any]) -> str:
    """A dataset card whose YAML header points ``load_dataset`` at the shards only (not the JSON files)."""
    job = manifest["job"]
    return (
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/shard-*.parquet\n"
        "task_categories:\n- text-to-speech\n---\n\n"
        f"# Speech synthesized with {job['model']}\n\n"
        f"{manifest['rows']} rows, {manifest['audio_seconds'] / 3600:.2f} hours of audio at "
        f"{job['sampling_rate']} Hz ({job['audio_format']}), made by `fish-s2 synthesize` "
        "(transformers-fish-s2). Columns: id, text, voice, seed, audio, duration (s), frames, eos_reached "
        f"(False: stopped by the frame limit; {manifest['rows_without_end_token']} rows). "
        "Options: see manifest.json.\n"
    )


def _write_json(path: Path, value: Any) -> None:
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def check_output_dir(output_dir: str | os.PathLike) -> Path:
    """The output folder as a path; its parent must exist (the folder itself is created)."""
    path = Path(output_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"output {str(path)!r} exists and is not a folder")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output {str(path)!r}: folder {str(path.parent)!r} does not exist")
    return path
