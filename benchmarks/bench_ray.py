"""Single process against Ray Data with 1 and 2 actors, on the same rows, in one run: rows/s and Ray's overhead
per row (its wall time minus the single process's, divided by the rows). A tiny Llama reward model keeps the model
cheap, so the overhead shows; with a real model on GPUs the model's time dominates.

    python benchmarks/bench_ray.py              # 4,000 rows, 1 thread per scorer
    python benchmarks/bench_ray.py --rows 20000
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--batch-rows", type=int, default=256)
    args = parser.parse_args()

    import ray
    import toy_models

    from rewardmill import RowOptions, score_file
    from rewardmill.reward_models.options import CpuOptions
    from rewardmill.reward_models.spec import ModelSpec
    from rewardmill.runs.ray import RayOptions, score_with_ray

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = toy_models.build_decoder_rm("llama", folder / "model")
        source = folder / "rows.jsonl"
        source.write_text("".join(json.dumps({"instruction": f"question {i} " + "word " * (i % 23),
                                              "response": "answer " * (i % 37 + 1)}) + "\n" for i in range(args.rows)))
        make = ModelSpec(str(model), cpu=CpuOptions(kernel="torch", threads=1))
        started = time.perf_counter()
        score_file(source, folder / "single.jsonl", make.scorer(), RowOptions())
        results = {"single process (1 thread)": time.perf_counter() - started}
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        for actors in (1, 2):
            started = time.perf_counter()
            score_with_ray(source, folder / f"ray{actors}.jsonl", make.scorer, RowOptions(),
                           RayOptions(actors=actors, batch_rows=args.batch_rows), overwrite=True)
            results[f"Ray Data, {actors} actor{'s' if actors > 1 else ''} (1 thread each)"] = time.perf_counter() - started
        ray.shutdown()
    base = results["single process (1 thread)"]
    print(f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {args.rows} rows, tiny Llama "
          f"reward model, Ray batches of {args.batch_rows} rows, ray.init(num_cpus=2); times include Ray's start-up "
          "of actors, reading, writing parts and the merge.\n")
    print("| run | seconds | rows/s | vs single process | overhead per row (ms) |\n|---|---:|---:|---:|---:|")
    for name, seconds in results.items():
        overhead = (seconds - base) / args.rows * 1000
        print(f"| {name} | {seconds:.1f} | {args.rows / seconds:.0f} | {base / seconds:.2f}x | "
              f"{'' if seconds is base else f'{overhead:.2f}'} |")


if __name__ == "__main__":
    main()
