"""Prometheus metrics of the server (prometheus_client, one registry per app): requests by route and status,
latency by route, queue depth, formed batch sizes, rejected (503) requests, truncated and dropped inputs."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("rewardmill_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("rewardmill_request_seconds", "Time to answer a request, by route", ["route"],
                                 registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.queue_depth = Gauge("rewardmill_queue_depth", "Inputs waiting for the model", registry=self.registry)
        sizes = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
        self.formed_rows = Histogram("rewardmill_formed_batch_rows", "Inputs taken from the queue at once (from any "
                                     "number of requests), then length-sorted into forward passes",
                                     registry=self.registry, buckets=sizes)
        self.batch_rows = Histogram("rewardmill_batch_rows", "Rows per forward pass", registry=self.registry,
                                    buckets=sizes)
        self.rejected = Counter("rewardmill_rejected", "Requests refused with 503 (queue full)", registry=self.registry)
        self.truncated = Counter("rewardmill_truncated_inputs", "Inputs over the maximum length that were truncated "
                                 "(--over-long truncate)", registry=self.registry)
        self.dropped = Counter("rewardmill_dropped_inputs", "Queued inputs dropped because their client went away",
                               registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
