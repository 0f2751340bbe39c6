"""Prefix-shared scoring: rows that share a prefix run it once, and every row scores as it does alone.

The reference is computed here, not by rewardmill: the model's own `*ForSequenceClassification` forward on one
unpadded row of the same token ids, fp32. Rows are built from token ids directly, so that the shared prefix is
exactly as long as each case asks (1 token, about half the row, all of the row but its last token).
"""

import random

import pytest
import torch
import toy_models
from sample_data import conversations
from transformers import AutoModelForSequenceClassification

from rewardmill import RewardModel
from rewardmill.errors import OptionsError
from rewardmill.reward_models.adapters.base import Encoded
from rewardmill.reward_models.engines.prefix_groups import find_groups

TOLERANCE = 1e-5
FAMILIES = ("llama", "qwen2", "gemma1", "mistral")


@pytest.fixture(scope="module")
def eligible_dirs(tmp_path_factory, model_dirs):
    root = tmp_path_factory.mktemp("sharing")
    dirs = {family: model_dirs[family] for family in ("llama", "qwen2")}
    for family in ("gemma1", "mistral"):
        dirs[family] = toy_models.build_decoder_rm(family, root / family, seed=3)
    return dirs


def reference(directory, rows: list[list[int]]) -> list[float]:
    model = AutoModelForSequenceClassification.from_pretrained(directory, dtype=torch.float32).eval()
    with torch.no_grad():
        return [model(torch.tensor([ids])).logits[0, 0].item() for ids in rows]


def ordinary_ids(model) -> list[int]:
    """Ids of ordinary tokens (no special or pad token, so that every row is read at its last token)."""
    specials = set(model.adapter.tokenizer.all_special_ids) | {model.adapter.pad_token_id}
    return [i for i in range(model.adapter.model.config.vocab_size) if i not in specials]


def plain_ids(model, rng: random.Random, n: int, first: int | None = None) -> list[int]:
    vocabulary = ordinary_ids(model)
    ids = [rng.choice(vocabulary) for _ in range(n)]
    return ids if first is None else [first, *ids[1:]]


def grouped_rows(model, seed: int = 0) -> tuple[list[list[int]], list[tuple[int, int]]]:
    """Groups of 2, 4 and 16 rows sharing 1 token, 20 tokens, or all but the last token, mixed with unique rows
    and shuffled; returns the rows and (group size, shared length) of each group. Each group and each unique row
    starts with its own token, so nothing else is shared."""
    rng = random.Random(seed)
    firsts = iter(rng.sample(ordinary_ids(model), 18))
    rows, cases = [], []
    for size in (2, 4, 16):
        for shared in (1, 20, 30):
            prefix = plain_ids(model, rng, shared, first=next(firsts))
            for _ in range(size):
                rows.append(prefix + plain_ids(model, rng, 1 if shared == 30 else rng.randint(3, 25)))
            cases.append((size, shared))
    rows += [plain_ids(model, rng, rng.randint(5, 40), first=next(firsts)) for _ in range(9)]
    rng.shuffle(rows)
    return rows, cases


def score_ids(model, rows: list[list[int]]) -> list[float]:
    return [r["score"] for r in model.engine.run([Encoded(ids) for ids in rows])]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("packing", [None, False])  # None: the grouped rows unpadded (test_unpadded)
def test_grouped_rows_score_as_alone(eligible_dirs, family, padding_side, packing):
    model = RewardModel.from_pretrained(str(eligible_dirs[family]), padding_side=padding_side, batch_size=256,
                                        max_tokens_per_batch=4096, cpu_kernel="torch", min_shared_tokens=1,
                                        packing=packing)
    assert model.engine.prefix_sharing, model.engine.describe_sharing()
    assert model.engine.unpadded is (packing is None)
    rows, cases = grouped_rows(model)
    groups = model.engine.groups([Encoded(ids) for ids in rows])
    found = sorted((len(g.members), g.shared) for g in groups if len(g.members) > 1)
    assert found == sorted(cases)  # every group found, at exactly its shared length; the unique rows alone
    got = score_ids(model, rows)
    want = reference(eligible_dirs[family], rows)
    worst = max(abs(a - b) for a, b in zip(got, want))
    assert worst <= TOLERANCE, f"max difference {worst:.2e}"


def test_a_continuation_does_not_depend_on_its_siblings(eligible_dirs):
    model = RewardModel.from_pretrained(str(eligible_dirs["llama"]), cpu_kernel="torch")
    rng = random.Random(5)
    prefix = plain_ids(model, rng, 40)
    rows = [prefix + plain_ids(model, rng, 12) for _ in range(4)]
    assert [len(g.members) for g in model.engine.groups([Encoded(r) for r in rows])] == [4]
    before = score_ids(model, rows)
    for k in range(4):  # each sibling in turn, wherever it sits in the group's row
        changed = [list(r) for r in rows]
        changed[k][-6:] = plain_ids(model, rng, 6)  # same length, so the same shapes
        after = score_ids(model, changed)
        assert after[k] != before[k]
        for i in set(range(4)) - {k}:
            assert abs(after[i] - before[i]) <= 1e-6, (k, i, before[i], after[i])


def test_real_conversations_sharing_a_prompt_score_as_the_reference(eligible_dirs):
    """The default path: several responses to one prompt, as `score` receives them from a file, against HF's own
    `apply_chat_template` ids and forward, one row at a time."""
    from test_fidelity import decoder_reference

    convs = conversations(12)
    prompts = [c[:-1] for c in convs[:4]]
    rows = [p + [{"role": "assistant", "content": f"answer number {k}: " + "words " * k}] for p in prompts
            for k in range(4)] + convs[4:]
    shared = RewardModel.from_pretrained(str(eligible_dirs["qwen2"]))
    alone = RewardModel.from_pretrained(str(eligible_dirs["qwen2"]), prefix_sharing=False)
    assert shared.engine.prefix_sharing and not alone.engine.prefix_sharing
    assert "off (--no-prefix-sharing)" in alone.describe()["prefix sharing"]
    encoded = [shared.adapter.encode(row) for row in rows]
    assert sorted(len(g.members) for g in shared.engine.groups(encoded))[-4:] == [4, 4, 4, 4]
    want = decoder_reference(eligible_dirs["qwen2"], rows)
    for model in (shared, alone):
        assert max(abs(a - b) for a, b in zip(model.score(rows), want)) <= TOLERANCE


def test_a_sliding_window_model_groups_only_rows_within_its_window(model_dirs):
    """The toy Gemma 3 has a 24-token sliding window: longer rows score exactly as without sharing."""
    directory = model_dirs["gemma"]
    model = RewardModel.from_pretrained(str(directory), cpu_kernel="torch", min_shared_tokens=4)
    assert model.engine.prefix_sharing and "sliding window" in model.describe()["prefix sharing"]
    rng = random.Random(2)
    short_prefix, long_prefix = plain_ids(model, rng, 10), plain_ids(model, rng, 30)
    short = [short_prefix + plain_ids(model, rng, 8) for _ in range(3)]
    long = [long_prefix + plain_ids(model, rng, 10) for _ in range(3)]
    groups = model.engine.groups([Encoded(r) for r in short + long])
    assert sorted(len(g.members) for g in groups) == [1, 1, 1, 3]
    got = score_ids(model, short + long)
    off = RewardModel.from_pretrained(str(directory), cpu_kernel="torch", prefix_sharing=False)
    assert got[3:] == score_ids(off, long)
    want = reference(directory, short)
    assert max(abs(a - b) for a, b in zip(got[:3], want)) <= TOLERANCE


def test_a_row_beyond_the_window_batched_with_a_group_keeps_its_sliding_window(model_dirs):
    """A row longer than the toy Gemma 3's 24-token window, in the same batch as a group (lengths close enough for
    one batch), must still run its sliding layers windowed: the group's block mask would let it see everything."""
    directory = model_dirs["gemma"]
    model = RewardModel.from_pretrained(str(directory), cpu_kernel="torch", min_shared_tokens=4)
    rng = random.Random(4)
    prefix = plain_ids(model, rng, 10)
    short = [prefix + plain_ids(model, rng, 8) for _ in range(3)]  # one group: 10 + 3 x 8 = 34 tokens computed
    long = [plain_ids(model, rng, 33) for _ in range(3)]
    encoded = [Encoded(r) for r in short + long]
    assert len(model.engine.batch_indices(encoded)) == 1  # all six rows in one batch
    assert [len(g.members) for g in model.engine.groups(encoded)].count(3) == 1
    got = score_ids(model, short + long)
    want = reference(directory, short + long)
    assert max(abs(a - b) for a, b in zip(got, want)) <= TOLERANCE


def test_a_bidirectional_decoder_is_refused_and_scores_as_alone(tmp_path):
    """Gemma's `use_bidirectional_attention` makes every token see the whole row: a prefix's tokens would see its
    continuations, so neither sharing nor the causal unpadded rows may run; the scores stay the one-row forward's."""
    tokenizer = toy_models.gemma_tokenizer()
    config = toy_models._decoder_config("gemma", tokenizer)
    config.use_bidirectional_attention = True
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model = RewardModel.from_pretrained(str(tmp_path), cpu_kernel="torch", min_shared_tokens=1)
    assert not model.engine.prefix_sharing and not model.engine.unpadded
    assert "bidirectional" in model.describe()["prefix sharing"] and "bidirectional" in model.describe()["unpadded"]
    rng = random.Random(5)
    prefix = plain_ids(model, rng, 12)
    rows = [prefix + plain_ids(model, rng, rng.randint(2, 9)) for _ in range(4)]
    got = score_ids(model, rows)
    want = reference(tmp_path, rows)
    assert max(abs(a - b) for a, b in zip(got, want)) <= TOLERANCE
    with pytest.raises(OptionsError, match="bidirectional"):
        RewardModel.from_pretrained(str(tmp_path), prefix_sharing=True)


def test_the_decoder_layers_are_the_language_models_not_an_earlier_stack_of_the_same_length(model_dirs):
    """A multimodal model may hold a vision tower with as many layers as its text decoder, registered first: the
    last-layer pruning and the causality check must look at the decoder transformers names (`get_decoder`)."""
    from rewardmill.reward_models.adapters.sharing import decoder_layers
    from rewardmill.reward_models.adapters.unpadded import last_layer_token_modules

    model = AutoModelForSequenceClassification.from_pretrained(model_dirs["llama"], dtype=torch.float32)
    decoder = model.model.layers
    tower = torch.nn.ModuleList(torch.nn.Linear(2, 2) for _ in decoder)
    model._modules = {"vision_tower": tower, **model._modules}
    assert next(m for m in model.modules() if isinstance(m, torch.nn.ModuleList)) is tower
    assert decoder_layers(model) is decoder
    assert last_layer_token_modules(model) == [decoder[-1].mlp, decoder[-1].self_attn.o_proj]


def test_ineligible_models_keep_todays_path_and_say_why(model_dirs):
    bert = RewardModel.from_pretrained(str(model_dirs["bert"]))
    assert not bert.engine.prefix_sharing
    assert bert.describe()["prefix sharing"].startswith("off: a bidirectional encoder")
    with pytest.raises(OptionsError, match="--prefix-sharing.*cannot share prefixes"):
        RewardModel.from_pretrained(str(model_dirs["bert"]), prefix_sharing=True)


@pytest.mark.parametrize("config_change, why", [
    ({"rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}}, "dynamic RoPE"),
    ({"alibi": True}, "ALiBi"),
])
def test_position_schemes_that_depend_on_the_sequence_are_refused(model_dirs, config_change, why):
    from rewardmill.reward_models.adapters.sharing import prefix_sharing_refusal

    model = RewardModel.from_pretrained(str(model_dirs["llama"]))
    config = model.adapter.model.config
    for name, value in config_change.items():
        setattr(config, name, value)
    assert why in prefix_sharing_refusal(model.adapter.model, True)


def test_flash_attention_is_refused_and_flex_attention_shares(eligible_dirs):
    from rewardmill.reward_models.adapters.sharing import prefix_sharing_refusal

    model = RewardModel.from_pretrained(str(eligible_dirs["qwen2"]), attn_implementation="flex_attention",
                                        cpu_kernel="torch", min_shared_tokens=1)
    assert model.engine.prefix_sharing
    rows, _ = grouped_rows(model, seed=7)
    got = score_ids(model, rows)
    want = reference(eligible_dirs["qwen2"], rows)
    assert max(abs(a - b) for a, b in zip(got, want)) <= TOLERANCE
    object.__setattr__(model.adapter.model.config, "_attn_implementation_internal", "flash_attention_2")
    assert "flash_attention_2 attention takes no block mask" in prefix_sharing_refusal(model.adapter.model, True)


def test_groups_are_found_whatever_the_order_and_never_exceed_the_budget():
    rng = random.Random(0)
    prompts = [[rng.randrange(1000) for _ in range(50)] for _ in range(5)]
    rows = [p + [rng.randrange(1000) for _ in range(rng.randint(1, 30))] for p in prompts for _ in range(6)]
    rows.append([7] * 10)  # shares nothing
    order = list(range(len(rows)))
    rng.shuffle(order)
    groups = find_groups([rows[i] for i in order], min_shared=32, max_tokens=10_000)
    members = sorted(tuple(sorted(order[m] for m in g.members)) for g in groups)
    assert members == sorted([tuple(range(k * 6, k * 6 + 6)) for k in range(5)] + [(30,)])
    assert all(g.shared == 50 for g in groups if len(g.members) > 1)
    # a budget of 50 + 3 continuations' worth cuts each prompt's 6 rows into consecutive groups
    small = find_groups(rows, min_shared=32, max_tokens=50 + 3 * 30)
    assert all(g.shared + sum(len(rows[m]) - g.shared for m in g.members) <= 140 for g in small)
    assert sorted(m for g in small for m in g.members) == list(range(len(rows)))
    # too little shared: nobody groups
    assert all(len(g.members) == 1 for g in find_groups(rows, min_shared=51, max_tokens=10_000))


def test_inspect_says_whether_a_model_shares_prefixes_and_why_not(model_dirs):
    from typer.testing import CliRunner

    from rewardmill.cli import app

    runner = CliRunner()
    llama = runner.invoke(app, ["inspect", str(model_dirs["llama"])])
    # the threshold follows the attention path: piece by piece (unpadded, the CPU default) shares from the first
    # token; under a block mask (padded rows) from 32
    assert llama.exit_code == 0 and "prefix sharing" in llama.output and "on: rows sharing any leading" in llama.output
    padded = runner.invoke(app, ["inspect", str(model_dirs["llama"]), "--no-packing"])
    assert padded.exit_code == 0 and "on: rows sharing at least 32" in padded.output
    bert = runner.invoke(app, ["inspect", str(model_dirs["bert"])])
    assert "off: a bidirectional encoder" in bert.output
    off = runner.invoke(app, ["inspect", str(model_dirs["llama"]), "--no-prefix-sharing"])
    assert off.exit_code == 0 and "off (--no-prefix-sharing)" in off.output


def test_identical_rows_in_a_group_score_identically(eligible_dirs):
    """Two equal answers are a tie (DPO skips it): they must not differ in the last bits by where they sit."""
    model = RewardModel.from_pretrained(str(eligible_dirs["llama"]), cpu_kernel="torch")
    rng = random.Random(9)
    prefix = plain_ids(model, rng, 40)
    a, b = prefix + plain_ids(model, rng, 3), prefix + plain_ids(model, rng, 5)
    scores = score_ids(model, [a, b, a, a])
    assert scores[0] == scores[2] == scores[3] and scores[0] != scores[1]


@pytest.mark.parametrize("sharing", [True, False])
@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_identical_rows_tie_exactly_wherever_they_sit(eligible_dirs, sharing, batch_size):
    """A row's only two answers equal (no group forms), or equal rows in different batches: still an exact tie,
    since each distinct row runs once."""
    model = RewardModel.from_pretrained(str(eligible_dirs["llama"]), cpu_kernel="torch", prefix_sharing=sharing,
                                        batch_size=batch_size)
    rng = random.Random(11)
    a, b, c = (plain_ids(model, rng, n) for n in (7, 9, 40))
    rows = [a, a, b, c, a, c, b]
    calls = []
    step = model.engine.step
    model.engine.step = lambda items: calls.append(len(items)) or step(items)
    scores = score_ids(model, rows)
    assert scores[0] == scores[1] == scores[4] and scores[2] == scores[6] and scores[3] == scores[5]
    assert len({scores[0], scores[2], scores[3]}) == 3
    assert sum(calls) == 3  # each distinct row ran once


def test_a_custom_head_shares_only_when_its_code_declares_it(tmp_path):
    import remote_models

    plain = RewardModel.from_pretrained(str(remote_models.build_value(tmp_path / "plain")), trust_remote_code=True)
    assert not plain.engine.prefix_sharing
    assert "does not declare supports_prefix_sharing" in plain.describe()["prefix sharing"]
    directory = remote_models.build_value(tmp_path / "declared", declares_sharing=True)
    model = RewardModel.from_pretrained(str(directory), trust_remote_code=True, cpu_kernel="torch")
    assert model.adapter.kind == "value-head" and model.engine.prefix_sharing, model.describe()["prefix sharing"]
    prompt = [{"role": "user", "content": "Tell me about the sea and the ships that sail on it. " * 3}]
    convs = [prompt + [{"role": "assistant", "content": f"Answer {k}: " + "waves " * k}] for k in range(4)]
    encoded = [model.adapter.encode(c) for c in convs]
    assert [len(g.members) for g in model.engine.groups(encoded)] == [4]
    want = remote_models.own_scores(directory, convs, read="values")
    got = model.score(convs)
    assert max(abs(a - b) for a, b in zip(got, want)) <= TOLERANCE
