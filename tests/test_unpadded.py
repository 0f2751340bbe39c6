"""Unpadded batches (the CPU default for SDPA decoders): the linear layers run on the real tokens only, the
attention in padded rows. Scores must equal the single-row reference written in test_fidelity / test_prefix_sharing,
the model must really run unpadded, and everywhere it cannot be exact the engine must say why and keep padding.
"""

import pytest
import torch
import toy_models
from test_fidelity import CONVS, assert_close, decoder_reference
from test_prefix_sharing import reference

from rewardmill import RewardModel
from rewardmill.reward_models.adapters import unpadded
from rewardmill.reward_models.adapters.base import Encoded


@pytest.fixture(scope="module")
def mistral_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("unpadded")
    return {"mistral": toy_models.build_decoder_rm("mistral", root / "mistral", seed=4),
            "gemma1": toy_models.build_decoder_rm("gemma1", root / "gemma1", seed=5)}


@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize("batch_size, tokens", [(1, 1024), (4, 1024), (16, 300), (64, 4096)])
def test_unpadded_is_the_cpu_default_and_equals_the_single_row_reference(model_dirs, family, batch_size, tokens):
    model = RewardModel.from_pretrained(str(model_dirs[family]), batch_size=batch_size, max_tokens_per_batch=tokens)
    assert model.engine.unpadded and "unpadded" in model.describe()["batching"]
    assert_close(model.score(CONVS), decoder_reference(model_dirs[family], CONVS))


@pytest.mark.parametrize("family", ["mistral", "gemma1"])
@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_other_families_and_padding_sides(mistral_dirs, family, padding_side):
    model = RewardModel.from_pretrained(str(mistral_dirs[family]), padding_side=padding_side, batch_size=8)
    assert model.engine.unpadded
    assert_close(model.score(CONVS), decoder_reference(mistral_dirs[family], CONVS))


def test_unpadded_batches_default_to_a_larger_budget_than_padded_ones(model_dirs):
    """Real tokens only: the measured CPU default is 32 rows and 2048 tokens; padded rows keep 16 and 1024."""
    unpadded_engine = RewardModel.from_pretrained(str(model_dirs["llama"])).engine
    padded_engine = RewardModel.from_pretrained(str(model_dirs["llama"]), packing=False).engine
    assert unpadded_engine.unpadded and not padded_engine.unpadded
    assert (unpadded_engine.options.batch_size, unpadded_engine.options.max_tokens_per_batch) == (32, 2048)
    assert (padded_engine.options.batch_size, padded_engine.options.max_tokens_per_batch) == (16, 1024)
    assert "up to 32 rows and 2048 tokens" in unpadded_engine.describe()["batching"]
    assert "the last layer's MLP on the tokens read only" in unpadded_engine.describe()["batching"]


def test_the_linear_layers_see_only_real_tokens(model_dirs):
    model = RewardModel.from_pretrained(str(model_dirs["llama"]), batch_size=64, max_tokens_per_batch=100_000,
                                        prefix_sharing=False)  # every row's every token, none shared
    encoded = [model.adapter.encode(c) for c in CONVS[:6]]
    seen = []
    layer = next(m for m in model.adapter.model.modules() if isinstance(m, torch.nn.Linear))
    handle = layer.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape[:-1])))
    try:
        model.engine.run(encoded)
    finally:
        handle.remove()
    assert seen == [(1, sum(len(e) for e in encoded))]


@pytest.mark.parametrize("sharing", [False, True])
def test_the_last_layer_runs_its_mlp_and_output_projection_on_the_read_tokens_only(model_dirs, sharing):
    """After the last attention nothing mixes tokens, so the last layer's per-token work is spent on the tokens
    the head reads; every earlier layer still sees every real token. Scores equal transformers' one-row forward."""
    model = RewardModel.from_pretrained(str(model_dirs["llama"]), batch_size=64, max_tokens_per_batch=100_000,
                                        prefix_sharing=sharing)
    items = [model.adapter.encode(c) for c in CONVS[:5]] + [Encoded(model.adapter.encode(CONVS[0]).input_ids + [9])]
    layers = model.adapter.base.layers
    seen = []
    watched = [layers[0].mlp, layers[-1].mlp, layers[0].self_attn.o_proj, layers[-1].self_attn.o_proj]
    handles = [m.register_forward_hook(lambda module, args, out: seen.append((module, tuple(args[0].shape[:-1]),
                                                                              tuple(out.shape[:-1]))))
               for m in watched]
    try:
        got = [r["score"] for r in model.engine.run(items)]
    finally:
        for handle in handles:
            handle.remove()
    shapes = {module: (seen_in, seen_out) for module, seen_in, seen_out in seen}
    computed = shapes[layers[0].mlp][0][1]  # every real token (a shared prefix once)
    total = sum(len(e) for e in items)
    assert computed == total if not sharing else computed <= total - len(items[0])  # the last row repeats the first
    everything = ((1, computed), (1, computed))
    assert shapes[layers[0].mlp] == shapes[layers[0].self_attn.o_proj] == everything
    assert shapes[layers[-1].mlp] == shapes[layers[-1].self_attn.o_proj] == ((1, len(items)), (1, computed))
    assert_close(got, reference(model_dirs["llama"], [item.input_ids for item in items]))
    unpadded.read_rows_only(model.adapter.model, on=False)  # as a benchmark on a model's first layers turns it off
    assert "last layer" not in model.describe()["batching"]
    seen.clear()
    handle = layers[-1].mlp.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape[:-1])))
    try:
        assert_close([r["score"] for r in model.engine.run(items)], got)
    finally:
        handle.remove()
    assert seen == [(1, computed)]


@pytest.mark.parametrize("wrong, why", [("embed_tokens", "scored differently"), ("self_attn", "failed unpadded")])
def test_a_last_layer_pruning_that_would_change_scores_is_caught_by_the_probe(model_dirs, monkeypatch, wrong, why):
    """If the modules found for the last layer were not per-token ones (here: the embeddings, or the attention),
    the probe at load sees it, and the engine keeps padded rows and says why."""
    def found(model):
        base = model.model
        return [base.embed_tokens if wrong == "embed_tokens" else base.layers[-1].self_attn]

    monkeypatch.setattr(unpadded, "last_layer_token_modules", found)
    model = RewardModel.from_pretrained(str(model_dirs["llama"]))
    assert not model.engine.unpadded and why in model.describe()["unpadded"]
    # the refused path leaves nothing behind: plain SDPA, and no hooks on the modules the probe tried
    assert model.adapter.model.config._attn_implementation == "sdpa"
    assert not unpadded.last_layer_reads_only(model.adapter.model)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in found(model.adapter.model))
    assert_close(model.score(CONVS[:4]), decoder_reference(model_dirs["llama"], CONVS[:4]))


def test_a_row_does_not_depend_on_the_rows_batched_with_it(model_dirs):
    model = RewardModel.from_pretrained(str(model_dirs["llama"]), batch_size=64, max_tokens_per_batch=100_000)
    alone = [model.score([c])[0] for c in CONVS[:3]]
    together = model.score(CONVS[:3] + CONVS[10:20])[:3]
    assert max(abs(a - b) for a, b in zip(alone, together)) <= 1e-5


def test_where_it_cannot_be_exact_the_engine_pads_and_says_why(model_dirs):
    cases = {
        "gemma": "sliding-window",  # the toy Gemma 3 has sliding layers
        "bert": "cannot read packed rows",
    }
    for family, why in cases.items():
        model = RewardModel.from_pretrained(str(model_dirs[family]))
        assert not model.engine.unpadded and why in model.describe()["unpadded"]
    eager = RewardModel.from_pretrained(str(model_dirs["llama"]), attn_implementation="eager")
    assert not eager.engine.unpadded and "eager attention" in eager.describe()["unpadded"]
    off = RewardModel.from_pretrained(str(model_dirs["llama"]), packing=False)
    assert not off.engine.unpadded and "padded" in off.describe()["batching"] and "unpadded" not in off.describe()


def test_a_model_whose_attention_bypasses_transformers_interface_is_refused(model_dirs, monkeypatch):
    """The probe at load catches a model that never calls the registered attention function (its own code, an
    older transformers): it would otherwise run the packed row as one sequence."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    monkeypatch.setattr(unpadded, "register", lambda: None)
    from transformers import AttentionInterface

    AttentionInterface.register(unpadded.ATTENTION, sdpa_attention_forward)  # what a bypassing model amounts to
    try:
        model = RewardModel.from_pretrained(str(model_dirs["llama"]))
    finally:
        AttentionInterface.register(unpadded.ATTENTION, unpadded._attention)
    assert not model.engine.unpadded and "does not run through" in model.describe()["unpadded"]
    assert model.adapter.model.config._attn_implementation == "sdpa"
    assert_close(model.score(CONVS), decoder_reference(model_dirs["llama"], CONVS))


def test_the_model_outside_the_engine_is_plain_sdpa(model_dirs):
    """Switching the model's attention to the unpadded function changes nothing for other callers: a padded batch
    with its attention mask gives what the same model gives with transformers' own SDPA."""
    from transformers import AutoModelForSequenceClassification

    model = RewardModel.from_pretrained(str(model_dirs["llama"]))
    assert model.adapter.model.config._attn_implementation == unpadded.ATTENTION
    plain = AutoModelForSequenceClassification.from_pretrained(model_dirs["llama"], dtype=torch.float32).eval()
    rows = [model.adapter.encode(c).input_ids for c in CONVS[:3]]
    width = max(map(len, rows))
    pad = model.adapter.pad_token_id
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    with torch.no_grad():  # the base models: the toy Llama has no pad token, so its head takes one row only
        got = model.adapter.model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        want = plain.model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(got[mask.bool()], want[mask.bool()], atol=1e-6)


def test_layout_puts_every_token_back_where_it_came_from():
    from rewardmill.reward_models.adapters.batching import collate

    items = [Encoded([5, 6, 7]), Encoded([8]), Encoded([9, 10])]
    batch = unpadded.unpad(collate(items, 0, "right", torch.device("cpu")))
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9, 10]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 0, 0, 1]]
    assert batch.last_index.tolist() == [2, 3, 5]
    tokens = torch.arange(6.0).view(1, 1, 6, 1)  # [1, heads, tokens, d]
    rows = batch.layout.gather(tokens)
    assert rows[:, 0, :, 0].tolist() == [[0, 1, 2], [3, 0, 0], [4, 5, 0]]  # padding slots hold token 0
    assert batch.layout.scatter(rows.transpose(1, 2)).flatten().tolist() == [0, 1, 2, 3, 4, 5]


def test_grouped_rows_become_attention_pieces_in_token_order():
    from rewardmill.reward_models.adapters.batching import Group, collate_grouped

    items = [Encoded([1, 2, 3, 4, 5]), Encoded([1, 2, 3, 9]), Encoded([7, 8]), Encoded([1, 2, 3, 6, 6, 6])]
    groups = [Group(3, (0, 1, 3)), Group(0, (2,))]
    batch = unpadded.unpad(collate_grouped(items, groups, 0, "right", torch.device("cpu"), lambda s: None))
    assert batch.input_ids.tolist() == [[1, 2, 3, 4, 5, 9, 6, 6, 6, 7, 8]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4, 3, 3, 4, 5, 0, 1]]
    assert batch.last_index.tolist() == [4, 5, 10, 8]
    P = unpadded.Piece
    assert batch.layout.pieces == [P(0, 3), P(3, 5, (0, 3)), P(5, 6, (0, 3)), P(6, 9, (0, 3)), P(9, 11)]


def test_a_continuation_attends_to_its_prefix_and_itself_only(model_dirs, monkeypatch):
    """No attention work is spent on what a block mask would hide: the prefix runs causally on its own keys, each
    continuation's queries on the prefix's keys and their own, every layer."""
    model = RewardModel.from_pretrained(str(model_dirs["llama"]), batch_size=64, max_tokens_per_batch=100_000,
                                        min_shared_tokens=1)
    base = model.adapter.encode(CONVS[0]).input_ids
    n, long = len(base), [20 + i % 50 for i in range(len(base) + 5)]
    items = [Encoded(base + [11, 12, 13]), Encoded(base + [14]), Encoded(base + [15, 16]), Encoded(base + long)]
    shapes = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording(query, key, value, attn_mask=None, is_causal=False, **kwargs):
        shapes.append((query.shape[-2], key.shape[-2], is_causal))
        return sdpa(query, key, value, attn_mask=attn_mask, is_causal=is_causal, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    got = [r["score"] for r in model.engine.run(items)]
    # a continuation shorter than the prefix reads the prefix's keys under a mask; a longer one runs causally with
    # the prefix's queries in front (half the query-key pairs of a mask, which the CPU kernel computes whole)
    c = len(long)
    per_layer = [(n, n, True), (3, n + 3, False), (1, n + 1, False), (2, n + 2, False), (n + c, n + c, True)]
    assert shapes == per_layer * model.adapter.model.config.num_hidden_layers
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", sdpa)
    assert_close(got, reference(model_dirs["llama"], [item.input_ids for item in items]))


def test_off_a_cpu_it_is_on_only_when_asked_and_says_so(model_dirs, monkeypatch):
    """Measured on CPU only: on another device the default keeps padded rows (or the model's own packing) and
    `inspect` says that --packing turns it on; a model that could not run unpadded anyway says its own reason."""
    from rewardmill.reward_models.adapters.base import Adapter
    from rewardmill.reward_models.engines.transformers_engine import unpadding_choice

    llama = RewardModel.from_pretrained(str(model_dirs["llama"]), packing=False).adapter
    gemma = RewardModel.from_pretrained(str(model_dirs["gemma"])).adapter
    monkeypatch.setattr(Adapter, "device", property(lambda self: torch.device("cuda")))
    assert unpadding_choice(llama, None) == (False, "measured on CPU only: --packing turns it on")
    assert unpadding_choice(gemma, None) == (False, "sliding-window attention layers")
    assert unpadding_choice(llama, False) == (False, None)
