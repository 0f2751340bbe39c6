"""Peak memory while scoring JSONL files of 20,000 and 200,000 rows with a tiny reward model, each run in its own
process (`rewardmill score`, JSONL, Parquet and CSV output). Streaming end to end means the two peaks are about equal.

    python benchmarks/bench_memory.py                # 20,000 and 200,000 rows
    python benchmarks/bench_memory.py --rows 2000,20000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def write_rows(path: Path, n: int) -> None:
    rng = random.Random(0)
    words = "the a what is why how paris capital answer python list code sure".split()
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(n):
            question = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
            answer = " ".join(rng.choice(words) for _ in range(rng.randint(3, 30)))
            handle.write(json.dumps({"id": i, "instruction": question, "response": answer}) + "\n")


def peak_rss_mib(command: list[str]) -> tuple[float, float]:
    """(peak resident memory in MiB, seconds) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed: {process.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="20000,200000")
    args = parser.parse_args()
    import toy_models

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = toy_models.build_decoder_rm("llama", folder / "model")
        results = []
        for n in (int(x) for x in args.rows.split(",")):
            source = folder / f"rows-{n}.jsonl"
            write_rows(source, n)
            for suffix in (".jsonl", ".parquet", ".csv"):
                command = [sys.executable, "-m", "rewardmill.cli", "score", str(source), "-m", str(model),
                           "-o", str(folder / f"out-{n}{suffix}"), "--threads", "1"]
                peak, seconds = peak_rss_mib(command)
                results.append((n, suffix, peak, seconds))
                print(f"  {n} rows -> {suffix}: peak {peak:.0f} MiB, {seconds:.0f} s", file=sys.stderr)
    print(f"Run {time.strftime('%Y-%m-%d %H:%M %Z')}; tiny Llama reward model (hidden 64, 2 layers), 1 thread.\n")
    print("| rows | output | peak RSS (MiB) | seconds | rows/s |\n|---:|---|---:|---:|---:|")
    for n, suffix, peak, seconds in results:
        print(f"| {n} | {suffix} | {peak:.0f} | {seconds:.0f} | {n / seconds:.0f} |")
    for suffix in (".jsonl", ".parquet", ".csv"):
        peaks = [p for _, s, p, _ in results if s == suffix]
        print(f"\n{suffix}: largest / smallest peak = {max(peaks) / min(peaks):.3f}", end="")
    print()


if __name__ == "__main__":
    main()
