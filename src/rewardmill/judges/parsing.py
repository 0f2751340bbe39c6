"""Reading a judge's answer: what judges really write, checked, never guessed.

Every parser returns values or raises `ParseError` with what was expected and what was found. Nothing is padded,
shifted, defaulted to a middle value or taken from another answer. Conventions:
- Several responses are read by their explicit indices (`[2] Score: 4`, `Text 2 ... Rating: 4`), never by line
  position, and every index 1..n must appear; when an index appears more than once, the last mention wins (the
  conclusion after the reasoning), as long as every mention of it is read the same way or it is restated last.
- A single rating or verdict is the final one: a tag after "final verdict" / "rating" wins over numbers and tags
  in the reasoning; two different verdict tags with no final marker are ambiguous, an error.
- JSON (bare or in a ```json fence) is read first when present.
- Values are range-checked (indexed scores may instead be returned as read, for the caller to mark: distilabel's
  QualityScorer and ComplexityScorer accept any score); `4/5` is read as 4 on a 1-5 scale and refused on another.
"""

from __future__ import annotations

import json
import re
from typing import Any

NUMBER = r"-?\d+(?:\.\d+)?"
_BOLD = re.compile(r"\*\*|__")
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


class ParseError(ValueError):
    """The judge's answer cannot be read as the task asks; the message says what was expected and found."""


def clean(text: str) -> str:
    """Markdown emphasis removed, so `**Score:** 4` reads like `Score: 4`."""
    return _BOLD.sub("", text)


def json_objects(text: str) -> list[Any]:
    """JSON values found in ```json fences, else the whole text, else the outermost {...} span."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] or [text]
    found = []
    for candidate in candidates:
        candidate = candidate.strip()
        for attempt in (candidate, candidate[candidate.find("{"): candidate.rfind("}") + 1]):
            if not attempt:
                continue
            try:
                found.append(json.loads(attempt))
                break
            except json.JSONDecodeError:
                continue
    return found


def check_range(value: float, low: float, high: float, what: str) -> float:
    if not low <= value <= high:
        raise ParseError(f"{what} is {value:g}, outside the scale {low:g}-{high:g}")
    return value


def _number(text: str, scale: tuple[float, float], what: str, range_checked: bool = True) -> float:
    """`4`, `4.5`, `4/5` (denominator must be the scale's top) as a float, within the scale if `range_checked`."""
    match = re.fullmatch(rf"\s*({NUMBER})\s*(?:/\s*({NUMBER}))?\s*", text)
    if not match:
        raise ParseError(f"{what} {text.strip()!r} is not a number")
    value = float(match.group(1))
    if match.group(2) is not None and float(match.group(2)) != scale[1]:
        raise ParseError(f"{what} is given as {text.strip()} but the scale is {scale[0]:g}-{scale[1]:g}")
    return check_range(value, *scale, what) if range_checked else value


_INDEXED = re.compile(
    rf"\[(\d+)\]\s*[:.\-)]?\s*(?:(?:quality\s+|complexity\s+)?(?:score|rating)\s*)?[:=]?\s*({NUMBER}(?:\s*/\s*{NUMBER})?)(?![\d.])",
    re.I,
)


def indexed_scores(text: str, n: int, scale: tuple[float, float], key: str = "scores",
                   range_checked: bool = True) -> list[float]:
    """n scores, read by their `[k]` indices (1-based) or from JSON `{key: [...]}`. With `range_checked` False,
    a score outside `scale` is returned as read; a missing, extra or unreadable score is still an error."""
    for value in json_objects(text):
        if isinstance(value, dict) and key in value:
            listed = value[key]
            if not isinstance(listed, list) or len(listed) != n:
                found = len(listed) if isinstance(listed, list) else type(listed).__name__
                raise ParseError(f"expected {n} scores in '{key}', found {found}")
            return [_listed_score(v, i, scale, range_checked) for i, v in enumerate(listed)]
    found: dict[int, list[float]] = {}
    for match in _INDEXED.finditer(clean(text)):
        found.setdefault(int(match.group(1)), []).append(
            _number(match.group(2), scale, f"score [{match.group(1)}]", range_checked))
    wanted = list(range(1, n + 1))
    if sorted(found) != wanted:
        shown = ", ".join(f"[{k}]" for k in sorted(found)) or "none"
        raise ParseError(f"expected scores for [1]..[{n}], found {shown}")
    return [found[k][-1] for k in wanted]


def _listed_score(value: Any, i: int, scale: tuple[float, float], range_checked: bool) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ParseError(f"score {i + 1} is {value!r}, not a number")
    return check_range(float(value), *scale, f"score {i + 1}") if range_checked else float(value)


_LABELLED = re.compile(rf"(?:rating|score)\s*[:=]?\s*(\[\[\s*{NUMBER}\s*\]\]|{NUMBER}(?:\s*/\s*{NUMBER})?)", re.I)
_DOUBLE_BRACKET = re.compile(rf"\[\[\s*({NUMBER})\s*\]\]")


def single_rating(text: str, scale: tuple[float, float], key: str = "rating") -> float:
    """One rating: JSON `{key: x}`, else the last `[[x]]`, else the last `Rating: x` / `Score: x`, else an answer
    that is nothing but a number."""
    for value in json_objects(text):
        if isinstance(value, dict) and key in value:
            if not isinstance(value[key], (int, float)) or isinstance(value[key], bool):
                raise ParseError(f"'{key}' is {value[key]!r}, not a number")
            return check_range(float(value[key]), *scale, key)
    plain = clean(text)
    brackets = _DOUBLE_BRACKET.findall(plain)
    if brackets:
        return check_range(float(brackets[-1]), *scale, key)
    labelled = _LABELLED.findall(plain)
    if labelled:
        return _number(labelled[-1].strip("[] "), scale, key)
    if re.fullmatch(rf"\s*{NUMBER}\s*(?:/\s*{NUMBER})?\s*\.?\s*", plain):
        return _number(plain.strip().rstrip("."), scale, key)
    raise ParseError(f"expected a {key} on the scale {scale[0]:g}-{scale[1]:g} (e.g. 'Rating: [[{int(scale[1])}]]'), "
                     "found none")


_VERDICT = re.compile(r"\[\[\s*([ABC]|tie)\s*\]\]", re.I)
_FINAL = re.compile(r"final\s+verdict|verdict\s*:|final\s+answer", re.I)


def verdict(text: str) -> str:
    """'A', 'B' or 'tie' from MT-Bench tags [[A]], [[B]], [[C]] (tie)."""
    for value in json_objects(text):
        if isinstance(value, dict) and "winner" in value:
            winner = str(value["winner"]).strip().upper()
            if winner in ("A", "B"):
                return winner
            if winner in ("C", "TIE"):
                return "tie"
            raise ParseError(f"'winner' is {value['winner']!r}; expected A, B or tie")
    plain = clean(text)

    def tags(part: str) -> list[str]:
        return [("tie" if t.upper() in ("C", "TIE") else t.upper()) for t in _VERDICT.findall(part)]

    final = list(_FINAL.finditer(plain))
    if final:
        after = tags(plain[final[-1].end():])
        if after:
            return after[0]
    found = tags(plain)
    if not found:
        raise ParseError("expected a verdict [[A]], [[B]] or [[C]] (tie), found none")
    if len(set(found)) > 1:
        raise ParseError(f"ambiguous: the answer gives {', '.join(f'[[{t}]]' for t in dict.fromkeys(found))} "
                         "with no final verdict")
    return found[0]


_TEXT_BLOCK = re.compile(r"^[\s#>*-]*(?:output\s+for\s+)?text\s*(\d+)\b", re.I | re.M)
_RATIONALE = re.compile(r"rationale\s*:\s*(.*)", re.I | re.S)


def text_blocks(text: str, n: int, scale: tuple[float, float]) -> tuple[list[float], list[str]]:
    """UltraFeedback answers: a block per `Text k` with `Rating: x` and `Rationale: ...`, all k in 1..n."""
    for value in json_objects(text):
        if isinstance(value, dict) and "ratings" in value:
            ratings = value["ratings"]
            rationales = value.get("rationales") or [""] * (len(ratings) if isinstance(ratings, list) else 0)
            if not isinstance(ratings, list) or len(ratings) != n:
                found = len(ratings) if isinstance(ratings, list) else repr(ratings)
                raise ParseError(f"expected {n} ratings, found {found}")
            return [check_range(float(r), *scale, f"rating {i + 1}") for i, r in enumerate(ratings)], list(rationales)
    plain = clean(text)
    starts = [(m.start(), int(m.group(1))) for m in _TEXT_BLOCK.finditer(plain)]
    blocks: dict[int, str] = {}
    for (start, k), (end, _) in zip(starts, [*starts[1:], (len(plain), 0)]):
        body = plain[start:end]
        if _LABELLED.search(body):
            blocks[k] = body  # a later block for the same text replaces an earlier mention
    if sorted(blocks) != list(range(1, n + 1)):
        shown = ", ".join(f"Text {k}" for k in sorted(blocks)) or "none"
        raise ParseError(f"expected a rating for Text 1..Text {n}, found {shown}")
    ratings, rationales = [], []
    for k in range(1, n + 1):
        rating = blocks[k].split("Rationale")[0].split("rationale")[0]
        ratings.append(single_rating(rating, scale, f"rating of Text {k}"))
        rationale = _RATIONALE.search(blocks[k])
        rationales.append(rationale.group(1).strip() if rationale else "")
    return ratings, rationales


def regex_value(text: str, pattern: str) -> str:
    """The first group of the last match of a user's regex."""
    matches = list(re.finditer(pattern, text, re.S))
    if not matches:
        raise ParseError(f"the answer does not match {pattern!r}")
    last = matches[-1]
    return last.group(1) if last.groups() else last.group(0)

