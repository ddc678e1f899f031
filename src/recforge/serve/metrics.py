"""Prometheus text exposition (format 0.0.4) for request counts, latency histograms and the served model."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

#: latency histogram upper bounds in seconds
BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Thread-safe counters and histograms owned by one app instance (no global registry)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[str, list[float]] = {}  # route -> bucket counts (len(BUCKETS)+1, last = +Inf) + [sum]
        self.counters: dict[tuple[str, str], int] = defaultdict(int)  # (name, label value) -> count
        self.model: dict[str, str] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, method, status)] += 1
            hist = self.latency.setdefault(route, [0.0] * (len(BUCKETS) + 2))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    hist[i] += 1
                    break
            else:
                hist[len(BUCKETS)] += 1
            hist[-1] += seconds

    def inc(self, name: str, label: str = "", n: int = 1) -> None:
        with self._lock:
            self.counters[(name, label)] += n

    def render(self, llm: dict[str, float] | None = None) -> str:
        """The Prometheus text format; ``llm``: the served language model's cumulative counters
        (:meth:`recforge.serve.engine.ModelHandle.llm_counts`), rendered as ``recforge_llm_*``."""
        out = [
            "# HELP recforge_requests_total HTTP requests by route, method and status.",
            "# TYPE recforge_requests_total counter",
        ]
        with self._lock:
            for (route, method, status), n in sorted(self.requests.items()):
                out.append(f'recforge_requests_total{{route="{route}",method="{method}",status="{status}"}} {n}')
            out += [
                "# HELP recforge_request_duration_seconds Request latency by route.",
                "# TYPE recforge_request_duration_seconds histogram",
            ]
            for route, hist in sorted(self.latency.items()):
                cum = 0.0
                for bound, n in zip((*BUCKETS, "+Inf"), hist[:-1]):
                    cum += n
                    out.append(f'recforge_request_duration_seconds_bucket{{route="{route}",le="{bound}"}} {int(cum)}')
                out.append(f'recforge_request_duration_seconds_sum{{route="{route}"}} {hist[-1]:.6f}')
                out.append(f'recforge_request_duration_seconds_count{{route="{route}"}} {int(cum)}')
            for name in sorted({n for n, _ in self.counters}):
                out += [f"# TYPE recforge_{name}_total counter"]
                for (n, label), v in sorted(self.counters.items()):
                    if n == name:
                        lab = f'{{result="{label}"}}' if label else ""
                        out.append(f"recforge_{name}_total{lab} {v}")
            model = dict(self.model)
        if llm:
            for name in ("requests", "errors", "retries", "latency_seconds"):
                out += [f"# TYPE recforge_llm_{name}_total counter", f"recforge_llm_{name}_total {llm[name]:g}"]
            out += ["# HELP recforge_llm_fallbacks_total Rankings answered without the language model (base order).",
                    "# TYPE recforge_llm_fallbacks_total counter",
                    f'recforge_llm_fallbacks_total{{reason="backend"}} {llm["fallback_backend"]:g}',
                    f'recforge_llm_fallbacks_total{{reason="exception"}} {llm["fallback_exception"]:g}']
        out += [
            "# HELP recforge_model_info The model being served (value is always 1).",
            "# TYPE recforge_model_info gauge",
            "recforge_model_info{" + ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(model.items())) + "} 1",
            "# TYPE recforge_uptime_seconds gauge",
            f"recforge_uptime_seconds {time.time() - self.started:.3f}",
        ]
        return "\n".join(out) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
