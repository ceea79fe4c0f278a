"""``GET /metrics``: the server's counters and the engine's load in Prometheus' text format.

Written by hand (a dozen lines of text) rather than with ``prometheus_client``, which would be one more
dependency of ``[serve]`` for four metrics.
"""

from __future__ import annotations

import threading
from collections import Counter

from .engine import EngineMetrics

TTFA_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of the time-to-first-audio histogram."""


class ServerMetrics:
    """Requests by route and status, and time to first audio as the client sees it (request received → the
    first audio bytes handed to the connection; for a complete file, the file)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str, int]] = Counter()
        self._ttfa_counts = [0] * (len(TTFA_BUCKETS) + 1)
        self._ttfa_sum = 0.0

    def count_request(self, method: str, route: str, status: int) -> None:
        with self._lock:
            self._requests[(method, route, status)] += 1

    def observe_first_audio(self, seconds: float) -> None:
        with self._lock:
            index = next((i for i, bound in enumerate(TTFA_BUCKETS) if seconds <= bound), len(TTFA_BUCKETS))
            self._ttfa_counts[index] += 1
            self._ttfa_sum += seconds

    def render(self, engine: EngineMetrics) -> str:
        with self._lock:
            requests = sorted(self._requests.items())
            counts, total = list(self._ttfa_counts), self._ttfa_sum
        lines = [
            "# HELP fish_s2_http_requests_total HTTP requests answered, by method, route and status.",
            "# TYPE fish_s2_http_requests_total counter",
            *(
                f'fish_s2_http_requests_total{{method="{method}",route="{route}",status="{status}"}} {count}'
                for (method, route, status), count in requests
            ),
            "# HELP fish_s2_queue_depth Requests waiting for a slot.",
            "# TYPE fish_s2_queue_depth gauge",
            f"fish_s2_queue_depth {engine.queue_depth}",
            "# HELP fish_s2_active_rows Slots generating now.",
            "# TYPE fish_s2_active_rows gauge",
            f"fish_s2_active_rows {engine.active_rows}",
            "# HELP fish_s2_max_batch_size Slots in all.",
            "# TYPE fish_s2_max_batch_size gauge",
            f"fish_s2_max_batch_size {engine.max_batch_size}",
            "# HELP fish_s2_frames_per_second Frames generated per second over the last 10 seconds.",
            "# TYPE fish_s2_frames_per_second gauge",
            f"fish_s2_frames_per_second {engine.frames_per_second:.3f}",
            "# HELP fish_s2_frames_total Frames generated since start.",
            "# TYPE fish_s2_frames_total counter",
            f"fish_s2_frames_total {engine.frames_total}",
            "# HELP fish_s2_engine_requests_total Engine requests by outcome.",
            "# TYPE fish_s2_engine_requests_total counter",
            *(
                f'fish_s2_engine_requests_total{{outcome="{k}"}} {v}'
                for k, v in sorted(engine.requests.items())
            ),
            "# HELP fish_s2_time_to_first_audio_seconds Request received to first audio bytes sent.",
            "# TYPE fish_s2_time_to_first_audio_seconds histogram",
        ]
        cumulative = 0
        for bound, count in zip((*TTFA_BUCKETS, "+Inf"), counts):
            cumulative += count
            lines.append(f'fish_s2_time_to_first_audio_seconds_bucket{{le="{bound}"}} {cumulative}')
        lines += [
            f"fish_s2_time_to_first_audio_seconds_sum {total:.6f}",
            f"fish_s2_time_to_first_audio_seconds_count {cumulative}",
        ]
        return "\n".join(lines) + "\n"
