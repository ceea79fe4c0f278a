"""Running the app under uvicorn, with a graceful drain on SIGTERM/SIGINT.

On the first signal uvicorn stops accepting connections and waits up to ``drain_seconds`` for in-flight
responses (streams included) to finish; ``/ready`` answers 503 meanwhile, so a load balancer stops sending
traffic. Then the app's lifespan shuts the engine down and uvicorn re-raises the signal, so the process ends
the way a process killed by that signal ends (status 143 after SIGTERM in a shell). A second SIGINT forces
the exit.
"""

from __future__ import annotations

from types import FrameType

import uvicorn
from fastapi import FastAPI


class _DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._app.state.draining = True
        super().handle_exit(sig, frame)


def run(app: FastAPI, *, host: str, port: int, drain_seconds: float, log_level: str = "info") -> None:
    """Serve ``app`` until a signal; blocks."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=max(1, round(drain_seconds)),
        access_log=log_level == "debug",
    )
    _DrainingServer(config, app).run()
