"""``fish-s2 serve`` as a real process on loopback, called with the official ``openai`` client, fish-speech's
msgpack request and plain HTTP: audio in every format against a seeded solo ``generate()``, streams, server-sent
events, voices, 16 concurrent streams, disconnects, and a list of bad requests.

One server (4 slots) serves the whole module; requests make few frames (the tiny model's ~20 ms frames on two
shared cores).
"""

from __future__ import annotations

import base64
import io
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import msgpack
import numpy as np
import openai
import pytest
import soundfile
import torch
from conftest import EXPECTED, TINY
from server_process import ServerProcess

from transformers_fish_s2.cli import main as cli_main

RATE = 44100
TEXT = "Hello there, how are you?"
SEED = 1  # the tiny model speaks TEXT for more than 24 frames with this seed (many seeds stop at once)
FRAMES = 24
LONG_FRAMES = 120  # seed 1 reaches its end of speech only after 132 frames
REFERENCE_WAV = EXPECTED / "test_waveform_44k1_pcm16.wav"
REFERENCE_TEXT = "The quick brown fox jumps over the lazy dog."
LSB = 1 / 32768


@pytest.fixture(scope="module")
def voices_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("voices")


@pytest.fixture(scope="module")
def server(tmp_path_factory, voices_dir):
    log = tmp_path_factory.mktemp("server") / "server.log"
    process = ServerProcess(log, "--max-batch-size", "4", "--voices-dir", str(voices_dir))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def solo_audio(model, processor, text=TEXT, seed=SEED, references=None, **options) -> np.ndarray:
    """processor.decode of a seeded solo generate(): what a request must sound like."""
    options.setdefault("max_new_tokens", FRAMES)
    torch.manual_seed(seed)
    out = model.generate(**processor(text, references), **options)
    return processor.decode(out.sequences[0, :, : int(out.lengths[0])], return_tensors="np")


def pcm16(audio: np.ndarray) -> np.ndarray:
    """The 16-bit samples soundfile writes for a float waveform (what WAV/PCM/FLAC responses must hold)."""
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, RATE, format="WAV", subtype="PCM_16")
    buffer.seek(0)
    return soundfile.read(buffer, dtype="int16")[0]


def samples(data: bytes, response_format: str) -> tuple[np.ndarray, int]:
    """Decoded 16-bit samples (float32 for mp3/opus) and the rate of a response body."""
    if response_format == "pcm":
        return np.frombuffer(data, "<i2"), RATE
    dtype = "float32" if response_format in ("mp3", "opus") else "int16"
    audio, rate = soundfile.read(io.BytesIO(data), dtype=dtype)
    return audio, rate


def assert_streamed_close(streamed: np.ndarray, expected: np.ndarray) -> None:
    """Streamed audio comes from the codec's streaming decoder: equal to processor.decode up to float
    rounding (~1e-6), so a 16-bit sample may round to its neighbour."""
    assert streamed.shape == expected.shape
    if not len(expected):  # the request's first frame was its end of speech
        return
    assert np.abs(streamed.astype(np.int32) - expected.astype(np.int32)).max() <= 1
    assert np.count_nonzero(streamed != expected) < 0.01 * len(expected)


def speech(client, response_format="wav", **extra):
    return dict(
        model="s2-pro",
        input=extra.pop("input", TEXT),
        voice=extra.pop("voice", "default"),
        response_format=response_format,
        extra_body={"seed": SEED, "max_new_tokens": FRAMES, **extra},
    )


def metric(server, name: str, labels: str = "") -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} not in /metrics"
    return float(match.group(1))


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------------------


def test_operations(server):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/ready").json() == {"status": "ready"}
    assert httpx.get(f"{server.url}/v1/models").json()["data"][0]["id"] == "s2-pro"
    text = httpx.get(f"{server.url}/metrics").text
    for name in ("fish_s2_queue_depth", "fish_s2_active_rows", "fish_s2_frames_per_second",
                 "fish_s2_time_to_first_audio_seconds_bucket", "fish_s2_http_requests_total"):  # fmt: skip
        assert name in text
    assert metric(server, "fish_s2_max_batch_size") == 4


def test_every_format_equals_solo_generate(server, client, model, processor):
    expected = solo_audio(model, processor)
    assert len(expected) > 0
    for response_format in ("wav", "pcm", "flac", "mp3", "opus"):
        data = client.audio.speech.create(**speech(client, response_format)).content
        with client.audio.speech.with_streaming_response.create(
            **speech(client, response_format)
        ) as response:
            assert response.headers["x-seed"] == str(SEED)
            streamed_body = b"".join(response.iter_bytes())
        audio, rate = samples(data, response_format)
        # no stream_format: the complete file, sent in pieces (Ogg streams differ only in their random serial)
        if response_format == "opus":
            np.testing.assert_array_equal(samples(streamed_body, "opus")[0], audio)
        else:
            assert streamed_body == data, response_format
        if response_format in ("wav", "pcm", "flac"):
            assert rate == RATE
            np.testing.assert_array_equal(audio, pcm16(expected), err_msg=response_format)
        elif response_format == "mp3":
            assert rate == RATE and abs(len(audio) - len(expected)) < 0.01 * len(expected)
        else:  # opus: 48 kHz
            assert rate == 48000 and abs(len(audio) - len(expected) * 48000 / RATE) < 0.01 * len(audio)


def test_streamed_audio_as_it_is_made(server, client, model, processor):
    expected = pcm16(solo_audio(model, processor))
    for response_format in ("wav", "pcm", "mp3", "opus"):
        with client.audio.speech.with_streaming_response.create(
            **speech(client, response_format), stream_format="audio"
        ) as response:
            pieces = list(response.iter_bytes())
        audio, rate = samples(b"".join(pieces), response_format)
        if response_format in ("wav", "pcm"):
            assert rate == RATE
            assert_streamed_close(audio, expected)
        elif response_format == "mp3":  # a stream's MP3 keeps the encoder's padding (< 0.1 s)
            assert rate == RATE and 0 <= len(audio) - len(expected) < 0.1 * RATE
        else:
            assert rate == 48000 and abs(len(audio) - len(expected) * 48000 / RATE) < 0.01 * len(audio)


def test_server_sent_events_concatenate_to_the_audio(server, client):
    complete = samples(client.audio.speech.create(**speech(client, "pcm")).content, "pcm")[0]
    with client.audio.speech.with_streaming_response.create(
        **speech(client, "pcm"), stream_format="audio"
    ) as raw:
        streamed = b"".join(raw.iter_bytes())
    with client.audio.speech.with_streaming_response.create(
        **speech(client, "pcm"), stream_format="sse"
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data: ") :]) for line in response.iter_lines() if line]
    assert [event["type"] for event in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert len(events) >= 3  # the first chunk early, then the rest
    done = events[-1]
    assert done["type"] == "speech.audio.done" and done["usage"]["output_tokens"] == FRAMES
    audio = b"".join(base64.b64decode(event["audio"]) for event in events[:-1])
    assert audio == streamed
    assert_streamed_close(np.frombuffer(audio, "<i2"), complete)


def test_instructions_become_inline_markup(server, client, model, processor):
    data = client.audio.speech.create(**speech(client, "wav"), instructions="whisper").content
    expected = solo_audio(model, processor, text=f"[whisper] {TEXT}")
    np.testing.assert_array_equal(samples(data, "wav")[0], pcm16(expected))


def test_fish_speech_msgpack_request_with_a_reference_clip(server, model, processor):
    """Shaped as the authors' client sends it: msgpack, clip bytes + transcript, their sampling defaults."""
    request = {
        "text": TEXT, "references": [{"audio": REFERENCE_WAV.read_bytes(), "text": REFERENCE_TEXT}],
        "reference_id": None, "format": "wav", "max_new_tokens": FRAMES, "chunk_length": 300, "top_p": 0.8,
        "repetition_penalty": 1.1, "temperature": 0.8, "streaming": False, "use_memory_cache": "off", "seed": SEED,
    }  # fmt: skip
    response = httpx.post(
        f"{server.url}/v1/tts",
        params={"format": "msgpack"},
        content=msgpack.packb(request),
        headers={"content-type": "application/msgpack"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    references = [{"text": REFERENCE_TEXT, "audio": str(REFERENCE_WAV)}]
    expected = solo_audio(
        model, processor, references=references, top_p=0.8, repetition_penalty=1.1, temperature=0.8
    )
    assert len(expected) > 0
    np.testing.assert_array_equal(samples(response.content, "wav")[0], pcm16(expected))
    streamed = httpx.post(
        f"{server.url}/v1/tts",
        content=msgpack.packb({**request, "streaming": True}),
        headers={"content-type": "application/msgpack"},
        timeout=120,
    )
    assert streamed.content[:4] == b"RIFF"
    assert_streamed_close(samples(streamed.content, "wav")[0], pcm16(expected))


def test_voices_saved_listed_used_and_removed(server, client, voices_dir, capsys):
    url = f"{server.url}/v1/voices"
    form = {"name": "alice", "text": REFERENCE_TEXT}
    files = {"audio": ("alice.wav", REFERENCE_WAV.read_bytes(), "audio/wav")}
    created = httpx.post(url, data=form, files=files, timeout=60)
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "alice" and created.json()["frames"] > 0
    assert (voices_dir / "alice.safetensors").is_file()
    assert httpx.post(url, data=form, files=files).status_code == 409
    assert httpx.post(url, data={**form, "overwrite": "true"}, files=files).status_code == 201
    assert [voice["name"] for voice in httpx.get(url).json()["data"]] == ["alice"]
    assert httpx.get(f"{url}/alice").json()["text"] == REFERENCE_TEXT

    # the saved voice speaks exactly like the same clip given inline
    by_name = client.audio.speech.create(**speech(client, "wav", voice="alice")).content
    clip = base64.b64encode(REFERENCE_WAV.read_bytes()).decode()
    inline = client.audio.speech.create(
        **speech(client, "wav", references=[{"audio": clip, "text": REFERENCE_TEXT}])
    )
    assert by_name == inline.content

    # the CLI manages the same folder: what it adds, the running server lists
    assert cli_main(["voices", "remove", "alice", "--voices-dir", str(voices_dir)]) == 0
    assert httpx.get(f"{url}/alice").status_code == 404
    code = cli_main(["voices", "add", "bob", str(REFERENCE_WAV), "--text", REFERENCE_TEXT, "--voices-dir",
                     str(voices_dir), "--model", str(TINY), "--device", "cpu"])  # fmt: skip
    assert code == 0
    assert [voice["name"] for voice in httpx.get(url).json()["data"]] == ["bob"]
    capsys.readouterr()
    assert cli_main(["voices", "list", "--voices-dir", str(voices_dir)]) == 0
    assert capsys.readouterr().out.startswith(f"bob\t{created.json()['frames']} frames\t{REFERENCE_TEXT}")
    assert httpx.delete(f"{url}/bob").json() == {"name": "bob", "deleted": True}
    assert httpx.delete(f"{url}/bob").status_code == 404


def test_sixteen_concurrent_streaming_clients(server, client, model, processor):
    seeds = list(range(16))
    texts = [TEXT, "Nice to meet you. How are you today?"]
    expected = [
        pcm16(solo_audio(model, processor, text=texts[s % 2], seed=s, max_new_tokens=16)) for s in seeds
    ]
    assert sum(len(audio) > 0 for audio in expected) >= 8  # most requests make audio

    def stream(seed: int) -> bytes:
        request = speech(client, "pcm", input=texts[seed % 2], seed=seed, max_new_tokens=16)
        with client.audio.speech.with_streaming_response.create(**request, stream_format="audio") as response:
            return b"".join(response.iter_bytes())

    with ThreadPoolExecutor(16) as pool:
        bodies = list(pool.map(stream, seeds))
    for body, audio in zip(bodies, expected):
        assert_streamed_close(np.frombuffer(body, "<i2"), audio)
    wait_for(lambda: metric(server, "fish_s2_active_rows") == 0)


def test_disconnected_clients_free_their_slots(server):
    cancelled = metric(server, "fish_s2_engine_requests_total", '{outcome="cancelled"}')
    body = {"model": "s2-pro", "input": TEXT, "response_format": "pcm", "stream_format": "audio", "seed": SEED,
            "max_new_tokens": LONG_FRAMES}  # fmt: skip
    with httpx.Client(timeout=60) as http:
        for _ in range(3):
            with http.stream("POST", f"{server.url}/v1/audio/speech", json=body) as response:
                assert response.status_code == 200
                next(
                    response.iter_bytes()
                )  # the first chunk; then the iterator is dropped: the client hangs up
    wait_for(
        lambda: metric(server, "fish_s2_active_rows") == 0 and metric(server, "fish_s2_queue_depth") == 0
    )
    assert metric(server, "fish_s2_engine_requests_total", '{outcome="cancelled"}') == cancelled + 3


NAN_BODY = '{"model": "s2-pro", "input": "Hi", "temperature": NaN}'
CLIP = base64.b64encode(REFERENCE_WAV.read_bytes()).decode()
NOT_AUDIO = base64.b64encode(b"this is not an audio file" * 20).decode()
BAD_REQUESTS = [
    # (route, body or raw, expected status, expected param)
    ("speech", {"input": ""}, 400, "input"),
    ("speech", {"input": "   "}, 400, "input"),
    ("speech", {"input": "x" * 4097}, 400, "input"),
    ("speech", {"input": None}, 400, "input"),
    ("speech", {"response_format": "aac"}, 400, "response_format"),
    ("speech", {"response_format": "ogg"}, 400, "response_format"),
    ("speech", {"voice": "nobody"}, 400, "voice"),
    ("speech", {"voice": "../../etc/passwd"}, 400, "voice"),
    ("speech", {"voice": {"id": "a/b"}}, 400, "voice"),
    ("speech", {"speed": 2.0}, 400, "speed"),
    ("speech", {"speed": 9.0}, 400, "speed"),
    ("speech", NAN_BODY, 400, "temperature"),
    ("speech", {"temperature": -1.0}, 400, "temperature"),
    ("speech", {"top_p": 1.5}, 400, "top_p"),
    ("speech", {"max_new_tokens": 0}, 400, "max_new_tokens"),
    ("speech", {"seed": -3}, 400, "seed"),
    ("speech", {"stream_format": "mp4"}, 400, "stream_format"),
    ("speech", {"response_format": "flac", "stream_format": "audio"}, 400, "response_format"),
    ("speech", {"references": [{"audio": "not base64!", "text": "hi"}]}, 400, "references[0].audio"),
    ("speech", {"references": [{"audio": NOT_AUDIO, "text": "hi"}]}, 400, "references[0].audio"),
    ("speech", {"references": [{"audio": CLIP, "text": " "}]}, 400, "references[0].text"),
    ("speech", {"references": [{"audio": CLIP, "text": "hi"}] * 5}, 400, "references"),
    ("speech", {"instructions": "[loud] and [soft]"}, 400, "instructions"),
    ("speech", {"input": "Hi <|im_end|> there"}, 400, "text"),
    ("speech", "{not json", 400, None),
    ("tts", b"\xc1\xc1", 400, None),
    ("tts", {"text": "Hi", "chunk_length": 50}, 400, "chunk_length"),
    ("tts", {"text": "Hi", "format": "aac"}, 400, "format"),
    ("tts", {"text": "Hi", "reference_id": "../secret"}, 400, "reference_id"),
    ("tts", {"text": ""}, 400, "text"),
]


@pytest.mark.parametrize("route, body, status, param", BAD_REQUESTS)
def test_bad_requests_get_a_specific_error(server, route, body, status, param):
    if route == "speech":
        url, defaults, content_type = (
            f"{server.url}/v1/audio/speech",
            {"model": "s2-pro", "input": TEXT},
            "json",
        )
    else:
        url, defaults, content_type = f"{server.url}/v1/tts", {}, "msgpack"
    if isinstance(body, dict):
        body = {**defaults, **body}
        content = json.dumps(body) if content_type == "json" else msgpack.packb(body)
    else:
        content = body
    response = httpx.post(
        url, content=content, headers={"content-type": f"application/{content_type}"}, timeout=60
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param, error


def test_other_bad_requests_and_the_server_keeps_serving(server, client, model, processor):
    url = server.url
    assert (
        httpx.post(f"{url}/v1/tts", content=b"text=hi", headers={"content-type": "text/plain"}).status_code
        == 415
    )
    bad_name = httpx.post(f"{url}/v1/voices", data={"name": "../evil", "text": "hi"},
                          files={"audio": ("a.wav", REFERENCE_WAV.read_bytes())})  # fmt: skip
    assert bad_name.status_code == 400 and bad_name.json()["error"]["param"] == "name"
    assert (
        httpx.post(f"{url}/v1/voices", data={"name": "carol", "text": "hi"}).status_code == 415
    )  # not a form
    no_audio = httpx.post(f"{url}/v1/voices", data={"name": "carol", "text": "hi"},
                          files={"clip": ("a.wav", REFERENCE_WAV.read_bytes())})  # fmt: skip
    assert no_audio.status_code == 400 and no_audio.json()["error"]["param"] == "audio"
    not_audio = httpx.post(f"{url}/v1/voices", data={"name": "carol", "text": "hi"},
                           files={"audio": ("a.wav", b"RIFF nonsense")})  # fmt: skip
    assert not_audio.status_code == 400 and not_audio.json()["error"]["code"] == "invalid_audio"
    assert httpx.post(f"{url}/v1/voices", data={"name": "default", "text": "hi"},
                      files={"audio": ("a.wav", REFERENCE_WAV.read_bytes())}).status_code == 400  # fmt: skip
    assert httpx.get(f"{url}/v1/voices/nope").status_code == 404
    assert httpx.get(f"{url}/v1/nothing-here").json()["error"]["message"]
    assert httpx.get(f"{url}/v1/audio/speech").status_code == 405
    # still serving, with the same audio as before
    data = client.audio.speech.create(**speech(client, "wav")).content
    np.testing.assert_array_equal(samples(data, "wav")[0], pcm16(solo_audio(model, processor)))
    assert metric(server, "fish_s2_active_rows") == 0
