"""Synthesizing a corpus: rows through the engine into shards, resumable, split across processes.

Why the result never depends on how the job ran: a row's audio depends only on its text, references, options
and seed (the engine's batch invariance), and its place only on its id (shard ``id // shard_size``). Shard
``k`` is made by process ``k % num_processes`` of the shards still missing, so processes share no state but
the output folder; a restart recomputes only shards that were never renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..serving import FishS2Engine, InvalidRequestError, RequestFailedError, SpeechRequest
from . import output
from .inputs import Row


class ProcessState(Protocol):
    """What the runner needs to know about its processes (``accelerate.PartialState`` has it)."""

    process_index: int
    num_processes: int
    is_main_process: bool

    def wait_for_everyone(self) -> None: ...


@dataclass(frozen=True)
class SingleProcess:
    """The state of a job that runs in one process."""

    process_index: int = 0
    num_processes: int = 1
    is_main_process: bool = True

    def wait_for_everyone(self) -> None:
        return None


def process_state(device: str | None = None) -> tuple[ProcessState, str | None]:
    """This process's place and device: ``accelerate``'s state when launched as several processes (gloo on
    CPU), else the only process (device None: the loader's default)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return SingleProcess(), device
    from datetime import timedelta

    import torch
    from accelerate import PartialState

    # the final barrier waits for the slowest process's last shards, which may take longer than the
    # default 30 minutes; a process that dies ends the others through the launcher
    cpu = device == "cpu" or not torch.cuda.is_available()
    state = PartialState(cpu=cpu, timeout=timedelta(hours=24))
    return state, device or state.device


@dataclass(frozen=True)
class Summary:
    """What one process did: rows and audio seconds it made, shards it skipped as already written, wall time;
    ``manifest`` is the finished dataset's summary (the main process only)."""

    rows: int
    audio_seconds: float
    skipped_shards: int
    seconds: float
    manifest: dict[str, Any] | None


def synthesize(
    model,
    processor,
    rows: Sequence[Row],
    output_dir: str | Path,
    *,
    generation: dict[str, Any] | None = None,
    shard_size: int = 64,
    max_batch_size: int = 8,
    max_context: int | None = None,
    compile: bool = False,
    audio_format: str = "wav",
    model_name: str = "",
    state: ProcessState | None = None,
    progress: bool = False,
) -> Summary:
    """Speak ``rows`` into the dataset folder ``output_dir`` (see :mod:`.output` for its layout).

    Args:
        generation: :class:`SpeechRequest` options for every row (``max_new_tokens``, ``temperature``,
            ``do_sample``, ...); the engine checks them.
        shard_size: rows per Parquet shard, also the work lost at most by a kill (per process).
        max_batch_size, max_context, compile: this process's engine (``max_context``: KV-cache positions per
            row, raise it for long multi-chunk texts; ``compile``: the compiled frame step, CUDA graphs on CUDA).
        model_name: recorded in job.json and the dataset card; a restart must name the same model.
        state: this process's place among the job's processes (default: the only one).
        progress: a progress bar on stderr (rows, audio-seconds per second, ETA).
    """
    state = state or SingleProcess()
    generation = dict(generation or {})
    if not rows:
        raise ValueError("there are no rows to synthesize")
    if any(row.id != index for index, row in enumerate(rows)):
        raise ValueError("rows must be numbered 0, 1, 2, ... in order (as read_rows numbers them)")
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    if audio_format not in output.AUDIO_FORMATS:
        raise ValueError(f"audio_format must be one of {sorted(output.AUDIO_FORMATS)}, got {audio_format!r}")
    output_dir = output.check_output_dir(output_dir)
    rate = processor.sampling_rate
    job = _job(
        rows, model=model_name, generation=generation, shard_size=shard_size, audio_format=audio_format,
        sampling_rate=rate, max_context=max_context,
    )  # fmt: skip
    output.prepare(output_dir, job, main=state.is_main_process)
    state.wait_for_everyone()

    count = -(-len(rows) // shard_size)
    assigned = range(state.process_index, count, state.num_processes)
    todo = [k for k in assigned if not output.shard_path(output_dir, k, count).is_file()]
    mine = [row for k in todo for row in rows[k * shard_size : (k + 1) * shard_size]]
    start = time.perf_counter()
    made_seconds = 0.0
    with (
        FishS2Engine(
            model, processor, max_batch_size=max_batch_size, max_context=max_context, compile=compile
        ) as engine,
        _Progress(len(mine), state, enabled=progress) as bar,
    ):
        records: list[dict[str, Any]] = []
        for row, result in _results(engine, mine, generation, window=2 * max_batch_size):
            records.append(_record(row, result, rate, audio_format))
            made_seconds += records[-1]["duration"]
            bar.update(made_seconds)
            if row.id % shard_size == shard_size - 1 or row.id == len(rows) - 1:  # its shard is complete
                output.write_shard(output.shard_path(output_dir, row.id // shard_size, count), records, rate)
                records = []
    state.wait_for_everyone()
    manifest = output.write_manifest(output_dir, job, count) if state.is_main_process else None
    return Summary(len(mine), made_seconds, len(assigned) - len(todo), time.perf_counter() - start, manifest)


def _job(rows: Sequence[Row], **settings: Any) -> dict:
    """Everything the output depends on, so that a restart with other inputs or options is refused."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps([row.id, row.text, row.voice, row.seed]).encode())
    job = {"rows": len(rows), "rows_sha256": digest.hexdigest(), **settings}
    return json.loads(json.dumps(job))


def _results(engine: FishS2Engine, rows: Sequence[Row], generation: dict, *, window: int) -> Iterator[tuple]:
    """``(row, SpeechResult)`` in row order, keeping up to ``window`` requests in the engine so that its
    batch stays full while finished rows are decoded and written."""
    pending: deque = deque()
    upcoming = iter(rows)
    while True:
        while len(pending) < window and (row := next(upcoming, None)) is not None:
            request = SpeechRequest(row.text, row.references, seed=row.seed, output="audio", **generation)
            try:
                pending.append((row, engine.submit(request)))
            except InvalidRequestError as error:  # e.g. a prompt longer than the context: say which row
                raise InvalidRequestError(error.field, f"row {row.id}: {error}") from error
        if not pending:
            return
        row, handle = pending.popleft()
        try:
            yield row, handle.result()
        except RequestFailedError as error:
            raise RequestFailedError(f"row {row.id} failed: {error}") from error


def _record(row: Row, result, rate: int, audio_format: str) -> dict[str, Any]:
    audio = result.audio
    return {
        "id": row.id,
        "text": row.text,
        "voice": row.voice,
        "seed": row.seed,
        "audio": {"bytes": output.encode_audio(audio, rate, audio_format), "path": None},
        "duration": len(audio) / rate,
        "frames": result.frames,
        "eos_reached": result.eos_reached,
    }


class _Progress:
    """A tqdm bar over this process's rows with audio-seconds per wall second; a no-op when disabled."""

    def __init__(self, total: int, state: ProcessState, *, enabled: bool):
        from tqdm.auto import tqdm

        label = (
            f"process {state.process_index + 1}/{state.num_processes}" if state.num_processes > 1 else "rows"
        )
        self.bar = tqdm(total=total, desc=label, unit=" rows", disable=not enabled, file=sys.stderr)
        self.start = time.perf_counter()

    def update(self, audio_seconds: float) -> None:
        self.bar.update(1)
        rate = audio_seconds / max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix_str(f"{audio_seconds:.1f} s audio, {rate:.2f} audio-s/s", refresh=False)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
