"""Checkpoint and resume: committed chunks, an output byte-identical to an uninterrupted run's in every format,
and refusals that say what changed. The SIGKILL tests of real processes are in test_kill_resume.py."""

import json

import pytest
from typer.testing import CliRunner

from rewardmill import LengthScorer, RowOptions, score_file
from rewardmill.cli import app
from rewardmill.errors import InputError
from rewardmill.preferences.formatting import DPOOptions
from rewardmill.preferences.pipeline import open_dpo_job, run_dpo
from rewardmill.runs.checkpoint import CommittedOutput, committed_rows, describe_changes, partial_folder

runner = CliRunner()
FORMATS = ("jsonl", "json", "parquet", "csv")


class Interrupted(BaseException):
    """Stands in for a crash or Ctrl-C in the middle of a run."""


class StopsAt(LengthScorer):
    """The length baseline, interrupted on its `calls`-th scoring call."""

    def __init__(self, calls: int):
        self.left = calls

    def score_items(self, items, on_progress=None):
        self.left -= 1
        if self.left == 0:
            raise Interrupted()
        return super().score_items(items, on_progress)


def mixed_rows(n: int = 60) -> list[dict]:
    """Rows of both single-response shapes, some bad (an error column value), and a column that first appears
    late and first holds a value later still (so CSV headers and Parquet schemas must be unified)."""
    rows = []
    for i in range(n):
        if i % 4 == 0:
            row = {"conversation": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a" * i}]}
        else:
            row = {"instruction": f"q{i}", "response": "b" * (i % 7 + 1)}
        if i % 11 == 5:
            row.pop("response", None)
            row.pop("conversation", None)
            row["instruction"] = f"q{i}"
        if i >= 30:
            row["meta"] = None if i < 40 else {"i": i}
        rows.append(row)
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


OPTIONS = RowOptions(chunk_rows=7)


@pytest.mark.parametrize("fmt", FORMATS)
def test_interrupted_runs_resume_to_the_same_bytes(tmp_path, fmt):
    source = write_jsonl(tmp_path / "in.jsonl", mixed_rows())
    reference = tmp_path / f"reference.{fmt}"
    whole = score_file(source, reference, LengthScorer(), OPTIONS)
    out = tmp_path / f"out.{fmt}"
    stops = [2, 3, 4]  # interrupted three times, each resumed run going further
    done = 0
    for stop in stops:
        with pytest.raises(Interrupted):
            score_file(source, out, StopsAt(stop), OPTIONS, resume=True)
        assert not out.exists()
        assert committed_rows(out) == done + (stop - 1) * 7
        done = committed_rows(out)
    summary = score_file(source, out, LengthScorer(), OPTIONS, resume=True)
    assert out.read_bytes() == reference.read_bytes()
    assert not partial_folder(out).exists()
    assert summary.resumed_rows == done and summary.rows == whole.rows == 60
    assert summary.rows_with_errors == whole.rows_with_errors > 0 and summary.errors == whole.errors


def test_what_a_kill_leaves_between_the_steps_of_a_commit_is_cleaned_up(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", mixed_rows())
    reference = tmp_path / "reference.jsonl"
    score_file(source, reference, LengthScorer(), OPTIONS)
    out = tmp_path / "out.jsonl"
    with pytest.raises(Interrupted):
        score_file(source, out, StopsAt(4), OPTIONS)
    folder = partial_folder(out)
    # killed after a part was renamed into place but before its record; and during temporary writes
    (folder / "chunk-000003.jsonl").write_text('{"instruction": "never committed"}\n')
    (folder / "chunk-000004.jsonl.tmp").write_text("half a li")
    (folder / "manifest.json.tmp").write_text("{")
    (folder / "assembled.jsonl.tmp").write_text("")
    (folder / "chunk-000009.jsonl").write_text('{"instruction": "a part from a run that was overwritten"}\n')
    with pytest.raises(Interrupted):
        score_file(source, out, StopsAt(2), OPTIONS, resume=True)
    assert sorted(p.name for p in folder.iterdir()) == sorted(["lock", "manifest.json"] + [
        f"chunk-{n:06d}.{suffix}" for n in range(4) for suffix in ("json", "jsonl")])
    score_file(source, out, LengthScorer(), OPTIONS, resume=True)
    assert out.read_bytes() == reference.read_bytes()


def test_killed_after_the_output_was_moved_into_place(tmp_path, monkeypatch):
    source = write_jsonl(tmp_path / "in.jsonl", mixed_rows())
    reference = tmp_path / "reference.parquet"
    score_file(source, reference, LengthScorer(), OPTIONS)
    out = tmp_path / "out.parquet"

    def killed(self):
        raise Interrupted()

    with monkeypatch.context() as patch:
        patch.setattr(CommittedOutput, "discard", killed)
        with pytest.raises(Interrupted):
            score_file(source, out, LengthScorer(), OPTIONS)
    assert out.read_bytes() == reference.read_bytes() and committed_rows(out) == 60
    summary = score_file(source, out, LengthScorer(), OPTIONS, resume=True)
    assert out.read_bytes() == reference.read_bytes() and summary.resumed_rows == 60
    assert not partial_folder(out).exists()


def test_nothing_committed_leaves_nothing_behind_and_resume_without_a_partial_run_starts_over(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", mixed_rows(10))
    out = tmp_path / "out.jsonl"
    with pytest.raises(Interrupted):
        score_file(source, out, StopsAt(1), OPTIONS)
    assert not partial_folder(out).exists() and not out.exists()
    summary = score_file(source, out, LengthScorer(), OPTIONS, resume=True)
    assert summary.resumed_rows == 0 and summary.rows == 10


def test_a_file_where_the_partial_folder_goes_is_named(tmp_path):
    (tmp_path / "out.jsonl.partial").write_text("mine")
    with pytest.raises(InputError, match="is a file"):
        CommittedOutput(tmp_path / "out.jsonl", {})
    assert (tmp_path / "out.jsonl.partial").read_text() == "mine"


def test_a_second_run_on_the_same_output_is_refused_while_the_first_writes(tmp_path):
    out = tmp_path / "out.jsonl"
    with CommittedOutput(out, {"run": 1}) as first:
        first.commit([{"a": 1}], 1)
        with pytest.raises(InputError, match="another run is writing"):
            CommittedOutput(out, {"run": 1}, resume=True)
        first.finish()
    assert out.read_text() == '{"a": 1}\n'


def test_resume_refuses_other_settings_model_or_input_and_says_what_changed(tmp_path, llama_dir):
    source = write_jsonl(tmp_path / "in.jsonl", mixed_rows())
    out = tmp_path / "out.jsonl"
    with pytest.raises(Interrupted):
        score_file(source, out, StopsAt(3), OPTIONS)

    def message(*args, **kwargs):
        with pytest.raises(InputError) as error:
            score_file(*args, **kwargs)
        return str(error.value)

    assert "settings.chunk_rows: 7 -> 8" in message(source, out, LengthScorer(), RowOptions(chunk_rows=8), resume=True)
    assert "settings.strict: false -> true" in message(source, out, LengthScorer(), RowOptions(chunk_rows=7, strict=True),
                                                      resume=True)
    from rewardmill import RewardModel

    changed = message(source, out, RewardModel.from_pretrained(str(llama_dir), threads=1), OPTIONS, resume=True)
    assert "scorer.model: (none) -> " in changed and "scorer.baseline: \"length\" -> (none)" in changed
    write_jsonl(source, mixed_rows() + [{"instruction": "one more", "response": "row"}])
    assert "input.sha256" in message(source, out, LengthScorer(), OPTIONS, resume=True)
    assert "input.bytes" in message(source, out, LengthScorer(), OPTIONS, resume=True)
    moved = tmp_path / "moved.jsonl"
    write_jsonl(moved, mixed_rows())  # the same content under another name resumes
    assert score_file(moved, out, LengthScorer(), OPTIONS, resume=True).resumed_rows == 14


def test_the_cli_refuses_a_partial_output_without_resume_or_overwrite(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", mixed_rows())
    reference = tmp_path / "reference.csv"
    assert runner.invoke(app, ["score", str(source), "-m", "length", "-o", str(reference), "--chunk-rows", "7"]).exit_code == 0
    out = tmp_path / "out.csv"
    with pytest.raises(Interrupted):
        score_file(source, out, StopsAt(3), OPTIONS)
    result = runner.invoke(app, ["score", str(source), "-m", "length", "-o", str(out), "--chunk-rows", "7"])
    assert result.exit_code == 2 and "14 input rows done" in result.output and "--resume" in result.output
    assert "--overwrite" in result.output and not out.exists()
    result = runner.invoke(app, ["score", str(source), "-m", "length", "-o", str(out), "--resume", "--overwrite"])
    assert result.exit_code == 2 and "choose one" in result.output
    result = runner.invoke(app, ["score", str(source), "-m", "length", "-o", str(out), "--chunk-rows", "9", "--resume"])
    assert result.exit_code == 2 and "settings.chunk_rows: 7 -> 9" in result.output and "--overwrite" in result.output
    result = runner.invoke(app, ["score", str(source), "-m", "length", "-o", str(out), "--chunk-rows", "7", "--resume"])
    assert result.exit_code == 0 and "14 of them committed by the interrupted run" in result.output
    assert out.read_bytes() == reference.read_bytes()
    with pytest.raises(Interrupted):
        score_file(source, out, StopsAt(3), OPTIONS)
    result = runner.invoke(app, ["score", str(source), "-m", "length", "-o", str(out), "--chunk-rows", "5", "--overwrite"])
    assert result.exit_code == 0 and not partial_folder(out).exists()
    assert len(out.read_text().splitlines()) == 61  # header + every row, chunked anew


def test_ctrl_c_says_how_to_resume(tmp_path, monkeypatch):
    import rewardmill.runs.job

    source = write_jsonl(tmp_path / "in.jsonl", mixed_rows())
    out = tmp_path / "out.jsonl"
    real = rewardmill.runs.job.score_row_chunks

    def interrupted_after_two_chunks(*args, **kwargs):
        for number, chunk in enumerate(real(*args, **kwargs)):
            if number == 2:
                raise KeyboardInterrupt
            yield chunk

    monkeypatch.setattr(rewardmill.runs.job, "score_row_chunks", interrupted_after_two_chunks)
    result = runner.invoke(app, ["score", str(source), "-m", "length", "-o", str(out), "--chunk-rows", "7"])
    assert result.exit_code == 130 and "14 input rows are committed" in result.output and "--resume" in result.output


DPO_ROWS = [{"instruction": f"q{i}", "generations": ["x" * (i % 5 + 1), "y" * (i % 3 + 1), "z" * (i % 4 + 1)],
             **({"system_prompt": "Be brief."} if i % 6 == 0 else {})} for i in range(40)]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "dataset"])
def test_dpo_resumes_to_the_same_pairs_and_summary(tmp_path, fmt):
    source = write_jsonl(tmp_path / "in.jsonl", DPO_ROWS + [{"instruction": "broken", "generations": "not a list"}])
    name = "pairs" if fmt == "dataset" else f"pairs.{fmt}"
    options = DPOOptions(strategy="best-random", seed=3)
    reference = tmp_path / "reference" / name
    whole = run_dpo(open_dpo_job(source, reference), options, LengthScorer(), chunk_rows=6)
    out = tmp_path / "out" / name
    with pytest.raises(Interrupted):
        run_dpo(open_dpo_job(source, out), options, StopsAt(4), chunk_rows=6)
    assert committed_rows(out) == 18
    with pytest.raises(InputError, match="--resume"):
        open_dpo_job(source, out)
    with pytest.raises(InputError, match="dpo.seed: 3 -> 4"):
        run_dpo(open_dpo_job(source, out, resume=True), DPOOptions(strategy="best-random", seed=4), LengthScorer(),
                chunk_rows=6)
    resumed = run_dpo(open_dpo_job(source, out, resume=True), options, LengthScorer(), chunk_rows=6)
    assert (resumed.rows, resumed.pairs, resumed.skipped, resumed.errors, resumed.margins) == \
        (whole.rows, whole.pairs, whole.skipped, whole.errors, whole.margins)
    assert whole.rows == 41 and whole.skipped["error"] == 1
    if fmt == "dataset":
        import datasets

        assert datasets.load_from_disk(str(out)).to_list() == datasets.load_from_disk(str(reference)).to_list()
    else:
        assert out.read_bytes() == reference.read_bytes()
    assert not partial_folder(out).exists()


def test_describe_changes_names_each_leaf():
    before = {"scorer": {"model": "a", "options": {"alpha": 1}}, "settings": [1, 2]}
    now = {"scorer": {"model": "b", "options": {"alpha": 1}, "new": True}, "settings": (1, 2)}
    assert describe_changes(before, now) == ['scorer.model: "a" -> "b"', "scorer.new: (none) -> true"]


class Spec:
    def __init__(self, **fields):
        self.fields = fields

    def to_dict(self) -> dict:
        return dict(self.fields)


class SpecifiedLength(StopsAt):
    """The interruptible length baseline with a model specification, as `RewardModel.spec` gives one."""

    def __init__(self, calls: int, spec: Spec):
        super().__init__(calls)
        self.spec = spec


def test_the_manifest_records_the_scorers_spec_as_information_not_compared_on_resume(tmp_path):
    from rewardmill.runs.checkpoint import read_manifest

    source, out = write_jsonl(tmp_path / "in.jsonl", mixed_rows()), tmp_path / "out.jsonl"
    with pytest.raises(Interrupted):
        score_file(source, out, SpecifiedLength(3, Spec(model="length", batch_size=8)), OPTIONS)
    manifest = read_manifest(out)
    assert manifest["info"] == {"spec": {"model": "length", "batch_size": 8}}
    assert "spec" not in json.dumps(manifest["identity"])
    # another spec with the same identity resumes: the identity is what a resumed run is compared on
    summary = score_file(source, out, SpecifiedLength(0, Spec(model="length", batch_size=16)), OPTIONS, resume=True)
    assert summary.resumed_rows == 14 and summary.rows == 60
    clean = tmp_path / "clean.jsonl"
    score_file(source, clean, LengthScorer(), OPTIONS)
    assert out.read_bytes() == clean.read_bytes()
    with pytest.raises(Interrupted):  # a scorer without a spec records no information
        score_file(source, tmp_path / "plain.jsonl", StopsAt(2), OPTIONS)
    assert "info" not in read_manifest(tmp_path / "plain.jsonl")
