"""The Prometheus registry every service shares, and the helper that serves it over HTTP."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)


def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
    return Counter(name, doc, labels, registry=REGISTRY)


def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    return Gauge(name, doc, labels, registry=REGISTRY)


def histogram(
    name: str, doc: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] | None = None
) -> Histogram:
    if buckets is None:
        return Histogram(name, doc, labels, registry=REGISTRY)
    return Histogram(name, doc, labels, registry=REGISTRY, buckets=buckets)


def serve_metrics(port: int, addr: str = "127.0.0.1") -> int:
    """Expose /metrics; port 0 picks a free one. Returns the port actually bound."""
    server, _thread = start_http_server(port, addr=addr, registry=REGISTRY)
    return int(server.server_port)
