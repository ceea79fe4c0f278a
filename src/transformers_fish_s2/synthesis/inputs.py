"""Reading the rows of a synthesis job: a JSONL, CSV or TXT file, or a ``datasets`` dataset.

Every row is checked before the first one is synthesized, so a typo in row 90 000 stops the job at once
instead of hours later. A row's id is its position in the input (0-based; blank TXT lines do not count):
ids name rows in the output, decide which shard a row lands in and, without a seed column, its seed.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE_SUFFIXES = (".jsonl", ".csv", ".txt")
DEFAULT_COLUMNS = {
    "text": "text",
    "voice": "voice",
    "reference_audio": "reference_audio",
    "reference_text": "reference_text",
    "seed": "seed",
}
"""Column names looked for when the caller names none (all but ``text`` are optional)."""


@dataclass(frozen=True)
class Row:
    """One text to speak. ``voice`` is the voice's name, or the reference clip's path for rows with their own
    clip (what the output's ``voice`` column shows); ``references`` is what the engine is given."""

    id: int
    text: str
    voice: str | None
    seed: int
    references: list[dict] | None


def read_rows(
    source: str | os.PathLike,
    *,
    split: str = "train",
    columns: Mapping[str, str] | None = None,
    voices: Mapping[str, list[dict]] | None = None,
    seed: int = 0,
) -> list[Row]:
    """The checked rows of ``source``: a ``.jsonl``/``.csv``/``.txt`` file, a folder written by
    ``Dataset.save_to_disk``, or anything ``datasets.load_dataset`` takes (a Hub name, a data folder).

    Args:
        split: the split of a ``datasets`` source.
        columns: role -> column name for the roles of :data:`DEFAULT_COLUMNS`; a role left out uses the
            default name when the input has that column. A named column must exist.
        voices: voice name -> references (``{"text", "codes"}`` dicts); the voice column picks one per row.
        seed: without a seed column, row ``i`` gets seed ``seed + i``.
    """
    table, base = _read_table(source, split)
    chosen = _choose_columns(table, columns or {})
    voices = voices or {}
    rows = []
    for index in range(_length(table)):
        values = {role: table[name][index] for role, name in chosen.items()}
        rows.append(_row(index, values, voices, seed, base))
    if not rows:
        raise ValueError(f"the input {str(source)!r} has no rows")
    return rows


def _read_table(source: str | os.PathLike, split: str) -> tuple[Mapping[str, Sequence[Any]], Path | None]:
    """Columns by name, and the folder that relative reference paths start from."""
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    if suffix in FILE_SUFFIXES:
        if not path.is_file():
            raise FileNotFoundError(f"input file not found: {str(path)!r}")
        reader = {".jsonl": _read_jsonl, ".csv": _read_csv, ".txt": _read_txt}[suffix]
        return _columns(reader(path), path), path.parent
    return _read_dataset(str(source), path, split), path if path.is_dir() else None


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{str(path)!r} line {number}: not JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{str(path)!r} line {number}: expected a JSON object, got {record!r:.60}")
            records.append(record)
    return records


def _read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _read_txt(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [{"text": line.strip()} for line in handle if line.strip()]


def _columns(records: list[dict], path: Path) -> dict[str, list]:
    """Records as columns; a key missing from a record is ``None`` there."""
    names = list(dict.fromkeys(key for record in records for key in record))
    if not names and records:
        raise ValueError(f"{str(path)!r} has no columns")
    return {name: [record.get(name) for record in records] for name in names}


def _read_dataset(name: str, path: Path, split: str) -> Mapping[str, Sequence[Any]]:
    import datasets

    from ..hub import hub_errors

    if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
        dataset = datasets.load_from_disk(str(path))
    else:
        with hub_errors(name):
            dataset = datasets.load_dataset(name, split=split)
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise ValueError(f"split {split!r} not in {name!r}; it has {sorted(dataset)}")
        dataset = dataset[split]
    return dataset


def _length(table: Mapping[str, Sequence[Any]]) -> int:
    return table.num_rows if hasattr(table, "num_rows") else len(next(iter(table.values()), []))


def _choose_columns(table: Mapping[str, Sequence[Any]], columns: Mapping[str, str]) -> dict[str, str]:
    names = list(table.column_names if hasattr(table, "column_names") else table)
    unknown = sorted(set(columns) - set(DEFAULT_COLUMNS))
    if unknown:
        raise ValueError(f"unknown column roles {unknown}; the roles are {list(DEFAULT_COLUMNS)}")
    chosen = {}
    for role, default in DEFAULT_COLUMNS.items():
        name = columns.get(role)
        if name is not None and name not in names:
            raise ValueError(
                f"--{role.replace('_', '-')}-column {name!r} is not a column of the input {names}"
            )
        if name is None and (role == "text" or default in names):
            name = default
        if name is not None:
            chosen[role] = name
    if chosen["text"] not in names:
        raise ValueError(
            f"the input has no {chosen['text']!r} column (its columns: {names}); name it with --text-column"
        )
    if ("reference_audio" in chosen) != ("reference_text" in chosen):
        raise ValueError("reference clips need both a reference_audio and a reference_text column")
    if "voice" in chosen and "reference_audio" in chosen:
        raise ValueError("give a voice column or reference clip columns, not both")
    return chosen


def _row(
    index: int, values: dict[str, Any], voices: Mapping[str, list[dict]], seed: int, base: Path | None
) -> Row:
    where = f"row {index}"
    text = values["text"]
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: text must be a non-empty string, got {text!r:.60}")
    voice, references = None, None
    if values.get("voice") not in (None, ""):
        voice = str(values["voice"])
        if voice not in voices:
            known = ", ".join(sorted(voices)) or "none"
            raise ValueError(
                f"{where}: voice {voice!r} is not defined (defined: {known}); pass --voice {voice}=FILE"
            )
        references = voices[voice]
    elif values.get("reference_audio") not in (None, ""):
        audio = Path(str(values["reference_audio"])).expanduser()
        audio = audio if audio.is_absolute() or base is None else base / audio
        if not audio.is_file():
            raise FileNotFoundError(f"{where}: reference audio not found: {str(audio)!r}")
        transcript = values.get("reference_text")
        if not isinstance(transcript, str) or not transcript.strip():
            raise ValueError(f"{where}: reference_text must be the transcript of {str(audio)!r}")
        voice, references = str(values["reference_audio"]), [{"text": transcript, "audio": str(audio)}]
    return Row(index, text.strip(), voice, _seed(values.get("seed"), seed + index, where), references)


def _seed(value: Any, default: int, where: str) -> int:
    """A row's seed from its seed column (an integer, or its decimal text in CSV files), else ``default``."""
    if value is None or value == "":
        return default
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValueError(f"{where}: seed must be an integer in [0, 2**63), got {value!r:.40}")
    return value
