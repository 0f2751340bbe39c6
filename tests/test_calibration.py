"""`rewardmill calibrate` and `--normalize`: mean and standard deviation of a model's scores on a reference
set, applied as (score - mean) / std by score and serve, refused for another model or other options."""

import json
import statistics

import httpx
import pytest
import torch
from server_harness import running
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from typer.testing import CliRunner

from rewardmill import RewardModel
from rewardmill.cli import app
from rewardmill.errors import OptionsError
from rewardmill.evaluation.calibration import Calibration
from rewardmill.server import create_app

runner = CliRunner()
ROWS = [{"instruction": f"question {i}", "response": "answer " * (i % 7 + 1)} for i in range(20)]


def raw_scores(directory, rows):
    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    with torch.no_grad():
        return [model(torch.tensor([tok.apply_chat_template(
            [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["response"]}],
            tokenize=True, return_dict=True)["input_ids"]])).logits[0, 0].item() for r in rows]


@pytest.fixture(scope="module")
def calibrated(llama_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibration")
    data = folder / "reference.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS + [{"instruction": "no response"}]))
    result = runner.invoke(app, ["calibrate", str(data), "-m", str(llama_dir), "-o", str(folder / "cal.json"),
                                 "--threads", "1", "--cpu-kernel", "torch"])
    assert result.exit_code == 0, result.output
    assert "1 rows had errors and were left out" in result.output
    return folder, raw_scores(llama_dir, ROWS)


def test_calibrate_saves_mean_and_std_of_the_reference_scores(calibrated):
    folder, raw = calibrated
    saved = json.loads((folder / "cal.json").read_text())
    assert saved["count"] == 20
    assert saved["mean"] == pytest.approx(statistics.fmean(raw), abs=1e-4)
    assert saved["std"] == pytest.approx(statistics.pstdev(raw), abs=1e-4)


def test_score_and_serve_normalize_with_it(calibrated, llama_dir):
    folder, raw = calibrated
    cal = json.loads((folder / "cal.json").read_text())
    want = [(r - cal["mean"]) / cal["std"] for r in raw]
    data = folder / "reference.jsonl"
    out = folder / "normalized.jsonl"
    result = runner.invoke(app, ["score", str(data), "-m", str(llama_dir), "-o", str(out), "--normalize",
                                 str(folder / "cal.json"), "--threads", "1"])
    assert result.exit_code == 0, result.output
    got = [json.loads(line)["score"] for line in out.read_text().splitlines()][:20]
    assert max(abs(g - w) for g, w in zip(got, want)) <= 1e-4
    model = RewardModel.from_pretrained(str(llama_dir), threads=1, cpu_kernel="torch")
    model.normalize_with(Calibration.load(folder / "cal.json"))
    tok = AutoTokenizer.from_pretrained(llama_dir)
    query = tok.apply_chat_template([{"role": "user", "content": ROWS[3]["instruction"]},
                                     {"role": "assistant", "content": ROWS[3]["response"]}], tokenize=False)
    with running(create_app(model)) as url:
        reward = httpx.post(url + "/get_reward", json={"query": [query]}).json()["rewards"][0]
        row = httpx.post(url + "/v1/rewards", json={"rows": [ROWS[3]]}).json()["results"][0]["score"]
    assert abs(reward - want[3]) <= 1e-4 and abs(row - want[3]) <= 1e-4


def test_a_calibration_for_other_options_or_a_broken_file_is_refused(calibrated, llama_dir, tmp_path):
    folder, _ = calibrated
    result = runner.invoke(app, ["score", str(folder / "reference.jsonl"), "-m", str(llama_dir), "-o",
                                 str(tmp_path / "o.jsonl"), "--normalize", str(folder / "cal.json"), "--max-length", "99"])
    assert result.exit_code == 2 and "max_length: 2048 -> 99" in result.output
    model = RewardModel.from_pretrained(str(llama_dir), probabilities=True)
    with pytest.raises(OptionsError, match="options.probabilities: false -> true"):
        model.normalize_with(Calibration.load(folder / "cal.json"))
    (tmp_path / "bad.json").write_text('{"mean": 1}')
    with pytest.raises(OptionsError, match="not a calibration file"):
        Calibration.load(tmp_path / "bad.json")
    (tmp_path / "flat.json").write_text(json.dumps({**json.loads((folder / "cal.json").read_text()), "std": 0}))
    with pytest.raises(OptionsError, match="cannot normalize"):
        Calibration.load(tmp_path / "flat.json")


def test_calibrate_file_gives_the_commands_calibration(calibrated, llama_dir, tmp_path):
    """The API on the run loop writes the file `rewardmill calibrate` wrote (but its time), with the same numbers."""
    from rewardmill.evaluation.calibration import calibrate_file

    folder, _ = calibrated
    model = RewardModel.from_pretrained(str(llama_dir), threads=1, cpu_kernel="torch")
    calibration, rows_with_errors = calibrate_file(folder / "reference.jsonl", tmp_path / "api.json", model)
    by_cli = json.loads((folder / "cal.json").read_text())
    by_api = json.loads((tmp_path / "api.json").read_text())
    assert rows_with_errors == 1 and calibration.count == 20
    assert {**by_api, "created": None, "source": None} == {**by_cli, "created": None, "source": None}
    assert by_api["source"] == str(folder / "reference.jsonl")


class LengthModel:
    """A reward-model stand-in: the length baseline with an identity and `normalize_with`."""

    name = "length model"
    output_names = ("score",)
    item_output_names = ()
    identity = {"model": "length", "weights": []}

    def score_items(self, items, on_progress=None):
        from rewardmill.reward_models.baselines import LengthScorer

        return LengthScorer().score_items(items, on_progress)

    def normalize_with(self, calibration):
        return self


def reference_rows() -> list[dict]:
    rows = [{"instruction": f"q{i}", "responses": ["a" * (i % 5), "b" * (i % 3 + 1)]} for i in range(13)]
    return rows + [{"instruction": "no responses"}, {"instruction": "q", "responses": ["c" * 9]}]


def test_calibrate_file_reads_every_score_in_chunks_as_one_pass_would(tmp_path):
    """Chunks of 4 rows give the numbers of one pass over the rows (the command's loop before the run loop)."""
    from rewardmill.evaluation.calibration import calibrate_file
    from rewardmill.rows.scoring import RowOptions, score_rows

    source = tmp_path / "ref.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in reference_rows()))
    calibration, rows_with_errors = calibrate_file(source, tmp_path / "cal.json", LengthModel(),
                                                   RowOptions(chunk_rows=4))
    rows = list(score_rows(LengthModel(), reference_rows()))
    scores = [s for row in rows for s in (row.get("scores") or []) if isinstance(s, (int, float))]
    assert rows_with_errors == sum(bool(row["error"]) for row in rows) == 1
    assert (calibration.mean, calibration.std, calibration.count) == \
        (statistics.fmean(scores), statistics.pstdev(scores), len(scores))
    assert Calibration.load(tmp_path / "cal.json") == calibration


def test_calibrate_file_makes_the_checks_before_work(tmp_path):
    from rewardmill.errors import InputError
    from rewardmill.evaluation.calibration import calibrate_file, open_calibration
    from rewardmill.reward_models.baselines import LengthScorer

    source = tmp_path / "ref.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in reference_rows()))
    with pytest.raises(InputError, match="is the input file"):
        open_calibration(source, source)
    with pytest.raises(InputError, match="cannot be read|no such|not found|does not exist"):
        open_calibration(tmp_path / "missing.jsonl", tmp_path / "cal.json")
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is a file, not a folder"):
        open_calibration(source, tmp_path / "file" / "cal.json")
    with pytest.raises(OptionsError, match="calibrate applies to reward models, not length"):
        calibrate_file(source, tmp_path / "cal.json", LengthScorer())
    assert not (tmp_path / "cal.json").exists() and not list(tmp_path.glob("cal.json*"))


def test_a_reference_set_that_breaks_off_stops_with_the_readers_error_and_writes_nothing(tmp_path):
    import gzip

    from rewardmill.errors import InputDamaged
    from rewardmill.evaluation.calibration import calibrate_file

    data = gzip.compress("".join(json.dumps(r) + "\n" for r in reference_rows() * 200).encode())
    source = tmp_path / "ref.jsonl.gz"
    source.write_bytes(data[: len(data) * 3 // 4])
    with pytest.raises(InputDamaged, match=r"breaks off after line .*end-of-stream marker was reached$"):
        calibrate_file(source, tmp_path / "cal.json", LengthModel())  # no --resume to suggest: nothing is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.jsonl.gz"]
