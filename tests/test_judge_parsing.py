"""A corpus of realistic judge answers, each with the parse or the error it must give. Covers what today's parsers
get wrong: preambles, blank lines, bold, `4/5`, fenced JSON, restated scores, short lists, tags in the reasoning."""

import re

import pytest

from rewardmill.judges.parsing import ParseError, indexed_scores, single_rating, text_blocks, verdict

SCALE6 = (1, 6)  # the quality/complexity scorers rate each of n responses on 1..6 here

# (answer, n, expected scores or an error fragment)
INDEXED = [
    ("[1] Score: 5\n[2] Score: 3\n[3] Score: 1", 3, [5, 3, 1]),  # seed 002's example answer
    ('{  "scores": [1, 2, 3] }', 3, [1, 2, 3]),  # seed 002's structured-output answer
    ("Here is my evaluation.\n\n[1] Score: 4\n\n[2] Score: 2", 2, [4, 2]),  # preamble and blank lines
    ("**[1] Score:** 6\n**[2] Score:** 1", 2, [6, 1]),  # bold
    ("[1] Score: 4/6\n[2] Score: 5/6", 2, [4, 5]),
    ("[1]: 3\n[2]: 5", 2, [3, 5]),
    ("[2] Score: 1\n[1] Score: 6", 2, [6, 1]),  # out of order: read by index, not by line
    ("Let me think. [1] looks weaker than [2].\n[1] Score: 2\n[2] Score: 5", 2, [2, 5]),  # indices in the reasoning
    ("[1] Score: 3\n[2] Score: 4\nOn reflection:\n[1] Score: 2", 2, [2, 4]),  # restated: the last mention wins
    ("```json\n{\"scores\": [4, 5, 6]}\n```", 3, [4, 5, 6]),
    ("Sure! ```json\n{\"scores\": [2, 3]}\n``` Hope this helps.", 2, [2, 3]),
    ("[1] Quality score: 5\n[2] Quality score: 4", 2, [5, 4]),
    ("[1] Score: 4.5\n[2] Score: 2.5", 2, [4.5, 2.5]),
    ("[1] Rating = 3\n[2] Rating = 3", 2, [3, 3]),
    ("[1] Score: 5\n[2] Score: 3", 3, "expected scores for [1]..[3], found [1], [2]"),  # one short: never padded
    ("[1] Score: 5\n[3] Score: 3", 2, "expected scores for [1]..[2], found [1], [3]"),
    ('{"scores": [5, 4]}', 3, "expected 3 scores in 'scores', found 2"),
    ('{"scores": [5, "good", 1]}', 3, "score 2 is 'good', not a number"),
    ("[1] Score: 9\n[2] Score: 3", 2, "score [1] is 9, outside the scale 1-6"),
    ("[1] Score: 4/5\n[2] Score: 3/5", 2, "is given as 4/5 but the scale is 1-6"),
    ("Both responses are good.", 2, "expected scores for [1]..[2], found none"),
    ("", 1, "found none"),
]


@pytest.mark.parametrize("answer,n,expected", INDEXED)
def test_indexed_scores(answer, n, expected):
    if isinstance(expected, str):
        with pytest.raises(ParseError, match=expected.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
            indexed_scores(answer, n, SCALE6)
    else:
        assert indexed_scores(answer, n, SCALE6) == expected


# distilabel 1.5.3's QualityScorer.format_output (ComplexityScorer: re.search instead of re.match), written out as
# the reference for what the seed accepts: the first n lines, `[k] score: <digits>` at a line's start, any value.
_DISTILABEL_LINE = re.compile(r"\[\d+\] score: (\d+)", re.IGNORECASE)


def distilabel_quality_scores(output: str, n: int) -> list:
    scores = []
    for i, line in enumerate(output.split("\n")):
        match = _DISTILABEL_LINE.match(line)
        scores.append(float(match.group(1)) if match else None)
        if i == n - 1:
            break
    return scores


SEED_002_ANSWER = "[1] Score: 5\n[2] Score: 3\n[3] Score: 1"  # seed 002's example: scores [5, 3, 1], 3 responses

# Answers distilabel reads in full, with scores outside the 1..n the prompt states: kept as read.
OUTSIDE_THE_SCALE = [
    (SEED_002_ANSWER, 3),
    ("[1] Score: 4\n[2] Score: 1", 2),  # n + 1, which distilabel's own template reserves
    ("[1] score: 0\n[2] score: 2", 2),
    ("[1] Score: 10\n[2] Score: 3\n[3] Score: 3\n[4] Score: 1", 4),
]


@pytest.mark.parametrize("answer,n", OUTSIDE_THE_SCALE)
def test_scores_outside_the_stated_scale_are_read_as_distilabel_reads_them(answer, n):
    want = distilabel_quality_scores(answer, n)
    assert None not in want and len(want) == n
    assert indexed_scores(answer, n, (1, n), range_checked=False) == want
    with pytest.raises(ParseError, match=f"outside the scale 1-{n}"):
        indexed_scores(answer, n, (1, n))


def test_seed_002_answer_parses_to_5_3_1():
    assert indexed_scores(SEED_002_ANSWER, 3, (1, 3), range_checked=False) == [5, 3, 1]
    assert indexed_scores('{"scores": [5, 3, 1]}', 3, (1, 3), range_checked=False) == [5, 3, 1]


@pytest.mark.parametrize("answer,n,problem", [
    ("[1] Score: 5\n[2] Score: 3", 3, "expected scores for [1]..[3], found [1], [2]"),  # short: distilabel pads None
    ('{"scores": [5, 3]}', 3, "expected 3 scores in 'scores', found 2"),
    ("[1] Score: 5\n[2] Score: good\n[3] Score: 1", 3, "expected scores for [1]..[3], found [1], [3]"),
    ('{"scores": [5, null, 1]}', 3, "score 2 is None, not a number"),
    ("[1] Score: 5/5\n[2] Score: 3/5\n[3] Score: 1/5", 3, "is given as 5/5 but the scale is 1-3"),
])
def test_keeping_out_of_scale_scores_is_still_strict_about_missing_ones(answer, n, problem):
    with pytest.raises(ParseError, match=re.escape(problem)):
        indexed_scores(answer, n, (1, n), range_checked=False)


RATINGS = [
    ("Rating: [[7]]", 7),  # MT-Bench single-answer format
    ("The answer is correct but terse. Rating: [[6]]", 6),
    ("I'd give it a 3 at first glance, but after checking the math... Rating: [[8]]", 8),  # final, not first number
    ("**Rating:** 9", 9),
    ("Score: 4/10", 4),
    ("7", 7),
    ("7.", 7),
    ('{"rating": 5}', 5),
    ("```json\n{\"rating\": 2}\n```", 2),
    ("Rating: 8.5", 8.5),
    ("Rating: [[11]]", "rating is 11, outside the scale 1-10"),
    ("Rating: 8/5", "given as 8/5 but the scale is 1-10"),
    ("A thoughtful, accurate answer.", "expected a rating on the scale 1-10"),
    ('{"rating": "high"}', "'rating' is 'high', not a number"),
    ("1.2\n\nI'm sorry, I can't rate that.", "expected a rating"),  # SmolLM2's real answer: not a bare number
]


@pytest.mark.parametrize("answer,expected", RATINGS)
def test_single_rating(answer, expected):
    if isinstance(expected, str):
        with pytest.raises(ParseError, match=expected.replace("[", r"\[")):
            single_rating(answer, (1, 10))
    else:
        assert single_rating(answer, (1, 10)) == expected


VERDICTS = [
    ("Assistant A is more accurate. [[A]]", "A"),
    ("[[B]]", "B"),
    ("Both are equally good. [[C]]", "tie"),
    ("Final verdict: [[B]]", "B"),
    ("If A had cited sources it would earn [[A]]; as it stands, my final verdict is [[B]]", "B"),
    ("**Final Verdict:** [[A]]", "A"),
    ('{"winner": "A"}', "A"),
    ('{"winner": "tie"}', "tie"),
    ("A would get [[A]] and B would get [[B]].", "ambiguous: the answer gives [[A]], [[B]] with no final verdict"),
    ("Assistant A is better.", "expected a verdict"),
    ('{"winner": "D"}', "expected A, B or tie"),
]


@pytest.mark.parametrize("answer,expected", VERDICTS)
def test_verdict(answer, expected):
    if expected in ("A", "B", "tie"):
        assert verdict(answer) == expected
    else:
        with pytest.raises(ParseError, match=expected.replace("[", r"\[")):
            verdict(answer)


ULTRAFEEDBACK = [
    ("#### Output for Text 1\nRating: 4\nRationale: Accurate and clear.\n\n#### Output for Text 2\nRating: 2\n"
     "Rationale: Misses the point; unlike Text 1 it is vague.", 2, ([4, 2], ["Accurate and clear.",
                                                                           "Misses the point; unlike Text 1 it is vague."])),
    ("Text 2\nRating: 5\nRationale: Best.\nText 1\nRating: 3\nRationale: Fine.", 2, ([3, 5], ["Fine.", "Best."])),
    ("**Text 1**\n**Rating:** 1\n**Rationale:** Wrong.", 1, ([1], ["Wrong."])),
    ('{"ratings": [5, 1], "rationales": ["good", "bad"]}', 2, ([5, 1], ["good", "bad"])),
    ("#### Output for Text 1\nRating: 4\nRationale: ok", 2, "expected a rating for Text 1..Text 2, found Text 1"),
    ("#### Output for Text 1\nRating: 7\nRationale: great", 1, "outside the scale 1-5"),
]


@pytest.mark.parametrize("answer,n,expected", ULTRAFEEDBACK)
def test_ultrafeedback_blocks(answer, n, expected):
    if isinstance(expected, str):
        with pytest.raises(ParseError, match=expected.replace(".", r"\.")):
            text_blocks(answer, n, (1, 5))
    else:
        assert text_blocks(answer, n, (1, 5)) == expected


def test_the_corpus_is_large_enough():
    assert len(INDEXED) + len(RATINGS) + len(VERDICTS) + len(ULTRAFEEDBACK) >= 40
