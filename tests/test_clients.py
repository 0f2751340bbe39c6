"""Client glue: the TRL reward function called the way GRPOTrainer calls async reward functions and compared with
TRL's own reward-model rule (trl 1.16); verl's compute_score called the way verl's reward managers call it (verl
main at b178a3c, 0.8.0.dev); the retry policy (503/5xx/connection errors retried with backoff, Retry-After
honoured, 4xx raised at once); the API key and URL credentials never shown."""

import ast
import asyncio
import logging
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from server_harness import running
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import rewardmill.clients as clients
from rewardmill import RewardModel
from rewardmill.clients import RewardClient, RewardServerError, compute_score, compute_score_async, trl_reward_func
from rewardmill.server import create_app

TOL = 1e-4


@pytest.fixture(scope="module")
def server(llama_dir):
    model = RewardModel.from_pretrained(str(llama_dir), threads=1, cpu_kernel="torch")
    tok = AutoTokenizer.from_pretrained(llama_dir)
    reference = AutoModelForSequenceClassification.from_pretrained(llama_dir).eval()

    def score(conversation):
        with torch.no_grad():
            ids = tok.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"]
            return reference(torch.tensor([ids])).logits[0, 0].item()

    with running(create_app(model)) as url:
        yield url, score


def as_trl_calls(func, **inputs):
    """What GRPOTrainer._calculate_rewards does with an async reward function: run it on its background loop."""
    from trl.trainer.utils import is_async_callable

    assert is_async_callable(func)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        kwargs = {"trainer_state": None, "log_extra": lambda *a, **k: None, "log_metric": lambda *a, **k: None,
                  **inputs}
        return asyncio.run_coroutine_threadsafe(func(**kwargs), loop).result(timeout=60)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()


def trl_reward_model_scores(reference, tokenizer, prompts, completions) -> list[float]:
    """TRL 1.16's own rule for a reward model given as a model (GRPOTrainer._calculate_rewards): when
    `is_conversational({"prompt": prompts[0]})`, each text is `apply_chat_template({"messages": p + c},
    tokenizer)["text"]`, else `p + c` as plain text; texts are tokenized with `add_special_tokens=False` (padded on
    the right) and the reward is `logits[:, 0]`. Here one text at a time, so with no padding."""
    from trl.data_utils import apply_chat_template, is_conversational

    if is_conversational({"prompt": prompts[0]}):
        texts = [apply_chat_template({"messages": p + c}, tokenizer)["text"] for p, c in zip(prompts, completions)]
    else:
        texts = [p + c for p, c in zip(prompts, completions)]
    with torch.no_grad():
        return [reference(**tokenizer(t, return_tensors="pt", add_special_tokens=False)).logits[0, 0].item()
                for t in texts]


def test_trl_reward_function_scores_as_trl_does_for_text_and_conversations(server, llama_dir):
    url, score = server
    tok = AutoTokenizer.from_pretrained(llama_dir)
    reference = AutoModelForSequenceClassification.from_pretrained(llama_dir).eval()
    func = trl_reward_func(url)
    prompts = [[{"role": "user", "content": "What is 2+2?"}], [{"role": "system", "content": "Be brief."},
                                                                {"role": "user", "content": "Name a colour."}]]
    completions = [[{"role": "assistant", "content": "4"}], [{"role": "assistant", "content": "Blue."}]]
    got = as_trl_calls(func, prompts=prompts, completions=completions, completion_ids=[[1], [2]], answer=["4", "b"])
    want = trl_reward_model_scores(reference, tok, prompts, completions)
    assert max(abs(g - w) for g, w in zip(got, want)) <= TOL
    text_prompts, text_completions = ["What is 2+2? Answer:", "Name a colour:"], [" 4", " blue"]
    got = as_trl_calls(func, prompts=text_prompts, completions=text_completions, completion_ids=[[1], [2]])
    want = trl_reward_model_scores(reference, tok, text_prompts, text_completions)
    assert max(abs(g - w) for g, w in zip(got, want)) <= TOL
    templated = [score([{"role": "user", "content": p}, {"role": "assistant", "content": c}])
                 for p, c in zip(text_prompts, text_completions)]
    assert min(abs(t - w) for t, w in zip(templated, want)) > 1e-3  # the chat template would give other rewards


def test_trl_over_long_text_is_truncated_keeping_its_end(server, llama_dir):
    url, _ = server
    tok = AutoTokenizer.from_pretrained(llama_dir)
    reference = AutoModelForSequenceClassification.from_pretrained(llama_dir).eval()
    prompt, completion = "Say blue:", " blue" * 3000  # over the toy model's 2048 positions
    got = as_trl_calls(trl_reward_func(url), prompts=[prompt], completions=[completion], completion_ids=[[1]])
    ids = tok(prompt + completion, add_special_tokens=False)["input_ids"]
    assert len(ids) > 2048
    with torch.no_grad():
        want = reference(torch.tensor([ids[-2048:]])).logits[0, 0].item()
    assert abs(got[0] - want) <= TOL


TOOL_TEMPLATE = (  # Llama-3 layout that renders tool calls, as Llama 3.1's and Qwen 2.5's templates do
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% if message.get('tool_calls') %}{% for call in message['tool_calls'] %}"
    "{{ call['function']['name'] }}({{ call['function']['arguments'] | tojson }}){% endfor %}"
    "{% else %}{{ message['content'] | trim }}{% endif %}<|eot_id|>{% endfor %}"
)
TOOL_PROMPT = [{"role": "user", "content": "What is 6 times 7?"}]
TOOL_COMPLETION = [
    {"role": "assistant", "content": None,
     "tool_calls": [{"type": "function", "function": {"name": "multiply", "arguments": {"a": 6, "b": 7}}}]},
    {"role": "tool", "name": "multiply", "content": "42"},
    {"role": "assistant", "content": "It is 42."},
]


def test_trl_tool_calls_go_through_a_template_that_renders_them(llama_dir):
    model = RewardModel.from_pretrained(str(llama_dir), threads=1, cpu_kernel="torch", chat_template=TOOL_TEMPLATE)
    tok = AutoTokenizer.from_pretrained(llama_dir)
    tok.chat_template = TOOL_TEMPLATE
    reference = AutoModelForSequenceClassification.from_pretrained(llama_dir).eval()
    prompts, completions = [TOOL_PROMPT, TOOL_PROMPT], [TOOL_COMPLETION, TOOL_COMPLETION[:1]]
    with running(create_app(model)) as url:
        got = as_trl_calls(trl_reward_func(url), prompts=prompts, completions=completions, completion_ids=[[1], [2]])
    want = trl_reward_model_scores(reference, tok, prompts, completions)
    assert "multiply" in tok.apply_chat_template(TOOL_PROMPT + TOOL_COMPLETION, tokenize=False)
    assert max(abs(g - w) for g, w in zip(got, want)) <= TOL


def test_trl_tool_calls_without_a_tool_template_are_logged_errors_not_silent_nones(server, caplog):
    url, score = server
    prompts = [TOOL_PROMPT, TOOL_PROMPT]
    completions = [TOOL_COMPLETION, [{"role": "assistant", "content": "42"}]]
    with caplog.at_level(logging.WARNING, logger="rewardmill.clients"):
        got = as_trl_calls(trl_reward_func(url), prompts=prompts, completions=completions, completion_ids=[[1], [2]])
    assert got[0] is None and abs(got[1] - score(TOOL_PROMPT + completions[1])) <= TOL
    warnings = [r.getMessage() for r in caplog.records if r.name == "rewardmill.clients"]
    assert len(warnings) == 1 and "completion 0 of 2" in warnings[0]
    assert "inputs[0]: messages[1] is part of a tool call" in warnings[0] and "tool_calls" in warnings[0]


def verl_batch_call(func, items):
    """What verl's BatchRewardManager.verify does (verl b178a3c, verl/workers/reward_manager/batch.py): one call
    with plural names, data_sources and extra_infos as numpy object arrays, rollout_reward_scores added to each
    extra_info; it expects one score per item."""
    extras = np.array([dict(item["extra_info"]) for item in items], dtype=object)
    for extra in extras:
        extra["rollout_reward_scores"] = {}
    return func(data_sources=np.array([item["data_source"] for item in items], dtype=object),
                solution_strs=[item["solution_str"] for item in items],
                ground_truths=[item["ground_truth"] for item in items], extra_infos=extras)


def test_verl_compute_score_as_each_verl_manager_calls_it(server, monkeypatch):
    import functools
    import inspect

    url, score = server
    monkeypatch.setenv("REWARDMILL_URL", url)
    monkeypatch.setattr(clients, "_VERL_CLIENT", None)
    items = [{"data_source": "gsm8k", "solution_str": "4", "ground_truth": "4",
              "extra_info": {"question": "What is 2+2?", "index": 0}},
             {"data_source": "chat", "solution_str": "Blue.", "ground_truth": None,
              "extra_info": {"prompt": [{"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": "Name a colour."}]}}]
    want = [score([{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]),
            score([*items[1]["extra_info"]["prompt"], {"role": "assistant", "content": "Blue."}])]
    # verl.trainer.ppo.reward.get_custom_reward_fn wraps the function in a partial (async for a coroutine function)
    sync = functools.partial(lambda raw, extra, *a, **k: raw(*a, **{**k, **extra}), compute_score, {})
    batch = verl_batch_call(sync, items)
    assert isinstance(batch, list) and len(batch) == 2 and max(abs(b - w) for b, w in zip(batch, want)) <= TOL
    one = sync(data_source="gsm8k", solution_str="4", ground_truth="4", extra_info=items[0]["extra_info"])
    assert abs(one - want[0]) <= TOL  # naive and dapo managers: one item by keyword
    assert abs(sync("gsm8k", "4", "4", items[0]["extra_info"]) - want[0]) <= TOL  # prime: positional

    async def call_with_kwargs_async(raw, extra, *args, **kwargs):
        return await raw(*args, **{**kwargs, **extra})

    wrapped = functools.partial(call_with_kwargs_async, compute_score_async, {})
    assert inspect.iscoroutinefunction(wrapped)  # how verl's reward loop decides to await it
    for _ in range(2):  # a new event loop each time: the client is per loop
        got = asyncio.run(wrapped(data_source="chat", solution_str="Blue.", ground_truth=None,
                                  extra_info=items[1]["extra_info"], reward_router_address=None))
        assert abs(got - want[1]) <= TOL


def test_verl_batch_errors_name_the_items(server, monkeypatch):
    url, _ = server
    monkeypatch.setenv("REWARDMILL_URL", url)
    monkeypatch.setattr(clients, "_VERL_CLIENT", None)
    items = [{"data_source": "x", "solution_str": "4", "ground_truth": "4", "extra_info": {"question": "2+2?"}},
             {"data_source": "x", "solution_str": "5", "ground_truth": "4", "extra_info": {"index": 1}}]
    with pytest.raises(RewardServerError, match=r"1 of 2 items cannot be scored: item 1: compute_score needs the "
                                                r"prompt"):
        verl_batch_call(compute_score, items)
    with pytest.raises(RewardServerError, match="extra_info"):
        compute_score(data_source="x", solution_str="4", ground_truth="4", extra_info={})
    with pytest.raises(RewardServerError, match="one item or one batch"):
        compute_score(solution_str="4", solution_strs=["4"], extra_infos=[{"question": "q"}])


def flaky(answers):
    """A transport that answers from a list: a status (with Retry-After 0 on 503), or an exception to raise."""
    calls = []

    def handle(request):
        calls.append(request)
        answer = answers[min(len(calls) - 1, len(answers) - 1)]
        if isinstance(answer, Exception):
            raise answer
        if answer == 200:
            return httpx.Response(200, json={"results": [{"score": 1.5, "error": None}]})
        headers = {"Retry-After": "0"} if answer == 503 else {}
        return httpx.Response(answer, json={"error": {"message": f"status {answer}"}}, headers=headers)

    return handle, calls


def test_retries_on_503_5xx_and_connection_errors_not_on_4xx(monkeypatch):
    monkeypatch.setenv("RM_KEY", "sk-secret-123")
    handle, calls = flaky([503, 500, httpx.ConnectError("refused"), 200])
    client = RewardClient("http://rm", api_key_env="RM_KEY", backoff=0.001, transport=httpx.MockTransport(handle))
    assert client.rewards([{"instruction": "q", "response": "a"}])[0]["score"] == 1.5 and len(calls) == 4
    assert calls[0].headers["authorization"] == "Bearer sk-secret-123"
    handle, calls = flaky([422])
    client = RewardClient("http://rm", api_key_env="RM_KEY", backoff=0.001, transport=httpx.MockTransport(handle))
    with pytest.raises(RewardServerError, match="refused the request: 422 status 422") as error:
        client.rewards([{}])
    assert len(calls) == 1 and "sk-secret" not in str(error.value)
    handle, calls = flaky([503])
    client = RewardClient("http://rm", retries=2, backoff=0.001, async_transport=httpx.MockTransport(handle))
    with pytest.raises(RewardServerError, match="failed 3 times"):
        asyncio.run(client.arewards([{}]))
    assert len(calls) == 3


def test_url_credentials_are_sent_as_basic_auth_and_never_shown():
    seen = []

    def handle(request):
        seen.append((str(request.url), request.headers.get("authorization")))
        if len(seen) == 1:
            raise httpx.ConnectError(f"cannot connect to {request.url} (user:s3cret-77)")
        return httpx.Response(422, json={"error": {"message": "rows[0]: bad"}})

    client = RewardClient("http://user:s3cret-77@rm:8000", backoff=0.001, transport=httpx.MockTransport(handle))
    with pytest.raises(RewardServerError) as error:
        client.rewards([{}])
    message = str(error.value)
    assert "s3cret" not in message and "http://***@rm:8000" in message
    assert seen[0][0] == "http://rm:8000/v1/rewards" and seen[0][1].startswith("Basic ")

    def refuse(request):  # an error text that quotes the credentials
        raise httpx.ConnectError("refused for user:s3cret-77")

    client = RewardClient("http://user:s3cret-77@rm:8000", retries=0, transport=httpx.MockTransport(refuse))
    with pytest.raises(RewardServerError) as error:
        client.rewards([{}])
    assert "s3cret" not in str(error.value) and "failed 1 times" in str(error.value)


def test_clients_module_imports_neither_torch_nor_transformers():
    source = Path(clients.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported and not imported & {"torch", "transformers", "numpy"}, imported
