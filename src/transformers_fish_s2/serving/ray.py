"""Serving on Ray Serve: the HTTP server's FastAPI app as the ingress of N replicas, one engine each.

    serve run transformers_fish_s2.serving.ray:app model=fishaudio/s2-pro num_replicas=2 voices_dir=/shared/voices

Each replica loads the model, runs its own :class:`FishS2Engine` (continuous batching within the replica)
and serves the same routes as ``fish-s2 serve`` (OpenAI and fish-speech speech, voices, metrics); Ray's
proxy spreads requests over the replicas and passes streamed responses through. Replicas share nothing
but the voices folder, which is why it must be shared storage on a cluster. Every response names the
replica that made it (``x-fish-s2-replica``), which makes the spread visible. See ``docs/scale-out.md``.
"""

import os
from typing import Any

from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.serve import Application
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REPLICA_HEADER = "x-fish-s2-replica"


class ReplicaOptions(BaseModel):
    """What one replica loads and how it serves; the ``key=value`` arguments of ``serve run`` (checked here)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    device: str | None = None
    dtype: str | None = None
    max_batch_size: int = 8
    max_queue_size: int = 64
    max_context: int | None = None
    voices_dir: str | None = None
    model_name: str = "s2-pro"
    api_key: str | None = None


class RayServeArgs(ReplicaOptions):
    """``serve run transformers_fish_s2.serving.ray:app key=value ...``: the replica's options plus how many
    replicas (or ``max_replicas`` and optionally ``min_replicas``, default 1, to autoscale) and what each
    replica reserves."""

    num_replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    num_gpus: float = 0.0
    num_cpus: float = 1.0


class _ReplicaHeader:
    """ASGI middleware that adds the replica's id to every response (streamed ones too)."""

    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app = app
        self.header = (REPLICA_HEADER.encode(), replica.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_header if scope["type"] == "http" else send)


@serve.ingress()
class FishS2Replica:
    """One replica: the model, its engine and the server app around them (built once the model is loaded;
    the app's lifespan starts the engine and drains it when Ray stops the replica)."""

    def __init__(self, options: dict[str, Any]) -> None:
        from ..cli_serve import API_KEY_ENV
        from ..hub import load_model_and_processor
        from .engine import FishS2Engine
        from .speech import ServerSettings
        from .voices import VoiceStore, default_voices_dir

        options = ReplicaOptions(**options)
        model, processor = load_model_and_processor(options.model, device=options.device, dtype=options.dtype)
        self.engine = FishS2Engine(
            model,
            processor,
            max_batch_size=options.max_batch_size,
            max_queue_size=options.max_queue_size,
            max_context=options.max_context,
        )
        voices_dir = options.voices_dir or default_voices_dir()
        self.voices = VoiceStore(voices_dir)
        api_key = options.api_key or os.environ.get(API_KEY_ENV) or None
        self.settings = ServerSettings(model_name=options.model_name, api_key=api_key)

    def __serve_build_asgi_app__(self) -> ASGIApp:
        from .app import create_app

        app = create_app(self.engine, self.voices, self.settings)
        app.add_middleware(_ReplicaHeader, replica=serve.get_replica_context().replica_tag)
        return app


def build_app(
    model: str,
    *,
    num_replicas: int | str = 1,
    ray_actor_options: dict[str, Any] | None = None,
    autoscaling_config: dict[str, Any] | None = None,
    max_ongoing_requests: int | None = None,
    **replica_options: Any,
) -> Application:
    """The Ray Serve application: ``serve.run(build_app("fishaudio/s2-pro", num_replicas=4,
    ray_actor_options={"num_gpus": 1}, voices_dir="/shared/voices"))``.

    Args:
        num_replicas: replicas to run (each loads the model); ignored with ``autoscaling_config``.
        ray_actor_options: what each replica reserves (``{"num_gpus": 1}`` puts one replica on each GPU).
        autoscaling_config: Ray Serve autoscaling (``min_replicas``, ``max_replicas``, ...); the target
            ongoing requests default to ``max_batch_size`` (a full batch per replica).
        max_ongoing_requests: requests Ray hands one replica at once (default ``2 * max_batch_size``: a batch
            decoding and the next one waiting, the rest kept in Ray's queue for whichever replica frees up).
        **replica_options: the fields of :class:`ReplicaOptions` (``device``, ``dtype``, ``max_batch_size``,
            ``max_queue_size``, ``max_context``, ``voices_dir``, ``model_name``, ``api_key``).
    """
    options = ReplicaOptions(model=model, **replica_options)
    deployment_options: dict[str, Any] = {
        "ray_actor_options": ray_actor_options or {"num_cpus": 1},
        "max_ongoing_requests": max_ongoing_requests or 2 * options.max_batch_size,
    }
    if autoscaling_config is not None:
        deployment_options["autoscaling_config"] = {
            "target_ongoing_requests": options.max_batch_size,
            **autoscaling_config,
        }
    else:
        deployment_options["num_replicas"] = num_replicas
    deployment = serve.deployment(FishS2Replica, name="FishS2Replica", **deployment_options)
    return deployment.bind(options.model_dump())


def app(args: RayServeArgs) -> Application:
    """The builder ``serve run transformers_fish_s2.serving.ray:app model=... num_replicas=2`` calls; Ray
    validates the ``key=value`` strings into :class:`RayServeArgs` (so this module must not postpone its
    annotations: Ray reads this one at run time)."""
    resources = {"num_cpus": args.num_cpus, "num_gpus": args.num_gpus}
    autoscaling = None
    if args.max_replicas is not None:
        autoscaling = {"min_replicas": args.min_replicas or 1, "max_replicas": args.max_replicas}
    elif args.min_replicas is not None:
        raise ValueError("min_replicas autoscales the deployment: give max_replicas too")
    replica = args.model_dump(include=set(ReplicaOptions.model_fields) - {"model"})
    return build_app(
        args.model,
        num_replicas=args.num_replicas,
        ray_actor_options=resources,
        autoscaling_config=autoscaling,
        **replica,
    )
