"""Ray Data scale-out on this 2-core machine (`ray.init(num_cpus=2)`, the toy model, 2 actors): the same rows and
scores as a single-process run, every row exactly once after an actor dies mid-run, and after a driver killed
mid-run is resumed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from rewardmill import RowOptions, score_file  # noqa: E402  # noqa: E402
from rewardmill.reward_models.options import CpuOptions  # noqa: E402
from rewardmill.reward_models.spec import ModelSpec  # noqa: E402
from rewardmill.runs.ray import RayOptions, parts_folder, score_with_ray  # noqa: E402

pytestmark = pytest.mark.slow


def rows(n: int = 240) -> list[dict]:
    out = []
    for i in range(n):
        if i % 3 == 0:
            row = {"conversation": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a" * (i % 9 + 1)}]}
        else:
            row = {"instruction": f"question {i}", "response": "b " * (i % 11 + 1)}
        if i % 17 == 4:
            row = {"instruction": f"no response {i}"}
        out.append(row)
    return out


class KillsItsActorOnce:
    """Builds the toy model's scorer; the first batch that finds the marker file deletes it and kills the actor."""

    def __init__(self, args: ModelSpec, marker: str):
        self.args, self.marker = args, marker

    def __call__(self):
        scorer = self.args.scorer()
        marker, real = self.marker, scorer.score_items

        def score_items(items, on_progress=None):
            if os.path.exists(marker):
                os.unlink(marker)
                os._exit(1)  # the actor process dies mid-task
            return real(items, on_progress)

        scorer.score_items = score_items
        return scorer


@pytest.fixture(scope="module")
def local_ray():
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def job(tmp_path, llama_dir):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    args = ModelSpec(str(llama_dir), cpu=CpuOptions(kernel="torch", threads=1))
    single = tmp_path / "single.jsonl"
    score_file(source, single, args.scorer(), RowOptions())
    return source, args, [json.loads(line) for line in single.read_text().splitlines()]


def same_rows(path: Path, want: list[dict]) -> None:
    got = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g["error"] == w["error"]
        assert (g["score"] is None) == (w["score"] is None)
        if w["score"] is not None:
            assert abs(g["score"] - w["score"]) <= 1e-4
        assert g.get("instruction") == w.get("instruction") and g.get("conversation") == w.get("conversation")


def test_ray_output_equals_the_single_process_output(local_ray, job, tmp_path):
    source, args, want = job
    out = tmp_path / "ray.jsonl"
    summary = score_with_ray(source, out, args.scorer, RowOptions(), RayOptions(actors=2, batch_rows=32))
    assert summary.rows == 240 and summary.parts >= 8
    same_rows(out, want)
    assert any(w["error"] for w in want)  # per-row errors numbered by input position, as in one process


def test_an_actor_killed_mid_run_still_gives_every_row_exactly_once(local_ray, job, tmp_path):
    source, args, want = job
    marker = tmp_path / "kill-an-actor"
    marker.write_text("")
    out = tmp_path / "ray.jsonl"
    score_with_ray(source, out, KillsItsActorOnce(args, str(marker)), RowOptions(), RayOptions(actors=2, batch_rows=32))
    assert not marker.exists()  # an actor did die
    same_rows(out, want)


def test_a_driver_killed_mid_run_resumes_without_duplicates_or_gaps(job, tmp_path, llama_dir):
    source, _, want = job
    out = tmp_path / "ray.jsonl"
    command = [sys.executable, "-m", "rewardmill.cli", "score", str(source), "-m", str(llama_dir), "-o", str(out),
               "--ray", "--actors", "2", "--batch-rows", "16", "--threads", "1", "--cpu-kernel", "torch"]
    env = {**os.environ, "RAY_num_cpus": "2", "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    folder = parts_folder(out)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None and len(list(folder.glob("part-*.parquet"))) < 3:
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
    driver.wait()
    done = len(list(folder.glob("part-*.parquet")))
    assert 0 < done and not out.exists()
    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "already in the parts" in resumed.stderr
    same_rows(out, want)


def test_ray_reads_the_score_where_the_models_own_forward_reads(local_ray, tmp_path):
    """pad == EOS: every Ray actor reads where transformers' forward reads on one unpadded row (issue 27)."""
    import torch
    import toy_models
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    directory = toy_models.build_pad_is_eos_rm("llama", tmp_path / "pad-eos", seed=5)
    tok = AutoTokenizer.from_pretrained(directory)
    reference = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    convs = [r["conversation"] for r in rows(90) if "conversation" in r]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"conversation": c}) + "\n" for c in convs))
    with torch.no_grad():
        want = [reference(torch.tensor([tok.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"]]))
                .logits[0, 0].item() for c in convs]
    out = tmp_path / "ray.jsonl"
    args = ModelSpec(str(directory), cpu=CpuOptions(kernel="torch", threads=1))
    score_with_ray(source, out, args.scorer, RowOptions(), RayOptions(actors=2, batch_rows=8))
    got = [json.loads(line)["score"] for line in out.read_text().splitlines()]
    assert max(abs(a - b) for a, b in zip(got, want)) <= 1e-4 and len(got) == len(want)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_a_column_whose_type_changes_is_kept_whole_on_ray(local_ray, tmp_path, fmt):
    """Issue 28, point 1, on the Ray path: a pass-through column of mixed types (within a part and across parts,
    an integer beyond 64 bits) fails no part and no merge; the output equals the single-process one."""
    values = [7, "seven", None, [1, "x"], {"k": 2}, 2**70, 1.5, True]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"instruction": f"q{i}", "response": "a" * (i % 5), "meta": values[i % 8]})
                              + "\n" for i in range(64)))
    single, out = tmp_path / f"single.{fmt}", tmp_path / f"ray.{fmt}"
    from rewardmill.reward_models.baselines import LengthScorer

    score_file(source, single, LengthScorer(), RowOptions())
    score_with_ray(source, out, LengthScorer, RowOptions(), RayOptions(actors=2, batch_rows=8))
    assert out.read_bytes() == single.read_bytes()


def test_judge_on_ray_equals_the_single_process_judge(local_ray, tmp_path):
    from fake_judge_server import FakeJudgeServer

    from rewardmill.judges.spec import JudgeSpec

    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"instruction": f"Say {i}.", "response": "word " * (i % 7 + 1)}) + "\n"
                              for i in range(40)))
    with FakeJudgeServer() as server:
        spec = JudgeSpec("rating", "toy", base_url=server.url, concurrency=4)
        single = tmp_path / "single.jsonl"
        score_file(source, single, spec.scorer(), RowOptions())
        out = tmp_path / "ray.jsonl"
        score_with_ray(source, out, spec.scorer, RowOptions(), RayOptions(actors=2, batch_rows=8))
    got = [json.loads(line) for line in out.read_text().splitlines()]
    want = [json.loads(line) for line in single.read_text().splitlines()]
    assert [(g["rating"], g["error"], g["raw_output"]) for g in got] == [(w["rating"], w["error"], w["raw_output"])
                                                                          for w in want]


def test_without_ray_installed_the_flag_says_how_to_install_it(monkeypatch, tmp_path):
    import builtins

    from rewardmill.errors import OptionsError
    from rewardmill.runs.ray import score_with_ray as run

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(OptionsError, match=r"pip install 'rewardmill\[ray\]'"):
        run(tmp_path / "in.jsonl", tmp_path / "out.jsonl", lambda: None)


def test_ray_leaves_the_global_data_context_as_it_was_and_reports_the_single_process_summary(local_ray, tmp_path):
    """A library user's Ray Data settings are theirs: the run keeps input order on its own datasets. Its summary
    is the single-process `Summary`: rows with errors grouped by reason, in input order."""
    from ray.data import DataContext

    from rewardmill.reward_models.baselines import LengthScorer

    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows(60)))
    single = score_file(source, tmp_path / "single.jsonl", LengthScorer(), RowOptions())
    context = DataContext.get_current()
    order_before = context.execution_options.preserve_order
    summary = score_with_ray(source, tmp_path / "ray.jsonl", LengthScorer, RowOptions(),
                             RayOptions(actors=2, batch_rows=8))
    assert DataContext.get_current() is context and context.execution_options.preserve_order == order_before
    same_rows(tmp_path / "ray.jsonl", [json.loads(line) for line in (tmp_path / "single.jsonl").open()])
    assert (summary.rows, summary.rows_with_errors, summary.errors, summary.error_groups, summary.failures) == \
        (single.rows, single.rows_with_errors, single.errors, single.error_groups, single.failures)
    assert summary.rows_with_errors == 4 and summary.parts >= 1 and summary.seconds > 0


def test_ray_makes_the_checks_before_work_of_every_command(tmp_path):
    """As `open_job` does for score and judge: the output is not the input, its folder takes files, and a partial
    single-process run of it is not silently overwritten; all before Ray starts."""
    from rewardmill.errors import InputError
    from rewardmill.reward_models.baselines import LengthScorer
    from rewardmill.runs.checkpoint import CommittedOutput

    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows(10)))
    with pytest.raises(InputError, match="is the input file"):
        score_with_ray(source, source, LengthScorer)
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is a file, not a folder"):
        score_with_ray(source, tmp_path / "file" / "out.jsonl", LengthScorer)
    with pytest.raises(InputError, match="unknown"):
        score_with_ray(source, tmp_path / "out.txt", LengthScorer)
    with pytest.raises(InputError, match="choose one"):
        score_with_ray(source, tmp_path / "out.jsonl", LengthScorer, resume=True, overwrite=True)
    with CommittedOutput(tmp_path / "out.jsonl", {"run": 1}) as out:
        out.commit([{"a": 1}], 1)
    with pytest.raises(InputError, match="an interrupted run left 1 input rows done"):
        score_with_ray(source, tmp_path / "out.jsonl", LengthScorer)
    assert not parts_folder(tmp_path / "out.jsonl").exists()


def test_the_parts_folder_reads_as_one_parquet_dataset_beside_the_tallies(local_ray, tmp_path):
    """--no-merge: the parts are the output, and their tallies do not get in the way of reading them; a resumed
    run's summary counts the parts an earlier run committed."""
    import pyarrow.parquet as pq

    from rewardmill.reward_models.baselines import LengthScorer

    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows(24)))
    summary = score_with_ray(source, tmp_path / "out.jsonl", LengthScorer, RowOptions(),
                             RayOptions(actors=1, batch_rows=8, merge=False))
    folder = parts_folder(tmp_path / "out.jsonl")
    parts = sorted(folder.glob("part-*.parquet"))
    assert summary.output == str(folder) and len(list(folder.glob("_tally-*.json"))) == len(parts) == summary.parts
    assert sorted(pq.read_table(folder).column("row_id").to_pylist()) == list(range(24))
    # a resumed run counts the tallies of the parts it finds, and scores only the rest
    first, last = (int(n) for n in parts[1].stem.split("-")[1:])
    parts[1].unlink()
    single = score_file(source, tmp_path / "single.jsonl", LengthScorer(), RowOptions())
    resumed = score_with_ray(source, tmp_path / "out.jsonl", LengthScorer, RowOptions(),
                             RayOptions(actors=1, batch_rows=8), resume=True)
    assert (resumed.resumed_rows, resumed.rows) == (24 - (last - first + 1), 24) and resumed.parts >= 1
    assert (resumed.rows_with_errors, resumed.errors, resumed.error_groups) == \
        (single.rows_with_errors, single.errors, single.error_groups)


def test_score_ray_on_the_command_line_reports_errors_as_one_process_does(local_ray, tmp_path):
    """`score --ray` prints the rows with errors grouped by reason, as a run in one process prints them."""
    from typer.testing import CliRunner

    from rewardmill.cli import app

    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows(30)))
    runner = CliRunner()
    single = runner.invoke(app, ["score", str(source), "-m", "length", "-o", str(tmp_path / "one.jsonl")])
    on_ray = runner.invoke(app, ["score", str(source), "-m", "length", "-o", str(tmp_path / "ray.jsonl"), "--ray",
                                 "--batch-rows", "8"])
    assert single.exit_code == on_ray.exit_code == 0, on_ray.output
    report = single.output[single.output.index("2 rows have errors"):]
    assert "(rows 4, 21)" in report and report in on_ray.output
