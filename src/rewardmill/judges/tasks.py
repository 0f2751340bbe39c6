"""Judge tasks: a prompt template and a parser for each. A task turns one item into the chat requests to send
and the answers back into an `ItemResult`; it knows nothing of HTTP or models.

  quality        instruction + responses -> scores (1..n, a ranking within the row) [Deita quality scorer]
  complexity     instructions -> scores (1..n, a ranking within the row) [Deita complexity scorer]
                 (both keep a score outside 1..n, as distilabel does, and mark it in `out_of_scale`)
  ultrafeedback  instruction or messages + generations -> ratings (1..5) and rationales, for one --aspect
  pairwise       instruction + exactly two responses -> winner (0, 1 or null), asked in both orders
  rating         conversation or instruction + response -> rating (1..10) [MT-Bench single answer]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import jinja2

from ..errors import OptionsError
from ..scorer import Conversation, Item, ItemResult
from . import parsing
from .backends import LabelRequest

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _render(template: str, **values: Any) -> str:
    return _ENV.from_string(template).render(**values)


def _prompt_text(item: Item) -> str:
    """The prompt as text: a lone user turn as it is, else every turn as 'Role: content'."""
    if len(item.prompt) == 1 and item.prompt[0]["role"] == "user":
        return item.prompt[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in item.prompt)


def _object(**properties: dict) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


class Task(ABC):
    name: str
    output_names: tuple[str, ...] = ()  # per response
    item_output_names: tuple[str, ...] = ()  # per item, besides raw_output and model_name

    def check(self, item: Item) -> str | None:
        """Why this item cannot be judged at all (None when it can)."""
        return None

    @abstractmethod
    def requests(self, item: Item) -> list[Conversation]:
        """The chat requests to send for this item (most tasks: one)."""

    @abstractmethod
    def parse(self, item: Item, answers: list[str]) -> ItemResult:
        """The item's result from the answers to its requests; raises parsing.ParseError."""

    def describe(self) -> dict[str, str]:
        return {"task": self.name}

    def schema(self, item: Item) -> dict:
        """The JSON schema of an answer for this item (structured output); its parser reads such JSON."""
        raise NotImplementedError

    # Log-probability scoring, for tasks whose answer is one label from a small set of one-token labels.
    supports_logprobs = False

    def label_requests(self, item: Item) -> list[LabelRequest]:
        raise NotImplementedError

    def from_distributions(self, item: Item, distributions: list[dict[str, float]]) -> ItemResult:
        raise NotImplementedError


QUALITY = """Rank the following responses to one instruction by their quality: helpfulness, relevance, accuracy, \
depth, creativity and level of detail. Give each response a score from 1 (worst) to {{ n }} (best); each score \
is used once when the responses differ in quality.

#Instruction#:
{{ instruction }}

{% for response in responses %}#Response [{{ loop.index }}]#:
{{ response }}

{% endfor %}Answer with one line per response and nothing else, in this format:
{% for response in responses %}[{{ loop.index }}] Score: <score>
{% endfor %}"""


OUT_OF_SCALE = ("keep", "error")


class QualityTask(Task):
    """Deita's quality scorer. A score outside the 1..n the prompt states is kept and marked `out_of_scale`, since
    distilabel accepts any score (its own example rates three responses [5, 3, 1]); `out_of_scale="error"` makes
    it a parse error instead (a re-ask, then a per-row error)."""

    name = "quality"
    output_names = ("score", "out_of_scale")

    def __init__(self, out_of_scale: str = "keep"):
        if out_of_scale not in OUT_OF_SCALE:
            raise OptionsError(f"--out-of-scale must be one of {', '.join(OUT_OF_SCALE)}, got {out_of_scale!r}")
        self.out_of_scale = out_of_scale

    def check(self, item: Item) -> str | None:
        return None if item.prompt else f"the {self.name} task rates responses to an instruction; this row has none"

    def requests(self, item: Item) -> list[Conversation]:
        text = _render(QUALITY, instruction=_prompt_text(item), responses=item.responses, n=len(item.responses))
        return [[{"role": "user", "content": text}]]

    def schema(self, item: Item) -> dict:
        n = len(item.responses)
        return _object(scores={"type": "array", "minItems": n, "maxItems": n,
                               "items": {"type": "integer", "minimum": 1, "maximum": n}})

    def parse(self, item: Item, answers: list[str]) -> ItemResult:
        n = len(item.responses)
        scores = parsing.indexed_scores(answers[0], n, (1, n), range_checked=self.out_of_scale == "error")
        return ItemResult([{"score": s, "out_of_scale": not 1 <= s <= n} for s in scores], [None] * n)

    def describe(self) -> dict[str, str]:
        return {"task": "quality (Deita): each response scored 1..n within its row; scores rank responses of one "
                        "row and do not compare across rows"}


COMPLEXITY = """Rank the following instructions by their complexity: how much knowledge, reasoning and effort a \
good answer needs. Give each instruction a score from 1 (simplest) to {{ n }} (most complex); each score is used once \
when the instructions differ in complexity.

{% for instruction in responses %}#Instruction [{{ loop.index }}]#:
{{ instruction }}

{% endfor %}Answer with one line per instruction and nothing else, in this format:
{% for instruction in responses %}[{{ loop.index }}] Complexity score: <score>
{% endfor %}"""


class ComplexityTask(QualityTask):
    """Deita's complexity scorer: a row's `instructions` scored 1..n against each other."""

    name = "complexity"

    def check(self, item: Item) -> str | None:
        return None if not item.prompt else "the complexity task rates instructions: give rows an 'instructions' list"

    def requests(self, item: Item) -> list[Conversation]:
        return [[{"role": "user", "content": _render(COMPLEXITY, responses=item.responses, n=len(item.responses))}]]

    def describe(self) -> dict[str, str]:
        return {"task": "complexity (Deita): each instruction of a row scored 1..n within its row; scores rank the "
                        "instructions of one row and do not compare across rows"}


ASPECTS = {
    "overall": "overall quality: helpfulness, honesty, truthfulness and how well it follows the instruction",
    "helpfulness": "helpfulness: whether the text fulfils the task correctly, clearly and completely",
    "honesty": "honesty: whether the text conveys the right confidence and admits uncertainty",
    "truthfulness": "truthfulness: whether the text is free of hallucinations and factual errors",
    "instruction-following": "instruction following: how closely the text follows the instruction's intent and "
                             "restrictions",
}

ULTRAFEEDBACK = """Rate each text below, written in answer to the same instruction, on {{ aspect }}.
Use a scale from 1 (poor) to 5 (excellent).

## Instruction
{{ instruction }}

{% for response in responses %}## Text {{ loop.index }}
{{ response }}

{% endfor %}Answer with one block per text, in this format:
{% for response in responses %}#### Output for Text {{ loop.index }}
Rating: <1-5>
Rationale: <one or two sentences>

{% endfor %}"""


class UltraFeedbackTask(Task):
    name = "ultrafeedback"
    output_names = ("score", "rationales")

    def __init__(self, aspect: str = "overall"):
        if aspect not in ASPECTS:
            raise OptionsError(f"--aspect must be one of {', '.join(ASPECTS)}, got {aspect!r}")
        self.aspect = aspect

    def requests(self, item: Item) -> list[Conversation]:
        text = _render(ULTRAFEEDBACK, aspect=ASPECTS[self.aspect], instruction=_prompt_text(item),
                       responses=item.responses)
        return [[{"role": "user", "content": text}]]

    def schema(self, item: Item) -> dict:
        n = len(item.responses)
        return _object(ratings={"type": "array", "minItems": n, "maxItems": n,
                                "items": {"type": "integer", "minimum": 1, "maximum": 5}},
                       rationales={"type": "array", "minItems": n, "maxItems": n, "items": {"type": "string"}})

    def parse(self, item: Item, answers: list[str]) -> ItemResult:
        ratings, rationales = parsing.text_blocks(answers[0], len(item.responses), (1, 5))
        return ItemResult([{"score": r, "rationales": why} for r, why in zip(ratings, rationales)],
                          [None] * len(ratings))

    def describe(self) -> dict[str, str]:
        return {"task": f"ultrafeedback, aspect {self.aspect}: each generation rated 1-5 with a rationale"}


PAIRWISE = """Please act as an impartial judge and evaluate the quality of the responses provided by two AI \
assistants to the user question displayed below. Choose the assistant that follows the user's instructions and \
answers the user's question better. Do not let the order of the responses, their length or the assistants' names \
influence your evaluation. Be as objective as possible. After a short explanation, output your final verdict in \
exactly this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.

[User Question]
{{ instruction }}

[The Start of Assistant A's Answer]
{{ first }}
[The End of Assistant A's Answer]

[The Start of Assistant B's Answer]
{{ second }}
[The End of Assistant B's Answer]"""


class PairwiseTask(Task):
    """MT-Bench-style A/B verdicts, always asked in both orders; a pair whose two verdicts disagree is a tie."""

    name = "pairwise"
    item_output_names = ("winner", "verdicts", "consistent", "p_first")
    supports_logprobs = True

    def check(self, item: Item) -> str | None:
        if len(item.responses) != 2:
            return f"pairwise judging needs exactly 2 responses, got {len(item.responses)}"
        return None

    def requests(self, item: Item) -> list[Conversation]:
        question, (a, b) = _prompt_text(item), item.responses
        return [[{"role": "user", "content": _render(PAIRWISE, instruction=question, first=x, second=y)}]
                for x, y in ((a, b), (b, a))]

    def schema(self, item: Item) -> dict:
        return _object(winner={"type": "string", "enum": ["A", "B", "tie"]})

    def parse(self, item: Item, answers: list[str]) -> ItemResult:
        forward, swapped = parsing.verdict(answers[0]), parsing.verdict(answers[1])
        # In the swapped request, A is response 1: map both verdicts to response indices (None: tie).
        first = {"A": 0, "B": 1, "tie": None}[forward]
        second = {"A": 1, "B": 0, "tie": None}[swapped]
        consistent = first == second
        return ItemResult([{}, {}], [None, None],
                          {"winner": first if consistent else None, "verdicts": [first, second],
                           "consistent": consistent, "p_first": None})

    def label_requests(self, item: Item) -> list[LabelRequest]:
        return [LabelRequest(tuple(c), "[[", ("A", "B", "C")) for c in self.requests(item)]

    def from_distributions(self, item: Item, distributions: list[dict[str, float]]) -> ItemResult:
        forward, swapped = distributions
        # Probabilities that response 0 wins, that response 1 wins, and of a tie, averaged over both orders.
        p = {0: (forward["A"] + swapped["B"]) / 2, 1: (forward["B"] + swapped["A"]) / 2,
             None: (forward["C"] + swapped["C"]) / 2}
        first = {"A": 0, "B": 1, "C": None}[max(forward, key=forward.get)]
        second = {"A": 1, "B": 0, "C": None}[max(swapped, key=swapped.get)]
        # As with text verdicts, a pair whose two orders disagree is a tie; p_first keeps the soft estimate.
        winner = max(p, key=lambda k: p[k]) if first == second else None
        return ItemResult([{}, {}], [None, None], {"winner": winner, "verdicts": [first, second],
                                                   "consistent": first == second, "p_first": p[0]})

    def describe(self) -> dict[str, str]:
        return {"task": "pairwise (MT-Bench): both orders asked for every pair; winner 0 or 1 only when both "
                        "orders agree, else null (a tie, flagged consistent: false)"}


RATING = """Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant \
to the user question displayed below. Consider helpfulness, relevance, accuracy, depth, creativity and level of \
detail. After a short explanation, rate the response on a scale of 1 to {{ top }} in exactly this format: \
"Rating: [[5]]".

[Question]
{{ instruction }}

[The Start of Assistant's Answer]
{{ response }}
[The End of Assistant's Answer]"""


class RatingTask(Task):
    name = "rating"
    output_names = ("rating",)
    supports_logprobs = True
    LOGPROB_TOP = 9  # labels 1..9 are one token each in common tokenizers; "10" often is two

    def requests(self, item: Item, top: int = 10) -> list[Conversation]:
        return [[{"role": "user", "content": _render(RATING, instruction=_prompt_text(item), response=r, top=top)}]
                for r in item.responses]

    def label_requests(self, item: Item) -> list[LabelRequest]:
        labels = tuple(str(k) for k in range(1, self.LOGPROB_TOP + 1))
        return [LabelRequest(tuple(c), "Rating: [[", labels) for c in self.requests(item, top=self.LOGPROB_TOP)]

    def from_distributions(self, item: Item, distributions: list[dict[str, float]]) -> ItemResult:
        expected = [sum(int(label) * p for label, p in d.items()) for d in distributions]
        return ItemResult([{"rating": value} for value in expected], [None] * len(expected))

    def schema(self, item: Item) -> dict:
        return _object(rating={"type": "integer", "minimum": 1, "maximum": 10})

    def parse(self, item: Item, answers: list[str]) -> ItemResult:
        return ItemResult([{"rating": parsing.single_rating(a, (1, 10))} for a in answers], [None] * len(answers))

    def describe(self) -> dict[str, str]:
        return {"task": "rating (MT-Bench single answer): 1-10 per response; with log-probability scoring, the "
                        "expected rating over the labels 1-9"}


class CustomTask(Task):
    """The user's own Jinja template (variables: `instruction`, `messages`, `response`; one request per response),
    read with a regex (its first group is the score) or a JSON schema (the answer must be a JSON object valid
    under it; its `score` field, when there is one, is the score; the whole object lands in `judgement`)."""

    name = "custom"
    output_names = ("score", "judgement")

    def __init__(self, template: str, *, regex: str | None = None, schema: dict | None = None):
        from ..reward_models.adapters.chat import read_template

        if (regex is None) == (schema is None):
            raise OptionsError("the custom task needs exactly one of --answer-regex and --answer-schema")
        self.template = read_template(template)
        try:
            _ENV.from_string(self.template)
        except jinja2.TemplateSyntaxError as error:
            raise OptionsError(f"--template is not a valid Jinja template: {error}") from None
        self.regex, self.answer_schema = regex, schema
        if schema is not None:
            import jsonschema

            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as error:
                raise OptionsError(f"--answer-schema is not a valid JSON schema: {error.message}") from None

    def requests(self, item: Item) -> list[Conversation]:
        try:
            return [[{"role": "user", "content": _render(self.template, instruction=_prompt_text(item),
                                                         messages=list(item.prompt), response=r)}]
                    for r in item.responses]
        except jinja2.UndefinedError as error:
            raise OptionsError(f"--template uses a variable rewardmill does not provide ({error}); it has "
                               "instruction, messages and response") from None

    def schema(self, item: Item) -> dict:
        if self.answer_schema is None:
            raise OptionsError("--structured with the custom task needs --answer-schema")
        return self.answer_schema

    def _one(self, answer: str) -> dict:
        if self.regex is not None:
            text = parsing.regex_value(answer, self.regex)
            try:
                return {"score": float(text), "judgement": text}
            except ValueError:
                raise parsing.ParseError(f"the regex matched {text!r}, which is not a number") from None
        import jsonschema

        found = [v for v in parsing.json_objects(answer) if isinstance(v, dict)]
        if not found:
            raise parsing.ParseError("expected a JSON object, found none")
        try:
            jsonschema.validate(found[-1], self.answer_schema)
        except jsonschema.ValidationError as error:
            raise parsing.ParseError(f"the JSON answer does not match the schema: {error.message}") from None
        score = found[-1].get("score")
        return {"score": float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None,
                "judgement": found[-1]}

    def parse(self, item: Item, answers: list[str]) -> ItemResult:
        return ItemResult([self._one(a) for a in answers], [None] * len(answers))

    def describe(self) -> dict[str, str]:
        how = f"regex {self.regex!r}" if self.regex else "a JSON schema (validated with jsonschema)"
        return {"task": f"custom template, one request per response, answer read with {how}"}


TASKS = {"quality": QualityTask, "complexity": ComplexityTask, "ultrafeedback": UltraFeedbackTask,
         "pairwise": PairwiseTask, "rating": RatingTask}
RANKING_TASKS = ("quality", "complexity")


def make_task(name: str, *, aspect: str | None = None, template: str | None = None, regex: str | None = None,
              schema: dict | None = None, out_of_scale: str | None = None) -> Task:
    if name != "custom" and name not in TASKS:
        raise OptionsError(f"--task must be one of {', '.join([*TASKS, 'custom'])}, got {name!r}")
    if aspect is not None and name != "ultrafeedback":
        raise OptionsError(f"--aspect applies to the ultrafeedback task only, not {name}")
    if out_of_scale is not None and name not in RANKING_TASKS:
        raise OptionsError(f"--out-of-scale applies to the quality and complexity tasks only, not {name}")
    if name == "custom":
        if template is None:
            raise OptionsError("the custom task needs --template (a Jinja string or file)")
        return CustomTask(template, regex=regex, schema=schema)
    if template is not None or regex is not None or schema is not None:
        raise OptionsError(f"--template, --answer-regex and --answer-schema apply to the custom task only, not {name}")
    if name in RANKING_TASKS:
        return TASKS[name](out_of_scale or "keep")
    return UltraFeedbackTask(aspect or "overall") if name == "ultrafeedback" else TASKS[name]()
