"""Ray Serve: two replicas of the tiny model behind the server's OpenAI endpoint, on a local Ray instance
started by this module (2 CPUs, a small object store, HTTP on 127.0.0.1) and shut down at its end, even on
failure.

Eight concurrent requests must all complete, both replicas must have served some (the ``x-fish-s2-replica``
header), and every response must carry the audio of a seeded solo ``generate()``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from conftest import TINY, expected_tensors

from transformers_fish_s2.cli import write_codes_file
from transformers_fish_s2.serving.audio_formats import FORMATS, encode_audio
from transformers_fish_s2.serving.ray import REPLICA_HEADER

pytestmark = pytest.mark.slow

VOICE = ("The quick brown fox jumps over the lazy dog.", "case2_clone.ref0.codes")
FRAMES = 6


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """The HTTP address of the app that the documented ``serve run ... :app model=... num_replicas=2`` deploys on
    a Ray instance of this module; voices in a folder all replicas see. Serve's HTTP proxy listens on 127.0.0.1;
    Ray's own ports listen on the machine's address (Ray has no loopback-only option) behind its token auth."""
    import ray
    from ray import serve

    voices = tmp_path_factory.mktemp("voices")
    codes = expected_tensors("inputs")[VOICE[1]]
    write_codes_file(voices / "alice.safetensors", codes, sampling_rate=44100, text=VOICE[0])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = ray.init(
        num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False,
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}},
    )  # fmt: skip
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        command = [str(Path(sys.executable).parent / "serve"), "run", "--non-blocking", "--address",
                   context.address_info["gcs_address"], "transformers_fish_s2.serving.ray:app", f"model={TINY}",
                   "num_replicas=2", "num_cpus=0.5", "device=cpu", "dtype=float32", "max_batch_size=4",
                   f"voices_dir={voices}"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def body(index: int) -> dict:
    """Request `index`; seeds 30-37 make all six frames on the tiny model (no early end: real audio to compare)."""
    return {
        "model": "s2-pro", "input": f"Request {index} is spoken here.", "voice": "alice" if index % 2 else "default",
        "response_format": "pcm", "seed": 30 + index, "max_new_tokens": FRAMES,
    }  # fmt: skip


def solo_pcm(model, processor, request: dict) -> np.ndarray:
    """The 16-bit samples the server sends for the request's seeded solo generate(), decoded by the codec."""
    references = [{"text": VOICE[0], "codes": expected_tensors("inputs")[VOICE[1]]}]
    torch.manual_seed(request["seed"])
    inputs = processor(request["input"], references if request["voice"] == "alice" else None)
    output = model.generate(**inputs, max_new_tokens=FRAMES)
    audio = processor.decode(output.sequences[0, :, : int(output.lengths[0])])
    return np.frombuffer(encode_audio(audio, processor.sampling_rate, FORMATS["pcm"]), "<i2")


def test_eight_concurrent_requests_spread_over_both_replicas_and_equal_solo_generate(url, model, processor):
    requests = [body(index) for index in range(8)]
    with httpx.Client(base_url=url, timeout=300) as client, ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda request: client.post("/v1/audio/speech", json=request), requests))
    assert [response.status_code for response in responses] == [200] * 8, responses[0].text
    replicas = {response.headers[REPLICA_HEADER] for response in responses}
    assert len(replicas) == 2, f"one replica served everything: {replicas}"
    for request, response in zip(requests, responses):
        expected = solo_pcm(model, processor, request)
        assert len(expected) > 0
        assert np.array_equal(np.frombuffer(response.content, "<i2"), expected), request


def test_streamed_audio_passes_through_the_proxy(url, model, processor):
    request = {**body(3), "stream_format": "audio"}
    with (
        httpx.Client(base_url=url, timeout=300) as client,
        client.stream("POST", "/v1/audio/speech", json=request) as response,
    ):
        assert response.status_code == 200 and response.headers[REPLICA_HEADER]
        streamed = b"".join(response.iter_bytes())
    expected = solo_pcm(model, processor, request)
    samples = np.frombuffer(streamed, "<i2").astype(np.int32)
    assert len(samples) == len(expected)
    assert np.abs(samples - expected).max() <= 1  # the streaming decoder matches decode() to float tolerance


def test_a_mistyped_serve_run_argument_is_refused_by_name():
    from pydantic import ValidationError

    from transformers_fish_s2.serving.ray import RayServeArgs

    with pytest.raises(ValidationError, match="num_replica\n"):
        RayServeArgs.model_validate({"model": str(TINY), "num_replica": "2"})


def test_serve_run_arguments_become_the_deployment_options():
    from transformers_fish_s2.serving.ray import RayServeArgs, app

    args = {"model": str(TINY), "max_replicas": "4", "num_gpus": "1", "max_batch_size": "16"}
    deployment = app(RayServeArgs.model_validate(args))._bound_deployment  # the Deployment behind the app
    assert deployment.ray_actor_options == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert deployment.max_ongoing_requests == 32  # a batch decoding, the next one waiting
    autoscaling = deployment._deployment_config.autoscaling_config
    assert (autoscaling.min_replicas, autoscaling.max_replicas, autoscaling.target_ongoing_requests) == (
        1,
        4,
        16,
    )
    with pytest.raises(ValueError, match="give max_replicas too"):
        app(RayServeArgs.model_validate({"model": str(TINY), "min_replicas": "2"}))
