"""Issue 28, points 5 and 6. (5) Every command fails in one line, naming the path and the problem, before any
model loads: an output or cache folder that cannot be written, an input that cannot be read, a cache file that is
not a database, a missing extra (eval without matplotlib writes its numbers and says how to get the page).
(6) The score cache and --resume know a model's weights by their content: weights replaced by others of the same
size, with the old modification time put back, never get the old scores.

The tests run as root, where permission bits do not stop a write: "not writable" is a path under a regular file
or a folder of /sys, "unreadable" a name for /proc/self/mem (reading it at offset 0 fails with EIO for root too).
"""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import toy_models
from typer.testing import CliRunner

from rewardmill.cli import app
from rewardmill.reward_models import weights
from rewardmill.reward_models.model import RewardModel

runner = CliRunner()
UNREADABLE = Path("/proc/self/mem")
UNWRITABLE_FOLDER = Path("/sys")


def sys_is_unwritable() -> bool:
    try:
        (UNWRITABLE_FOLDER / "rewardmill-probe").touch()
    except OSError:
        return True
    (UNWRITABLE_FOLDER / "rewardmill-probe").unlink()
    return False


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any model load fails the test: every check must come before it."""
    from rewardmill.judges.spec import JudgeSpec

    def loaded(*args, **kwargs):
        raise AssertionError("a model was loaded before the checks")

    monkeypatch.setattr(RewardModel, "load", classmethod(loaded))
    monkeypatch.setattr(JudgeSpec, "scorer", loaded)


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


PAIRS = [{"prompt": f"q{i}", "chosen": "good " * (i % 5 + 2), "rejected": "bad " * (i % 3 + 1)} for i in range(12)]
ROWS = [{"instruction": f"q{i}", "response": "answer " * (i % 4 + 1)} for i in range(12)]
DPO_ROWS = [{"instruction": f"q{i}", "generations": ["a" * (i + 1), "b" * (i + 2)]} for i in range(6)]


def command(name: str, source: Path, output: Path, extra: list[str] = ()) -> list[str]:
    """A command line of `name` on `source` into `output` with a reward model (never loaded in these tests)."""
    model = ["-m", "some/reward-model"]
    if name == "judge":
        return ["judge", str(source), "-o", str(output), "--task", "rating", *model, *extra]
    if name == "dpo":
        return ["dpo", str(source), "-o", str(output), *model, *extra]
    return [name, str(source), "-o", str(output), *model, *extra]


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


COMMANDS = ["score", "judge", "dpo", "calibrate", "eval"]


def source_for(name: str, folder: Path) -> Path:
    rows = {"dpo": DPO_ROWS, "eval": PAIRS}.get(name, ROWS)
    return write_rows(folder / "in.jsonl", rows)


def output_name(name: str) -> str:
    return {"eval": "report", "calibrate": "calibration.json"}.get(name, "out.jsonl")


@pytest.mark.parametrize("name", COMMANDS)
def test_an_output_under_a_regular_file_fails_first(tmp_path, name, no_model_loads):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    output = blocker / "runs" / output_name(name)
    line = one_line_error(runner.invoke(app, command(name, source_for(name, tmp_path), output)))
    assert str(blocker) in line and "is a file, not a folder" in line
    assert blocker.read_text() == "a file, not a folder"


@pytest.mark.skipif(not sys_is_unwritable(), reason="needs a folder that root cannot write in (/sys)")
@pytest.mark.parametrize("name", COMMANDS)
def test_an_output_folder_that_cannot_be_written_fails_first(tmp_path, name, no_model_loads):
    output = UNWRITABLE_FOLDER / output_name(name)
    line = one_line_error(runner.invoke(app, command(name, source_for(name, tmp_path), output)))
    assert f"cannot write in {UNWRITABLE_FOLDER}" in line and "ermission denied" in line


@pytest.mark.skipif(not UNREADABLE.exists(), reason="needs /proc/self/mem")
@pytest.mark.parametrize("name", COMMANDS)
def test_an_input_that_cannot_be_read_fails_first(tmp_path, name, no_model_loads):
    source = tmp_path / "in.jsonl"
    source.symlink_to(UNREADABLE)
    line = one_line_error(runner.invoke(app, command(name, source, tmp_path / output_name(name))))
    assert f"input {source}: cannot be read" in line and "Input/output error" in line


def test_a_damaged_parquet_input_is_one_line(tmp_path, no_model_loads):
    source = tmp_path / "in.parquet"
    source.write_bytes(b"PAR1 the rest of this file was lost")
    line = one_line_error(runner.invoke(app, command("score", source, tmp_path / "out.jsonl")))
    assert f"input {source}: cannot be read" in line


@pytest.mark.parametrize("name", ["score", "judge"])
def test_a_cache_folder_that_cannot_be_created_fails_first(tmp_path, name, no_model_loads):
    blocker = tmp_path / "cache"
    blocker.write_text("")
    args = command(name, source_for(name, tmp_path), tmp_path / "out.jsonl", ["--cache", str(blocker / "scores")])
    line = one_line_error(runner.invoke(app, args))
    assert f"--cache {blocker / 'scores'}" in line and "is a file, not a folder" in line


@pytest.mark.parametrize("name, file", [("score", "reward-scores.sqlite"), ("score", "weight-digests.sqlite"),
                                        ("judge", "judge-answers.sqlite")])
def test_a_cache_file_of_garbage_is_a_clear_error_before_the_model_loads(tmp_path, name, file, no_model_loads):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / file).write_bytes(os.urandom(8192))
    args = command(name, source_for(name, tmp_path), tmp_path / "out.jsonl", ["--cache", str(cache)])
    line = one_line_error(runner.invoke(app, args))
    assert f"{cache / file}: this cache file cannot be used (file is not a database)" in line
    assert "delete it" in line


def test_serve_without_its_extra_fails_before_the_model_loads(monkeypatch, no_model_loads):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # what an import of a missing package does
    line = one_line_error(runner.invoke(app, ["serve", "-m", "some/reward-model"]))
    assert "needs uvicorn" in line and "pip install 'rewardmill[serve]'" in line


def test_eval_without_matplotlib_writes_the_numbers_and_says_how_to_get_the_page(tmp_path, monkeypatch):
    for module in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    source = write_rows(tmp_path / "pairs.jsonl", PAIRS)
    report = tmp_path / "report"
    result = runner.invoke(app, ["eval", str(source), "-m", "length", "-o", str(report)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in report.iterdir()) == ["pairs.parquet", "report.json"]
    assert json.loads((report / "report.json").read_text())["scorers"]["length"]["n"] == 12
    first, *_, last = result.output.strip().splitlines()
    assert "index.html will not be written" in first and "pip install 'rewardmill[eval]'" in first
    assert "no index.html" in last and "pip install 'rewardmill[eval]'" in last


# ---------------------------------------------------------------- point 6: the weights' content is the identity


def replace_weights_keeping_size_and_mtime(model: Path, other: Path) -> None:
    """Put `other`'s weights in `model`'s file, then its old modification time back."""
    target = model / "model.safetensors"
    before = target.stat()
    shutil.copyfile(other / "model.safetensors", target)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = target.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert target.read_bytes() == (other / "model.safetensors").read_bytes()


@pytest.fixture(scope="module")
def two_models(tmp_path_factory) -> tuple[Path, Path]:
    """The toy llama with two seeds: the same files, the same sizes, other weights."""
    root = tmp_path_factory.mktemp("weights")
    return toy_models.build_decoder_rm("llama", root / "a", seed=0), toy_models.build_decoder_rm("llama", root / "b", seed=1)


def scores(path: Path) -> list[float]:
    return [json.loads(line)["score"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("racy_seconds", [weights.RACY_SECONDS, 0.0])
def test_replaced_weights_with_the_old_size_and_mtime_get_no_stale_score(tmp_path, two_models, monkeypatch,
                                                                         racy_seconds):
    # With 0 the digest of a file just written is remembered at once, so the memo's key itself must tell.
    monkeypatch.setattr(weights, "RACY_SECONDS", racy_seconds)
    first, second = two_models
    model = tmp_path / "model"
    shutil.copytree(first, model)
    source = write_rows(tmp_path / "in.jsonl", ROWS)
    args = ["-m", str(model), "--cache", str(tmp_path / "cache"), "--threads", "1", "--cpu-kernel", "torch"]
    for out in ("old.jsonl", "old-again.jsonl"):
        assert runner.invoke(app, ["score", str(source), "-o", str(tmp_path / out), *args]).exit_code == 0
    replace_weights_keeping_size_and_mtime(model, second)
    result = runner.invoke(app, ["score", str(source), "-o", str(tmp_path / "new.jsonl"), *args])
    assert result.exit_code == 0, result.output
    fresh = tmp_path / "fresh.jsonl"
    assert runner.invoke(app, ["score", str(source), "-o", str(fresh), "-m", str(second), "--threads", "1",
                               "--cpu-kernel", "torch"]).exit_code == 0
    old, new = scores(tmp_path / "old.jsonl"), scores(tmp_path / "new.jsonl")
    assert scores(tmp_path / "old-again.jsonl") == old
    assert new == scores(fresh) and sum(a == b for a, b in zip(old, new)) == 0  # not one of 12 stale


def test_a_digest_is_computed_once_per_file_and_again_after_any_rewrite(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "RACY_SECONDS", 0.0)
    hashed = []
    real = weights.file_digest
    monkeypatch.setattr(weights, "file_digest", lambda path: hashed.append(path.name) or real(path))
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"a" * 4096)
    memo = weights.DigestMemo(tmp_path / "digests.sqlite")
    first = memo.digest(file)
    assert memo.digest(file) == first and hashed == ["model.safetensors"]
    assert weights.DigestMemo(tmp_path / "digests.sqlite").digest(file) == first and len(hashed) == 1  # next run
    before = file.stat()
    file.write_bytes(b"b" * 4096)
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert memo.digest(file) == weights.file_digest(file) != first and len(hashed) == 3


def test_a_file_written_just_now_is_hashed_but_not_remembered(tmp_path):
    file = tmp_path / "model.bin"
    file.write_bytes(b"x" * 100)
    memo = weights.DigestMemo(tmp_path / "digests.sqlite")
    assert memo.digest(file) == weights.file_digest(file)
    assert memo.db.execute("SELECT COUNT(*) FROM digests").fetchone()[0] == 0


def test_resume_with_replaced_weights_is_refused(tmp_path, two_models, monkeypatch):
    import rewardmill.runs.job

    first, second = two_models
    model = tmp_path / "model"
    shutil.copytree(first, model)
    source = write_rows(tmp_path / "in.jsonl", ROWS)
    out = tmp_path / "out.jsonl"
    args = ["score", str(source), "-o", str(out), "-m", str(model), "--chunk-rows", "4", "--threads", "1",
            "--cpu-kernel", "torch"]
    real = rewardmill.runs.job.score_row_chunks

    def interrupted_after_one_chunk(*a, **k):
        for number, chunk in enumerate(real(*a, **k)):
            if number == 1:
                raise KeyboardInterrupt
            yield chunk

    with monkeypatch.context() as patch:
        patch.setattr(rewardmill.runs.job, "score_row_chunks", interrupted_after_one_chunk)
        assert runner.invoke(app, args).exit_code == 130
    replace_weights_keeping_size_and_mtime(model, second)
    line = one_line_error(runner.invoke(app, [*args, "--resume"]))
    assert "cannot resume" in line and "scorer.weights" in line
