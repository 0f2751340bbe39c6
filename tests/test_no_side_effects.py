"""A library user's process is left as it was: importing rewardmill loads neither torch nor transformers, a
sampling local judge leaves torch's random generators where they were, a long-lived Judge remembers a bounded
number of answers, reading a CSV file leaves the csv module's field size limit alone between rows, and drawing the
eval report's plots leaves matplotlib's backend, settings and pyplot's figures as they were."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import toy_models

import rewardmill
from rewardmill.judges import GenerationSettings, Judge, make_task
from rewardmill.judges import judge as judge_module
from rewardmill.judges.backends import Completion
from rewardmill.scorer import Item

SOURCE = str(Path(rewardmill.__file__).resolve().parents[1])


def run_python(code: str, **env: str) -> str:
    """What `code` prints in a fresh interpreter that imports this checkout's rewardmill."""
    env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([SOURCE, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("module", ["rewardmill", "rewardmill.clients"])
def test_importing_loads_neither_torch_nor_transformers(module):
    assert run_python(f"import sys, {module}; print(sorted({{'torch', 'transformers'}} & set(sys.modules)))") == "[]"


PLOTS = """
import matplotlib, matplotlib.pyplot as plt
from rewardmill.evaluation import report
summary = {"pairs": 4, "subsets": ["all"], "agreement": {"a": {"a": 1.0, "b": 0.5}, "b": {"a": 0.5, "b": 1.0}},
           "scorers": {name: {"accuracy": 0.5, "ci95": [0.4, 0.6], "n": 4, "subsets": {},
                              "margins": {"edges": [-1.0, 0.0, 1.0], "counts": [1, 3]},
                              "length_bias": [{"bucket": "0", "n": 4, "accuracy": 0.5, "ci95": [0.4, 0.6]}]}
                       for name in ("a", "b")}}
plt.figure()
before = dict(matplotlib.rcParams)
for plot in (report.plot_subsets, report.plot_margins, report.plot_length_bias, report.plot_agreement):
    assert plot(summary).startswith("<svg")
print(matplotlib.get_backend(), dict(matplotlib.rcParams) == before, plt.get_fignums())
"""


def test_the_report_plots_leave_matplotlib_as_it_was():
    pytest.importorskip("matplotlib")
    assert run_python(PLOTS, MPLBACKEND="svg") == "svg True [1]"


@pytest.fixture(scope="module")
def toy_generator(tmp_path_factory):
    return toy_models.build_llama_generator(tmp_path_factory.mktemp("toy-judge") / "llama")


def test_a_sampling_local_judge_leaves_the_global_rng_alone_and_samples_as_before(toy_generator, monkeypatch):
    from rewardmill.judges import local
    from rewardmill.judges.local import TransformersBackend

    settings = GenerationSettings(temperature=1.5, max_tokens=8, seed=7)
    backend = TransformersBackend(str(toy_generator), settings, batch_size=2)
    prompts = [[{"role": "user", "content": f"Rate answer {i}."}] for i in range(3)]
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    answers = [c.text for c in backend.complete(prompts)]
    assert torch.equal(torch.random.get_rng_state(), before)
    assert [c.text for c in backend.complete(prompts)] == answers  # the same seed, the same samples

    def global_seed(device, seed):  # what the backend did before: seed the process's generators
        torch.manual_seed(seed)
        return torch.random.fork_rng(enabled=False)

    monkeypatch.setattr(local, "seeded", global_seed)
    assert [c.text for c in backend.complete(prompts)] == answers
    assert len(set(answers)) > 1  # sampled text indeed (a random model at temperature 1.5)


class EchoBackend:
    """Answers every request with a rating; the first answer to a `bad` prompt does not parse."""

    model_name = "echo"
    settings = GenerationSettings()

    def __init__(self):
        self.asked: list[str] = []

    def complete(self, conversations, schemas=None, on_answered=None):
        answers = []
        for conversation in conversations:
            self.asked.append(conversation[0]["content"])
            unreadable = "bad" in conversation[0]["content"] and len(conversation) == 1
            answers.append(Completion("no idea" if unreadable else "Rating: [[7]]"))
        return answers

    def describe(self):
        return {"backend": "echo"}


def rating_item(question: str) -> Item:
    return Item(({"role": "user", "content": question},), ("an answer",))


def test_the_judge_remembers_a_bounded_number_of_answers(monkeypatch):
    monkeypatch.setattr(judge_module, "ANSWERS_REMEMBERED", 5)
    backend = EchoBackend()
    judge = Judge(make_task("rating"), backend, retries=1)
    for call in range(40):
        results = judge.score_items([rating_item(f"q{call} {k}") for k in range(3)])
        assert [r.outputs[0]["rating"] for r in results] == [7.0] * 3
        assert len(judge._answers) <= 5
    assert len(backend.asked) == 120

    asked = len(backend.asked)
    judge.score_items([rating_item("q39 2"), rating_item("dup"), rating_item("dup")])
    assert len(backend.asked) == asked + 1  # a recent answer reused, a duplicate within the call sent once

    asked = len(backend.asked)
    results = judge.score_items([rating_item("bad one")])
    assert results[0].outputs[0]["rating"] == 7.0 and len(backend.asked) == asked + 2  # re-asked once
    assert len(judge._answers) <= 5


def test_reading_a_csv_file_leaves_the_field_size_limit_alone_between_rows(tmp_path):
    from rewardmill.rows.readers import read_rows

    source = tmp_path / "in.csv"
    source.write_text(f"instruction,response\nq,{'x' * 300_000}\nq2,ab\n", encoding="utf-8")
    limit = csv.field_size_limit()
    rows = iter(read_rows(source).rows)
    assert len(next(rows)["response"]) == 300_000
    assert csv.field_size_limit() == limit  # while the reader waits for the caller
    assert next(rows)["response"] == "ab"
