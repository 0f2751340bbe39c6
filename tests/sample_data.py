"""Conversations of varied length, turn count and content, for fidelity tests."""

import random

_WORDS = "the a what is capital of France Paris 2+2 = 4 please explain why how sure no yes code list python " \
         "über café naïve 東京 🙂 \t tabs and\nnew lines".split(" ")


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(low, high)))


def conversations(n: int = 24, seed: int = 0) -> list[list[dict]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        conv = []
        if i % 5 == 0:
            conv.append({"role": "system", "content": _text(rng, 1, 6)})
        for _ in range(rng.randint(1, 3)):
            conv.append({"role": "user", "content": _text(rng, 1, 25)})
            conv.append({"role": "assistant", "content": _text(rng, 0 if i % 7 == 3 else 1, 40)})
        out.append(conv)
    return out
