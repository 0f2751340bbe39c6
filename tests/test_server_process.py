"""A real `rewardmill serve` process: SIGTERM while busy drains and exits cleanly; a bounded loopback load test
(200 concurrent clients, 1-item requests, 20 s: no failed request, batches formed across requests; p50/p99
printed, not asserted); an overloaded server answers 503s that never reach the model's queue and never hang, and a
request larger than the whole queue gets a 413."""

import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs POSIX signals")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    def __init__(self, model_dir, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rewardmill.cli", "serve", "-m", str(model_dir), "--port", str(self.port),
             "--threads", "1", "--cpu-kernel", "torch", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(self.process.stdout.read())
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        output, _ = self.process.communicate(timeout=60)
        return output

    def metrics(self, prefix: str) -> dict[str, float]:
        values = {}
        for line in httpx.get(self.url + "/metrics", timeout=30).text.splitlines():
            if line.startswith(prefix):
                name, value = line.split()
                values[name] = float(value)
        return values

    def formed(self) -> tuple[float, float]:
        values = self.metrics("rewardmill_formed_batch_rows_")
        return values["rewardmill_formed_batch_rows_sum"], values["rewardmill_formed_batch_rows_count"]

    def inputs_received(self) -> float:
        """Inputs queued or already taken from the queue: every input of every request the server has read."""
        return self.formed()[0] + self.metrics("rewardmill_queue_depth")["rewardmill_queue_depth"]


def query(i: int, words: int = 12) -> str:
    return (f"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nquestion {i}<|eot_id|>"
            f"<|start_header_id|>assistant<|end_header_id|>\n\n{'answer ' * words}<|eot_id|>")


def test_sigterm_while_busy_finishes_the_requests_in_flight_then_exits(llama_dir):
    server = Served(llama_dir)
    body = {"query": [query(i, 150) for i in range(16)]}  # each request keeps the model busy for a while

    def ask(i):
        try:
            return httpx.post(server.url + "/get_reward", json=body, timeout=120).status_code
        except httpx.TransportError as error:  # sent after the listener closed: refused, never half answered
            return type(error).__name__

    with ThreadPoolExecutor(24) as pool:
        futures = [pool.submit(ask, i) for i in range(24)]
        # SIGTERM once the server has read every request (a request still unread when the listener closes is
        # refused, which is not what this test is about), while the model is still busy with them
        deadline = time.monotonic() + 60
        while server.inputs_received() < 24 * 16 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.formed()[0] < 24 * 16, "the model must still be busy when SIGTERM arrives"
        terminated = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        results = [f.result() for f in futures]
    output = server.stop()
    # uvicorn drains, runs the shutdown (the batcher finishes its queue), then ends by the signal it was sent
    assert server.process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output and "Finished server process" in output
    assert results.count(200) >= 1 and all(r == 200 or r == "ConnectError" for r in results), results
    assert time.monotonic() - terminated < 60


def test_load_200_concurrent_clients_for_20_seconds(llama_dir, capsys):
    server = Served(llama_dir)
    try:
        before = server.formed()
        latencies, failures = asyncio.run(_load(server.url, clients=200, seconds=20.0))
        rows, formed = (a - b for a, b in zip(server.formed(), before))
    finally:
        server.stop()
    p50, p99 = statistics.quantiles(latencies, n=100)[49], statistics.quantiles(latencies, n=100)[98]
    with capsys.disabled():
        print(f"\nload: {len(latencies)} requests from 200 clients in 20 s, {failures} failed, "
              f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, mean formed batch {rows / formed:.1f} inputs")
    assert failures == 0 and len(latencies) > 200
    assert rows / formed > 1


def test_an_overloaded_server_answers_503_fast_and_never_hangs(llama_dir, capsys):
    server = Served(llama_dir, "--max-queue", "8")
    try:
        statuses, seconds = asyncio.run(_burst(server.url, clients=200))
        answered = _answered_within(server.url, "/get_reward", 5.0)  # as the server measures it
        queued = server.formed()[0] + server.metrics("rewardmill_queue_depth")["rewardmill_queue_depth"]
        too_many = httpx.post(server.url + "/get_reward", json={"query": [query(0)] * 9}, timeout=10)
    finally:
        server.stop()
    refused = sorted(t for s, t in zip(statuses, seconds) if s == 503)
    assert refused and set(statuses) <= {200, 503}, set(statuses)
    with capsys.disabled():
        print(f"\noverload: {len(refused)} of {len(statuses)} refused; seen by the clients (same machine): 503 p50 "
              f"{statistics.median(refused) * 1000:.0f} ms, max {refused[-1] * 1000:.0f} ms")
    # the 503 is decided before tokenizing: no input of a refused request ever reached the model's queue
    assert queued == 4 * statuses.count(200), (queued, statuses.count(200))
    # and it never waits for the model; how long 200 connections take on a small shared machine is only bounded
    # (a latency claim belongs in benchmarks, not in a unit test)
    assert answered >= len(refused) and refused[-1] < 10.0
    assert too_many.status_code == 413 and "--max-queue" in too_many.json()["error"]["message"]


def _answered_within(url: str, route: str, seconds: float) -> float:
    """How many requests to `route` the server answered within `seconds` (its latency histogram in /metrics)."""
    wanted = f'rewardmill_request_seconds_bucket{{le="{seconds}",route="{route}"}}'
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(wanted):
            return float(line.split()[-1])
    raise AssertionError(f"{wanted} not in /metrics")


async def _load(url: str, clients: int, seconds: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    failures = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        stop = time.monotonic() + seconds

        async def one_client(c: int):
            nonlocal failures
            i = 0
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    response = await client.post("/get_reward", json={"query": [query(c * 1000 + i, 4 + i % 9)]})
                    ok = response.status_code == 200 and len(response.json()["rewards"]) == 1
                except httpx.HTTPError:
                    ok = False
                failures += not ok
                latencies.append(time.perf_counter() - started)
                i += 1

        await asyncio.gather(*(one_client(c) for c in range(clients)))
    return latencies, failures


async def _burst(url: str, clients: int) -> tuple[list[int], list[float]]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        async def one(i: int):
            started = time.perf_counter()
            response = await client.post("/get_reward", json={"query": [query(i, 200)] * 4})
            return response.status_code, time.perf_counter() - started

        results = await asyncio.gather(*(one(i) for i in range(clients)))
    return [s for s, _ in results], [t for _, t in results]
