"""The server's limits on a real process: API key, full queue (429 + Retry-After), body size, and the drain
on SIGTERM (in-flight streams finish, new connections are refused, the process ends by the signal).

One server with a single slot and a queue of one, so that two requests fill it; the SIGTERM test ends it
and runs last.
"""

from __future__ import annotations

import signal
import time

import httpx
import numpy as np
import openai
import pytest
from server_process import ServerProcess

KEY = "test-key-7f3a"
AUTH = {"Authorization": f"Bearer {KEY}"}
TEXT = "Hello there, how are you?"
SEED = 1  # with this seed the tiny model speaks TEXT for 132 frames before its end of speech


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("limits")
    process = ServerProcess(
        folder / "server.log", "--max-batch-size", "1", "--max-queue-size", "1", "--api-key", KEY,
        "--max-body-mb", "1", "--voices-dir", str(folder / "voices"), "--drain-seconds", "60",
    )  # fmt: skip
    yield process
    process.stop()


def stream_body(frames: int) -> dict:
    return {"model": "s2-pro", "input": TEXT, "response_format": "pcm", "stream_format": "audio", "seed": SEED,
            "max_new_tokens": frames}  # fmt: skip


def test_api_key_is_required(server):
    url = f"{server.url}/v1/audio/speech"
    body = {"model": "s2-pro", "input": TEXT, "max_new_tokens": 4, "seed": SEED}
    missing = httpx.post(url, json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["type"] == "authentication_error"
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(url, json=body, headers={"Authorization": KEY}).status_code == 401  # no "Bearer "
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    assert httpx.get(f"{server.url}/v1/voices").status_code == 401
    assert httpx.get(f"{server.url}/health").status_code == 200  # probes need no key
    assert httpx.get(f"{server.url}/ready").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).audio.speech.create(
            model="s2-pro", input=TEXT, voice="default"
        )
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=60)
    audio = client.audio.speech.create(
        model="s2-pro", input=TEXT, voice="default", response_format="pcm", extra_body=body
    ).content
    assert len(audio) == 4 * 2048 * 2  # four frames of 16-bit samples


def test_a_full_queue_answers_429_with_retry_after(server):
    url = f"{server.url}/v1/audio/speech"
    with (
        httpx.Client(timeout=60, headers=AUTH) as running_client,
        httpx.Client(timeout=60, headers=AUTH) as queued_client,
        running_client.stream("POST", url, json=stream_body(120)) as running,
    ):
        running_chunks = running.iter_bytes()  # kept: a dropped iterator closes the response
        next(running_chunks)  # generating in the only slot
        with queued_client.stream("POST", url, json=stream_body(120)) as queued:
            assert queued.status_code == 200  # waits in the queue of one
            refused = httpx.post(url, json=stream_body(4), headers=AUTH, timeout=60)
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["error"]["code"] == "queue_full"
    # both clients hung up: the slot and the queue are free again
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=60)
    response = client.audio.speech.create(model="s2-pro", input=TEXT, voice="default", response_format="pcm",
                                          extra_body={"seed": SEED, "max_new_tokens": 4})  # fmt: skip
    assert len(response.content) == 4 * 2048 * 2


def test_oversized_bodies_are_refused(server):
    url = f"{server.url}/v1/tts"
    big = b"x" * (2 * 2**20)
    declared = httpx.post(url, content=big, headers={**AUTH, "content-type": "application/msgpack"})
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "body_too_large"

    def chunked():  # no Content-Length: counted as it arrives
        for _ in range(32):
            yield b"x" * 65536

    streamed = httpx.post(url, content=chunked(), headers={**AUTH, "content-type": "application/msgpack"})
    assert streamed.status_code == 413
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_sigterm_drains_in_flight_streams_then_exits(server):
    frames = 60
    with (
        httpx.Client(timeout=120, headers=AUTH) as http,
        http.stream("POST", f"{server.url}/v1/audio/speech", json=stream_body(frames)) as response,
    ):
        chunks = response.iter_bytes()
        first = next(chunks)
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while True:  # soon no new connections are accepted
            try:
                httpx.get(f"{server.url}/health", timeout=2)
            except httpx.TransportError:
                break
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.05)
        audio = np.frombuffer(first + b"".join(chunks), "<i2")
    assert len(audio) == frames * 2048  # the in-flight request finished
    assert server.process.wait(60) == -signal.SIGTERM  # uvicorn re-raises the signal after the drain
    assert "Shutting down" in server.log()
