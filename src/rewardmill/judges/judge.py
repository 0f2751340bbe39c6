"""`Judge`: an LLM judge as a `Scorer`. A task turns items into chat requests; the backend answers them; the
task parses the answers. Identical requests are sent once per run: within a call, and across calls while the answer
is among the last `ANSWERS_REMEMBERED`. An answer that does not parse is asked again (the answer and what was wrong
with it are sent back) up to `retries` times, then the item fails with the parse error and its raw output kept. With
a `ResultCache` (`cache.answer_cache(folder)`), answers are also reused across runs. Counts of requests,
retries, parse failures and HTTP errors are kept in `stats`.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from collections.abc import Sequence

from ..cache import ResultCache
from ..errors import OptionsError
from ..scorer import Conversation, Failure, Item, ItemResult, Progress
from . import parsing
from .backends import Backend, Completion, cut_off
from .parsing import ParseError
from .tasks import Task

SCORINGS = ("text", "logprobs")
# Answers remembered across calls (least recently used forgotten first): a long run or a long-lived Judge holds
# at most this many, however many distinct requests it has sent.
ANSWERS_REMEMBERED = 4096
REASK = ("Your answer could not be read: {problem}. Answer again, in exactly the format the instructions ask for, "
         "with nothing else.")


class _FirstAnswers:
    """A chunk's progress while its first answers arrive: each answer counts as its share of the chunk's items, so
    a long chunk (a local model generating hundreds of answers) moves the progress line before it ends. Re-asks
    add nothing; `finish` reports what is left (answers from the cache, items with nothing to ask)."""

    def __init__(self, report: Progress, items: int):
        self.report, self.left, self.share = report, float(items), 0.0

    def expect(self, requests: int) -> None:
        self.share = self.left / requests if requests else 0.0

    def answered(self, count: int) -> None:
        step = min(self.left, self.share * count)
        if step > 0:
            self.left -= step
            self.report(step)

    def finish(self) -> None:
        if self.left > 0:
            self.report(self.left)
            self.left = 0.0


class Judge:
    def __init__(self, task: Task, backend: Backend, *, retries: int = 1, cache: ResultCache | None = None,
                 scoring: str = "text", structured: bool = False):
        if retries < 0:
            raise OptionsError("--retries must not be negative")
        if scoring not in SCORINGS:
            raise OptionsError(f"--scoring must be one of {', '.join(SCORINGS)}, got {scoring!r}")
        if scoring == "logprobs" and not task.supports_logprobs:
            raise OptionsError(f"--scoring logprobs applies to the rating and pairwise tasks, not {task.name}")
        self.scoring = scoring
        self.structured = structured
        self.task = task
        self.backend = backend
        self.retries = retries
        self.name = f"{task.name} judge ({backend.model_name})"
        self.output_names = task.output_names
        self.item_output_names = (*task.item_output_names, "raw_output", "model_name", "scoring")
        self.cache = cache
        self.stats: Counter = Counter()
        self._answers: OrderedDict[str, Completion] = OrderedDict()  # request key -> answer, most recent last

    def _send(self, conversations: list[Conversation], schemas: list[dict | None],
              progress: _FirstAnswers | None = None) -> list[Completion]:
        """Answers in order, each answer sent counted in `progress`. A request asked twice in this call, answered
        recently (see `ANSWERS_REMEMBERED`), or answered in an earlier run with the same `cache`, is not sent again."""
        described = self.backend.describe()
        keys = [json.dumps([described.get("backend"), self.backend.model_name, self.backend.settings.describe(), c, s],
                           sort_keys=True) for c, s in zip(conversations, schemas)]
        known = {k: self._answers[k] for k in dict.fromkeys(keys) if k in self._answers}
        missing = [k for k in dict.fromkeys(keys) if k not in known]
        self.stats["duplicate requests not sent"] += len(keys) - len(missing)
        if self.cache is not None and missing:
            for key, text in self.cache.get_many(missing).items():
                known[key] = Completion(text)
                self.stats["answers from the cache"] += 1
            missing = [k for k in missing if k not in known]
        by_key = dict(zip(keys, zip(conversations, schemas)))
        asked = [by_key[k] for k in missing]
        if progress is not None:
            progress.expect(len(asked))
        answers = self.backend.complete([c for c, _ in asked], [s for _, s in asked] if self.structured else None,
                                        on_answered=progress.answered if progress is not None else None)
        fresh = dict(zip(missing, answers))
        for key, answer in fresh.items():
            self.stats["requests"] += 1
            if answer.status is not None:
                self.stats[f"HTTP {answer.status}"] += 1
            if not answer.retryable:  # a malformed answer is not remembered, so it can be asked again
                known[key] = answer
        if self.cache is not None:
            self.cache.put_many({k: a.text for k, a in fresh.items()
                                 if a.error is None and a.text is not None and not a.cut_off})
        self._remember(known)
        return [known.get(k) or fresh[k] for k in keys]

    def _remember(self, answers: dict[str, Completion]) -> None:
        """Keep `answers` as the most recent, forgetting the least recently used beyond `ANSWERS_REMEMBERED`."""
        for key, answer in answers.items():
            self._answers[key] = answer
            self._answers.move_to_end(key)
        while len(self._answers) > ANSWERS_REMEMBERED:
            self._answers.popitem(last=False)

    def score_items(self, items: Sequence[Item], on_progress: Progress | None = None) -> list[ItemResult]:
        progress = _FirstAnswers(on_progress or (lambda done: None), len(items))
        results = self._by_logprobs(items) if self.scoring == "logprobs" else self._by_text(items, progress)
        progress.finish()
        return results

    def _by_logprobs(self, items: Sequence[Item]) -> list[ItemResult]:
        """Label probabilities where the answer reaches its verdict; a row without them is an error, never a
        silent fall back to the sampled text."""
        results: list[ItemResult] = []
        plans = []
        for item in items:
            problem = self.task.check(item)
            plans.append((item, problem, [] if problem else self.task.label_requests(item)))
        requests = [r for _, _, asked in plans for r in asked]
        answers = iter(self.backend.label_probabilities(requests))
        self.stats["requests"] += len(requests)
        for item, problem, asked in plans:
            if problem:
                results.append(self._failed(item, problem, [], runtime=False))
                continue
            got = [next(answers) for _ in asked]
            raw = [a.text for a in got]
            failed = next((a for a in got if a.error), None)
            if failed is not None:
                self.stats["rows without label probabilities"] += 1
                results.append(self._failed(item, f"log-probability scoring failed: {failed.error}", raw))
                continue
            result = self.task.from_distributions(item, [a.probabilities for a in got])
            result.item_outputs.update(raw_output=self._raw(raw) if any(raw) else None,
                                       model_name=self.backend.model_name, scoring="logprobs")
            results.append(result)
        return results

    def _by_text(self, items: Sequence[Item], progress: _FirstAnswers) -> list[ItemResult]:
        results: list[ItemResult | None] = [None] * len(items)
        pending: dict[int, list[Conversation]] = {}
        for i, item in enumerate(items):
            problem = self.task.check(item)
            if problem:
                results[i] = self._failed(item, problem, [], runtime=False)
            else:
                pending[i] = self._requests(item)
        for attempt in range(self.retries + 1):
            if not pending:
                break
            order = list(pending)
            flat = [c for i in order for c in pending[i]]
            schemas = [self.task.schema(items[i]) if self.structured else None for i in order for _ in pending[i]]
            answers = iter(self._send(flat, schemas, progress if attempt == 0 else None))
            again: dict[int, list[Conversation]] = {}
            for i in order:
                got = [next(answers) for _ in pending[i]]
                raw = [a.text for a in got]
                failed = next((a for a in got if a.error), None)
                if failed is None and any(a.cut_off for a in got):
                    self.stats["answers cut off at the token limit"] += 1
                    results[i] = self._failed(items[i], cut_off(self.backend.settings.max_tokens), raw)
                    continue
                if failed is not None:
                    if failed.retryable and attempt < self.retries:
                        self.stats["retries"] += 1
                        again[i] = pending[i]
                    else:
                        results[i] = self._failed(items[i], failed.error, raw)
                    continue
                try:
                    if self.structured:
                        for answer in raw:
                            if not any(isinstance(v, dict) for v in parsing.json_objects(answer or "")):
                                raise ParseError("expected a JSON object, as the schema asks; found none")
                    result = self.task.parse(items[i], raw)
                except ParseError as error:
                    self.stats["parse failures"] += 1
                    if attempt < self.retries:
                        self.stats["retries"] += 1
                        again[i] = [[*c, {"role": "assistant", "content": a},
                                     {"role": "user", "content": REASK.format(problem=error)}]
                                    for c, a in zip(pending[i], raw)]
                    else:
                        results[i] = self._failed(items[i], f"the judge's answer did not parse: {error}", raw)
                    continue
                result.item_outputs.update(raw_output=self._raw(raw), model_name=self.backend.model_name,
                                           scoring="text")
                self._count_out_of_scale(result)
                results[i] = result
            pending = again
        return results  # type: ignore[return-value]

    def _count_out_of_scale(self, result: ItemResult) -> None:
        outside = sum(1 for output in result.outputs if output and output.get("out_of_scale"))
        if outside:
            self.stats["scores outside the stated scale (kept, see out_of_scale)"] += outside

    def _requests(self, item: Item) -> list[Conversation]:
        requests = self.task.requests(item)
        if not self.structured:
            return requests
        ask = f"\n\nAnswer only with a JSON object that matches this JSON schema: {json.dumps(self.task.schema(item))}"
        return [[*c[:-1], {**c[-1], "content": c[-1]["content"] + ask}] for c in requests]

    def _raw(self, raw: list[str | None]) -> str | list[str | None] | None:
        return raw[0] if len(raw) == 1 else raw

    def _failed(self, item: Item, reason: str, raw: list[str | None], *, runtime: bool = True) -> ItemResult:
        return ItemResult.failed(len(item.responses), Failure(reason) if runtime else reason,
                                 {"raw_output": self._raw(raw) if raw else None, "model_name": self.backend.model_name,
                                  "scoring": self.scoring})

    @property
    def identity(self) -> dict:
        """What the judged outputs depend on (a resumed run must match it): the task and its settings, the model,
        the kind of backend, generation settings and parsing; not where the server is or how many requests fly."""
        plain = (str, int, float, bool, type(None), list, tuple, dict)
        return {"task": self.task.name, "task settings": {k: v for k, v in sorted(vars(self.task).items())
                                                          if isinstance(v, plain)},
                "model": self.backend.model_name, "backend": type(self.backend).__name__,
                "generation": self.backend.settings.describe(), "scoring": self.scoring,
                "structured": self.structured, "retries": self.retries}

    def describe(self) -> dict[str, str]:
        return {**self.task.describe(), **self.backend.describe(),
                "parsing": f"strict (indices, final verdicts, ranges checked); up to {self.retries} re-asks, then "
                           "a per-row error with raw_output kept"}
