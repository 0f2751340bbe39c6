"""The workloads of bench_vs_vllm.py: unique conversations, hh-rlhf pairs, one prompt x 4 generations; and how
much of each is shared.

A workload holds what rewardmill's API takes (conversations, or `messages` + `generations` rows) and the
conversation of every scored response in the same order (what raw vLLM gets as token ids, the generations of a
prompt adjacent).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common import Conversation, load_hh_conversations, load_hh_pairs, load_llmbar_fours

from rewardmill.reward_models.engines.prefix_groups import common_prefix


@dataclass
class Workload:
    name: str
    description: str
    inputs: list  # conversations, or {"messages", "generations"} rows
    conversations: list[Conversation]  # one per score, in the order rewardmill returns scores

    @property
    def grouped(self) -> bool:
        return bool(self.inputs) and isinstance(self.inputs[0], dict)


def generation_rows(prompts: list[tuple[Conversation, list[str]]], name: str, description: str) -> Workload:
    inputs = [{"messages": messages, "generations": answers} for messages, answers in prompts]
    conversations = [[*messages, {"role": "assistant", "content": answer}] for messages, answers in prompts
                     for answer in answers]
    return Workload(name, description, inputs, conversations)


def unique_workload(rows: int, data_dir: Path) -> Workload:
    conversations, _ = load_hh_conversations(rows, data_dir)
    return Workload("unique", f"{rows} hh-rlhf conversations (chosen), one score each", conversations, conversations)


def pairs_workload(pairs: int, data_dir: Path) -> Workload:
    prompts = [(messages, [chosen, rejected]) for messages, chosen, rejected in load_hh_pairs(pairs, data_dir)]
    return generation_rows(prompts, "pairs", f"{pairs} hh-rlhf pairs as messages + generations rows "
                           "(the shared conversation; chosen and rejected as two generations)")


def fours_workload(prompts: int, data_dir: Path) -> Workload:
    fours = [([{"role": "user", "content": instruction}], answers)
             for instruction, answers in load_llmbar_fours(prompts, data_dir)]
    return generation_rows(fours, "gen4", f"{prompts} LLMBar instructions x 4 generations (messages + generations)")


def grouped_share(engine, encoded: list) -> float:
    """1 - computed tokens / total tokens, with the groups the transformers engine forms on these rows."""
    lengths = [len(item) for item in encoded]
    computed = sum(group.computed_length(lengths) for group in engine.groups(encoded))
    return 1 - computed / sum(lengths)


def block_reuse_share(ids: list[list[int]], block: int) -> float:
    """The share of tokens an ideal block-granular prefix cache skips, rows in order: each row's longest prefix
    shared with an earlier row, rounded down to whole blocks."""
    reused = 0
    for i, row in enumerate(ids):
        longest = max((common_prefix(row, earlier) for earlier in ids[:i]), default=0)
        reused += longest // block * block
    return reused / sum(map(len, ids))


def earlier_row_share(ids: list[list[int]]) -> float:
    """The share of tokens in each row's longest prefix shared with an earlier row (token-exact)."""
    return sum(max((common_prefix(row, e) for e in ids[:i]), default=0) for i, row in enumerate(ids)) / sum(
        map(len, ids))
