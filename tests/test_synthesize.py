"""fish-s2 synthesize: the dataset loads with ``datasets``, every row equals a seeded solo generate(), and
neither a SIGKILL + restart nor two processes change a single byte of it.

One 40-row job (two voices, a few frames per row) is run in-process once, uninterrupted, and compared with
solo calls; the command runs in subprocesses only where a process boundary is the point (kill, restart, two
processes), and must write the same bytes as the in-process run.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile
import torch
from conftest import TINY, expected_tensors

from transformers_fish_s2.cli import main as cli_main
from transformers_fish_s2.cli import write_codes_file
from transformers_fish_s2.synthesis import read_rows, synthesize

ROWS = 40
OPTIONS = {"max_new_tokens": 4}
SHARD_SIZE = 4
VOICES = {"alice": ("The quick brown fox jumps over the lazy dog.", "case2_clone.ref0.codes"),
          "bob": ("I am the first speaker.", "case3_dialogue.ref0.codes")}  # fmt: skip


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> dict:
    """A JSONL of 40 rows alternating two voices (every fifth row with its own seed), and the voice files."""
    folder = tmp_path_factory.mktemp("job")
    voice_args, voices = [], {}
    for name, (text, tensor) in VOICES.items():
        codes = expected_tensors("inputs")[tensor]
        write_codes_file(folder / f"{name}.safetensors", codes, sampling_rate=44100, text=text)
        voice_args.append(f"--voice={name}={folder / f'{name}.safetensors'}")
        voices[name] = [{"text": text, "codes": codes}]
    lines = []
    for i in range(ROWS):
        row = {"text": f"Line {i}: the weather is {['fine', 'grey', 'wild'][i % 3]} today.", "voice": "alice"}
        if i % 2:
            row["voice"] = "bob"
        if i % 5 == 0:
            row["seed"] = 1000 + i
        lines.append(json.dumps(row))
    (folder / "lines.jsonl").write_text("\n".join(lines) + "\n")
    args = [str(folder / "lines.jsonl"), "--model", str(TINY), "--device", "cpu", "--max-new-tokens", "4",
            "--shard-size", str(SHARD_SIZE), "--batch-size", "4", *voice_args]  # fmt: skip
    return {"folder": folder, "input": folder / "lines.jsonl", "voices": voices, "args": args}


@pytest.fixture(scope="module")
def in_process(job, model, processor) -> Path:
    """The job run in this process through the Python API."""
    rows = read_rows(job["input"], voices=job["voices"])
    out = job["folder"] / "api"
    synthesize(model, processor, rows, out, generation=OPTIONS, shard_size=SHARD_SIZE, max_batch_size=4,
               model_name=str(TINY))  # fmt: skip
    return out


def command(job: dict, out: Path, *launcher: str) -> list[str]:
    """The command line of the job writing to ``out``, optionally under a launcher."""
    module = ["-m", "transformers_fish_s2.cli", "synthesize"]
    prefix = [sys.executable, *launcher, *module] if launcher else [sys.executable, *module]
    return [*prefix, *job["args"], "-o", str(out)]


def run_command(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def rows_of(out: Path) -> list[dict]:
    """Every row of every shard, in shard order (the order load_dataset gives)."""
    return pq.ParquetDataset(sorted(str(p) for p in (out / "data").glob("*.parquet"))).read().to_pylist()


def solo(model, processor, text: str, references: list[dict], seed: int):
    torch.manual_seed(seed)
    output = model.generate(**processor(text, references), **OPTIONS)
    frames = int(output.lengths[0])
    return processor.decode(output.sequences[0, :, :frames]), frames, bool(output.eos_reached[0])


def test_forty_rows_two_voices_load_with_datasets_and_equal_solo_generate(job, in_process, model, processor):
    import datasets

    dataset = datasets.load_dataset(str(in_process), split="train")
    assert isinstance(dataset.features["audio"], datasets.Audio)
    assert dataset.features["audio"].sampling_rate == 44100 == processor.sampling_rate
    dataset = dataset.cast_column("audio", datasets.Audio(decode=False))  # decoding would need torchcodec
    assert dataset["id"] == list(range(ROWS))
    assert dataset["voice"] == ["alice", "bob"] * (ROWS // 2)
    assert dataset["seed"][:6] == [1000, 1, 2, 3, 4, 1005]
    for row in dataset:
        expected, frames, eos = solo(model, processor, row["text"], job["voices"][row["voice"]], row["seed"])
        audio, rate = soundfile.read(io.BytesIO(row["audio"]["bytes"]), dtype="float32")
        assert rate == 44100 and (row["frames"], row["eos_reached"]) == (frames, eos), row["id"]
        assert frames > 0 and row["duration"] == len(audio) / rate
        assert (audio == expected).all(), f"row {row['id']}"
    manifest = json.loads((in_process / "manifest.json").read_text())
    assert manifest["rows"] == ROWS and len(manifest["shards"]) == ROWS // SHARD_SIZE


def test_killed_with_sigkill_and_restarted_equals_an_uninterrupted_run(job, in_process):
    out = job["folder"] / "killed"
    shards = out / "data"
    process = subprocess.Popen(command(job, out), env={**os.environ, "OMP_NUM_THREADS": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not (shards.is_dir() and any(shards.glob("*.parquet"))):
            assert process.poll() is None and time.monotonic() < deadline, "no shard was written"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    written = len(list(shards.glob("*.parquet")))
    assert 0 < written < ROWS // SHARD_SIZE, "the kill must land mid-run"
    assert not (out / "manifest.json").exists()

    restarted = run_command(command(job, out))
    assert f"({written} shards already written)" in restarted.stderr
    assert rows_of(out) == rows_of(in_process)  # the command, killed and restarted = the API, uninterrupted
    assert not list(shards.glob(".*")), "no temporary file is left behind"


def test_two_processes_under_accelerate_equal_one_process(job, in_process):
    out = job["folder"] / "two-processes"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launcher = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port)]  # fmt: skip
    done = run_command(command(job, out, *launcher))
    for process in ("1/2", "2/2"):  # both processes made rows (5 shards each)
        assert f"process {process}: {ROWS // 2} rows" in done.stderr, done.stderr[-2000:]
    assert rows_of(out) == rows_of(in_process)


def test_restart_with_other_options_is_refused(job, in_process, capsys):
    args = [*job["args"], "-o", str(in_process)]
    args[args.index("--max-new-tokens") + 1] = "5"
    assert cli_main(["synthesize", *args]) == 1
    assert "holds another job (different generation)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": "hi", "voice": "carol"}', "row 1: voice 'carol' is not defined (defined: alice, bob)"),
        ('{"text": "  "}', "row 1: text must be a non-empty string"),
        ('{"text": "hi", "seed": 1.5}', "row 1: seed must be an integer"),
        ("[1, 2]", "line 2: expected a JSON object"),
    ],
)
def test_bad_rows_are_named_before_anything_runs(job, tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n' + line + "\n")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_rows(path, voices=job["voices"])


def test_push_to_hub_offline_fails_before_synthesis(job, tmp_path, capsys):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert cli_main(["synthesize", *job["args"], "-o", str(tmp_path / "out"), "--push-to-hub", "me/x"]) == 1
    assert "offline mode is on (HF_HUB_OFFLINE)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_option_the_engine_refuses_names_the_row(job, model, processor, tmp_path):
    rows = read_rows(job["input"], voices=job["voices"])[:2]
    with pytest.raises(ValueError, match="row 0: .*temperature"):
        synthesize(model, processor, rows, tmp_path / "out", generation={"temperature": -1.0})
    assert not list((tmp_path / "out" / "data").glob("*.parquet"))


def test_jsonl_csv_txt_and_a_saved_dataset_give_the_same_rows(tmp_path):
    import datasets

    texts = ["First line.", "Second, with a comma.", "Third."]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n\n" for t in texts))
    (tmp_path / "a.csv").write_text("text\n" + "".join(f'"{t}"\n' for t in texts))
    (tmp_path / "a.txt").write_text("\n\n".join(texts) + "\n")
    datasets.Dataset.from_dict({"text": texts}).save_to_disk(str(tmp_path / "saved"))
    expected = [(i, t, None, 7 + i, None) for i, t in enumerate(texts)]
    for source in ("a.jsonl", "a.csv", "a.txt", "saved"):
        rows = read_rows(tmp_path / source, seed=7)
        assert [(r.id, r.text, r.voice, r.seed, r.references) for r in rows] == expected, source


def test_reference_clip_columns_resolve_relative_to_the_input(tmp_path):
    (tmp_path / "clips").mkdir()
    soundfile.write(tmp_path / "clips" / "me.wav", np.zeros(4410, dtype="float32"), 44100)
    (tmp_path / "a.csv").write_text(
        "text,reference_audio,reference_text,seed\nHi.,clips/me.wav,Hello me.,5\n"
    )
    (row,) = read_rows(tmp_path / "a.csv")
    assert (row.voice, row.seed) == ("clips/me.wav", 5)
    assert row.references == [{"text": "Hello me.", "audio": str(tmp_path / "clips" / "me.wav")}]
    (tmp_path / "b.csv").write_text("text,reference_audio,reference_text\nHi.,clips/gone.wav,Hello.\n")
    with pytest.raises(FileNotFoundError, match="row 0: reference audio not found"):
        read_rows(tmp_path / "b.csv")
