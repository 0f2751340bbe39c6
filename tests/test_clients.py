"""Client glue: the TRL reward function called the way GRPOTrainer calls async reward functions, verl's
compute_score called the way verl's reward manager calls it, and the retry policy (503/5xx/connection errors
retried with backoff, Retry-After honoured, 4xx raised at once, the API key never shown)."""

import asyncio
import threading

import httpx
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import rewardmill.clients as clients
from rewardmill import RewardModel
from rewardmill.clients import RewardClient, RewardServerError, compute_score, compute_score_async, trl_reward_func
from rewardmill.server import create_app
from server_harness import running

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


def test_trl_reward_function_conversational_and_text(server):
    url, score = server
    prompts = [[{"role": "user", "content": "What is 2+2?"}], [{"role": "system", "content": "Be brief."},
                                                                {"role": "user", "content": "Name a colour."}]]
    completions = [[{"role": "assistant", "content": "4"}], [{"role": "assistant", "content": "Blue."}]]
    func = trl_reward_func(url)
    rewards = as_trl_calls(func, prompts=prompts, completions=completions, completion_ids=[[1], [2]],
                           answer=["4", "blue"])
    want = [score(p + c) for p, c in zip(prompts, completions)]
    assert len(rewards) == 2 and max(abs(r - w) for r, w in zip(rewards, want)) <= TOL
    text = as_trl_calls(func, prompts=["What is 2+2?", "Name a colour."], completions=["4", "blue " * 3000],
                        completion_ids=[[1], [2] * 3000])
    assert abs(text[0] - want[0]) <= TOL and text[1] is None  # over the model's length: no reward, not a crash


def test_verl_compute_score_sync_and_async(server, monkeypatch):
    url, score = server
    monkeypatch.setenv("REWARDMILL_URL", url)
    monkeypatch.setattr(clients, "_VERL_CLIENT", None)
    want = score([{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}])
    got = compute_score(data_source="gsm8k", solution_str="4", ground_truth="4",
                        extra_info={"question": "What is 2+2?", "index": 0})
    assert abs(got - want) <= TOL
    got = asyncio.run(compute_score_async(data_source="gsm8k", solution_str="4", ground_truth="4",
                                          extra_info={"prompt": [{"role": "user", "content": "What is 2+2?"}]}))
    assert abs(got - want) <= TOL
    with pytest.raises(RewardServerError, match="extra_info"):
        compute_score(data_source="x", solution_str="4", ground_truth="4", extra_info={})


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
