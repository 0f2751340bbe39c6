"""The reward server: contract tests that send the payloads OpenRLHF's agent, verl's /classify call and vLLM clients
send and read the answers as they do; fidelity against an independent one-row reference, alone and in a busy
mixed batch; faults (bad input, a full queue, a model exception, a client that goes away, an API key, a body too
large). SIGTERM and the load test run a real `rewardmill serve` process in test_server_process.py."""

import json
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from server_harness import running
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rewardmill import RewardModel, RowOptions, score_rows
from rewardmill.clients import RewardClient, RewardServerError
from rewardmill.server import ServerOptions, create_app

TOL = 1e-4
CONVS = [
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."},
     {"role": "assistant", "content": "Blue, like the sky on a clear summer afternoon."}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help you today? " * 3}],
]


class Reference:
    """The toy model run with transformers alone, one row at a time, no padding."""

    def __init__(self, directory):
        self.tok = AutoTokenizer.from_pretrained(directory)
        self.model = AutoModelForSequenceClassification.from_pretrained(directory).eval()

    def ids(self, ids) -> float:
        with torch.no_grad():
            return self.model(torch.tensor([ids])).logits[0, 0].item()

    def text(self, text: str) -> float:
        return self.ids(self.tok(text, add_special_tokens=False)["input_ids"])

    def pair(self, prompt: str, answer: str) -> float:
        with torch.no_grad():
            return self.model(**self.tok(prompt, answer, return_tensors="pt")).logits[0, 0].item()

    def render(self, conversation) -> str:
        return self.tok.apply_chat_template(conversation, tokenize=False)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.fixture(scope="module")
def llama(llama_dir):
    return RewardModel.from_pretrained(str(llama_dir), threads=1, cpu_kernel="torch"), Reference(llama_dir)


@pytest.fixture(scope="module")
def served(llama):
    with running(create_app(llama[0])) as url:
        yield url, llama[1]


def post(url, path, body, **kwargs):
    return httpx.post(url + path, json=body, timeout=60, **kwargs)


# ------------------------------------------------------------------------------------ contracts


def test_openrlhf_agent_payloads_and_reading(served):
    url, ref = served
    queries = [ref.render(c) for c in CONVS]  # what OpenRLHF decodes: template text, BOS and EOS as text
    assert all(q.startswith("<|begin_of_text|>") for q in queries)
    for query, conv in zip(queries, CONVS):
        response = post(url, "/get_reward", {"query": [query], "prompts": [conv[-2]["content"]], "labels": ["x"]})
        assert response.status_code == 200
        body = response.json()
        reward, scores, extra = body.get("rewards"), body.get("scores") or body.get("rewards"), body.get("extra_logs") or {}
        assert len(reward) == len(scores) == 1 and isinstance(extra, dict)
        assert abs(reward[0] - ref.text(query)) <= TOL and scores == reward
    batch = post(url, "/get_reward", {"query": queries}).json()["rewards"]
    assert max(abs(a - ref.text(q)) for a, q in zip(batch, queries)) <= TOL
    empty = post(url, "/get_reward", {"query": [], "prompts": [], "labels": []})
    assert empty.status_code == 200 and empty.json() == {"rewards": [], "scores": [], "extra_logs": {}}


def test_verl_classify_with_legacy_activation_key_and_bos(served):
    url, ref = served
    text = ref.render(CONVS[1])
    stripped = text.removeprefix(ref.tok.bos_token)  # verl strips the BOS string: vLLM adds one
    want = ref.text(text)  # one BOS
    doubled = ref.ids([ref.tok.bos_token_id, *ref.tok(text, add_special_tokens=False)["input_ids"]])
    assert abs(doubled - want) > 1e-3  # the trap is visible in this model: two BOS give another score
    for body in ({"model": "rm", "input": stripped, "activation": False},
                 {"model": "rm", "input": stripped, "use_activation": False},
                 {"model": "rm", "input": text, "use_activation": False}):  # already has BOS: no second one
        output = post(url, "/classify", body).json()
        assert abs(output["data"][-1]["probs"][-1] - want) <= TOL, body
        assert output["data"][0]["num_classes"] == 1 and output["object"] == "list" and output["model"] == "rm"
        assert output["usage"]["prompt_tokens"] == len(ref.tok(text, add_special_tokens=False)["input_ids"])
    activated = post(url, "/classify", {"input": stripped}).json()["data"][0]["probs"][0]
    assert abs(activated - sigmoid(want)) <= TOL
    chat = post(url, "/classify", {"messages": CONVS[1], "use_activation": False}).json()
    assert abs(chat["data"][0]["probs"][0] - want) <= TOL
    ids = ref.tok(text, add_special_tokens=False)["input_ids"]
    by_ids = post(url, "/classify", {"input": [ids, ids[:-3]], "use_activation": False}).json()["data"]
    assert abs(by_ids[0]["probs"][0] - want) <= TOL and abs(by_ids[1]["probs"][0] - ref.ids(ids[:-3])) <= TOL
    pooled = post(url, "/pooling", {"input": [stripped], "use_activation": False}).json()
    assert pooled["data"][0]["object"] == "pooling" and abs(pooled["data"][0]["data"][0] - want) <= TOL


def test_score_route_for_a_pair_input_model(bert_dir):
    ref = Reference(bert_dir)
    model = RewardModel.from_pretrained(str(bert_dir), threads=1, cpu_kernel="torch")
    with running(create_app(model)) as url:
        one = post(url, "/score", {"text_1": "What is 2+2?", "text_2": ["4", "five, I think"], "use_activation": False})
        data = one.json()["data"]
        assert [d["object"] for d in data] == ["score", "score"]
        assert abs(data[0]["score"] - ref.pair("What is 2+2?", "4")) <= TOL
        assert abs(data[1]["score"] - ref.pair("What is 2+2?", "five, I think")) <= TOL
        zipped = post(url, "/score", {"queries": ["a?", "b?"], "documents": ["x", "y"]}).json()["data"]
        assert abs(zipped[1]["score"] - sigmoid(ref.pair("b?", "y"))) <= TOL
        refused = post(url, "/get_reward", {"query": ["rendered text"]})
        assert refused.status_code == 422 and "query[0]" in refused.json()["error"]["message"]
        assert "pair" in refused.json()["error"]["message"]
        mismatch = post(url, "/score", {"queries": ["a?", "b?"], "documents": ["x", "y", "z"]})
        assert mismatch.status_code == 422


def test_v1_rewards_takes_rows_of_any_shape(served, llama):
    url, ref = served
    rows = [{"conversation": CONVS[0]}, {"instruction": "Name a colour.", "response": "Blue."},
            {"conversation": CONVS[0][:1]}]
    got = post(url, "/v1/rewards", {"rows": rows}).json()["results"]
    assert abs(got[0]["score"] - ref.text(ref.render(CONVS[0]))) <= TOL
    offline = list(score_rows(llama[0], rows, RowOptions()))
    assert got[1]["score"] == pytest.approx(offline[1]["score"], abs=TOL)
    assert got[2]["score"] is None and got[2]["error"].startswith("row 2: field 'conversation' must end")
    # as in `rewardmill score`, the first row decides the output column: a list shape goes in its own request
    lists = [{"instruction": "q", "responses": ["a", "bb", "ccc"]}, {"instruction": "q", "responses": "not a list"}]
    got = post(url, "/v1/rewards", {"rows": lists}).json()["results"]
    assert got[0]["scores"] == pytest.approx(list(score_rows(llama[0], lists[:1]))[0]["scores"], abs=TOL)
    assert got[1]["scores"] is None and got[1]["error"].startswith("row 1: ")
    renamed = post(url, "/v1/rewards", {"rows": [{"q": "Name a colour.", "a": "Blue."}],
                                        "columns": {"instruction": "q", "response": "a", "score": "reward"}})
    assert renamed.json()["results"][0]["reward"] == pytest.approx(offline[1]["score"], abs=TOL)
    assert post(url, "/v1/rewards", {"rows": rows, "columns": {"nope": "x"}}).status_code == 422


def test_v1_models_health_and_metrics(served):
    url, _ = served
    assert httpx.get(url + "/health").json() == {"status": "ok"}
    assert httpx.get(url + "/v1/models").json()["data"][0]["object"] == "model"
    post(url, "/get_reward", {"query": ["<|begin_of_text|>hi"]})
    text = httpx.get(url + "/metrics").text
    for name in ("rewardmill_requests_total", "rewardmill_queue_depth", "rewardmill_batch_rows_bucket",
                 "rewardmill_request_seconds_bucket", "rewardmill_rejected_total"):
        assert name in text
    assert 'route="/get_reward",status="200"' in text


def test_timing_headers_as_tei_sends_them(served):
    url, ref = served
    response = post(url, "/get_reward", {"query": [ref.render(CONVS[2])]})
    for header in ("x-queue-time", "x-inference-time", "x-tokenization-time", "x-total-time", "x-compute-tokens"):
        assert response.headers[header].isdigit()
    assert int(response.headers["x-total-time"]) >= int(response.headers["x-inference-time"])


# ------------------------------------------------------------------------------------ fidelity


def test_each_request_gets_its_own_scores_inside_a_busy_mixed_batch(served):
    url, ref = served
    texts = [ref.render([{"role": "user", "content": f"question {i} " + "x" * (i * 7 % 50)},
                         {"role": "assistant", "content": "answer " * (i % 9 + 1)}]) for i in range(48)]
    want = [ref.text(t) for t in texts]
    def ask(i):
        if i % 3 == 0:
            return post(url, "/get_reward", {"query": [texts[i]]}).json()["rewards"][0]
        if i % 3 == 1:
            return post(url, "/classify", {"input": texts[i], "use_activation": False}).json()["data"][0]["probs"][0]
        return post(url, "/get_reward", {"query": [texts[i], texts[(i + 1) % 48]]}).json()["rewards"][0]

    before = _batches(url)
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(ask, range(48)))
    assert max(abs(g - w) for g, w in zip(got, want)) <= TOL
    rows, formed = (a - b for a, b in zip(_batches(url), before))
    assert rows == 64 and rows / formed > 1.5, (rows, formed)  # requests of different clients were run together


def _batches(url) -> tuple[float, float]:
    """(inputs, formed batches) so far, from /metrics."""
    values = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(("rewardmill_formed_batch_rows_sum", "rewardmill_formed_batch_rows_count")):
            name, value = line.split()
            values[name] = float(value)
    return values["rewardmill_formed_batch_rows_sum"], values["rewardmill_formed_batch_rows_count"]


# ------------------------------------------------------------------------------------ faults


class Gate:
    """Wraps the adapter's forward: holds it while closed, and raises on inputs that hold the marker token."""

    def __init__(self, model, marker_id: int):
        self.open = threading.Event()
        self.open.set()
        self.marker_id = marker_id
        self.forward = model.adapter.forward
        model.adapter.forward = self

    def __call__(self, batch):
        self.open.wait(timeout=60)
        if any(self.marker_id in item.input_ids for item in batch.items):
            raise RuntimeError("injected model failure")
        return self.forward(batch)


@pytest.fixture
def gated(llama_dir):
    model = RewardModel.from_pretrained(str(llama_dir), threads=1, cpu_kernel="torch")
    ref = Reference(llama_dir)
    gate = Gate(model, ref.tok.convert_tokens_to_ids("~"))
    return model, ref, gate


def test_a_model_exception_fails_only_its_request_and_the_server_keeps_serving(gated):
    model, ref, gate = gated
    texts = [ref.render(c) for c in CONVS]
    with running(create_app(model, ServerOptions(max_delay=0.05))) as url:
        with ThreadPoolExecutor(4) as pool:  # in one batch: the 50 ms delay gathers them
            futures = [pool.submit(post, url, "/get_reward", {"query": [t]}) for t in texts]
            futures.append(pool.submit(post, url, "/get_reward", {"query": ["hello ~ world"]}))
            responses = [f.result() for f in futures]
        assert [r.status_code for r in responses] == [200, 200, 200, 500]
        error = responses[3].json()["error"]
        assert error["code"] == 500 and "query[0]" in error["message"] and "injected model failure" in error["message"]
        for response, text in zip(responses, texts):
            assert abs(response.json()["rewards"][0] - ref.text(text)) <= TOL
        assert post(url, "/get_reward", {"query": [texts[0]]}).status_code == 200


def test_after_running_out_of_memory_the_server_gives_the_token_budget_back(llama_dir):
    model = RewardModel.from_pretrained(str(llama_dir), threads=1, cpu_kernel="torch", min_fill=0.0)
    ref = Reference(llama_dir)
    configured = model.engine.options.max_tokens_per_batch
    forward = model.adapter.forward
    tight = threading.Event()
    tight.set()

    def small_memory(batch):
        if tight.is_set() and len(batch.items) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(batch)

    model.adapter.forward = small_memory
    texts = [ref.render(c) for c in CONVS] * 3
    with running(create_app(model)) as url:
        huge = post(url, "/get_reward", {"query": texts})
        assert huge.status_code == 200
        assert max(abs(g - ref.text(t)) for g, t in zip(huge.json()["rewards"], texts)) <= TOL
        assert model.engine.options.max_tokens_per_batch < configured  # the huge request lowered it
        tight.clear()
        for _ in range(300):  # a run of good batches gives it back, step by step
            if model.engine.options.max_tokens_per_batch == configured:
                break
            assert post(url, "/get_reward", {"query": [texts[0]]}).status_code == 200
        assert model.engine.options.max_tokens_per_batch == configured


def test_bad_input_is_a_422_naming_the_item(served):
    url, ref = served
    bad_ids = post(url, "/classify", {"input": [[5, 6, 7], [1, 10**9]]})
    assert bad_ids.status_code == 422 and bad_ids.json()["error"]["message"].startswith("input[1]: token id")
    wrong_type = post(url, "/get_reward", {"query": ["fine", 3]})
    assert wrong_type.status_code == 422 and "query[1]" in wrong_type.json()["error"]["message"]
    missing = post(url, "/get_reward", {"prompts": ["p"]})
    assert missing.status_code == 422 and "query" in missing.json()["error"]["message"]
    not_json = httpx.post(url + "/get_reward", content=b"{not json", headers={"content-type": "application/json"})
    assert not_json.status_code == 422
    empty = post(url, "/get_reward", {"query": ["ok", ""]})
    assert empty.status_code == 422 and empty.json()["error"]["message"] == "query[1]: empty text: there is nothing to score"



def test_a_full_queue_answers_503_with_retry_after_at_once(gated):
    model, ref, gate = gated
    with running(create_app(model, ServerOptions(max_queue=4))) as url:
        gate.open.clear()  # the model is stuck: requests pile up
        with ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(post, url, "/get_reward", {"query": [ref.render(CONVS[0])]}) for _ in range(12)]
            time.sleep(1.0)
            started = time.perf_counter()
            refused = post(url, "/get_reward", {"query": [ref.render(CONVS[0])]})
            assert time.perf_counter() - started < 5  # the model stays stuck: waiting for it would never end
            gate.open.set()
            statuses = sorted(f.result().status_code for f in futures)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["type"] == "ServiceUnavailableError"
        assert statuses.count(200) >= 4 and set(statuses) <= {200, 503}
        assert post(url, "/get_reward", {"query": [ref.render(CONVS[0])]}).status_code == 200


def test_a_client_that_goes_away_has_its_queued_work_dropped(gated):
    model, ref, gate = gated
    app = create_app(model)
    with running(app) as url:
        gate.open.clear()
        blocker = threading.Thread(target=post, args=(url, "/get_reward", {"query": ["first"]}))
        blocker.start()
        time.sleep(0.3)  # the model is now held on the first request
        with pytest.raises(httpx.TimeoutException):
            httpx.post(url + "/get_reward", json={"query": ["never wanted"] * 5}, timeout=0.5)
        time.sleep(0.3)
        gate.open.set()
        blocker.join()
        deadline = time.monotonic() + 5
        while app.state.service.batcher.stats.dropped < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.state.service.batcher.stats.dropped == 5
        assert "rewardmill_dropped_inputs_total 5.0" in httpx.get(url + "/metrics").text


def test_api_key_protects_every_route_but_health(llama):
    secret = "sk-test-4242"
    with running(create_app(llama[0], ServerOptions(api_key=secret))) as url:
        assert httpx.get(url + "/health").status_code == 200
        for path in ("/v1/models", "/metrics"):
            assert httpx.get(url + path).status_code == 401
        denied = post(url, "/get_reward", {"query": ["x"]}, headers={"Authorization": "Bearer wrong"})
        assert denied.status_code == 401 and secret not in denied.text
        allowed = post(url, "/get_reward", {"query": ["x"]}, headers={"Authorization": f"Bearer {secret}"})
        assert allowed.status_code == 200


def test_a_body_over_the_limit_is_413(llama):
    with running(create_app(llama[0], ServerOptions(max_body_bytes=1000))) as url:
        big = post(url, "/get_reward", {"query": ["x" * 2000]})
        assert big.status_code == 413 and big.json()["error"]["code"] == 413

        def chunks():
            yield b'{"query": ["'
            for _ in range(30):
                yield b"y" * 100
            yield b'"]}'

        chunked = httpx.post(url + "/get_reward", content=chunks(), headers={"content-type": "application/json"})
        assert chunked.status_code == 413
        assert post(url, "/get_reward", {"query": ["small"]}).status_code == 200


# ------------------------------------------------------------------------------------ trainers' real calls


def openrlhf_request(url, queries, prompts):
    """What OpenRLHF 0.11 (3c3be62) sends and reads (openrlhf/utils/agent.py, _fetch_rewards_via_http): query,
    prompts and labels lists; `raise_for_status()`, so any 4xx fails the call, which it retries 5 times and then
    gives up on; then `scores` (else `rewards`) from the JSON."""
    response = post(url, "/get_reward", {"query": queries, "prompts": prompts, "labels": [None] * len(queries)})
    response.raise_for_status()
    body = response.json()
    return body.get("scores") or body.get("rewards")


def _metric(url, name) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_openrlhf_over_long_query_is_truncated_keeping_its_end_counted_and_logged(served, llama, caplog):
    url, ref = served
    long = [{"role": "user", "content": "Tell me a story."}, {"role": "assistant", "content": "Once " * 1500 + "END."}]
    queries = [ref.render(CONVS[0]), ref.render(long)]
    ids = ref.tok(queries[1], add_special_tokens=False)["input_ids"]
    assert len(ids) > 2048 and ids[0] == ref.tok.bos_token_id
    before = _metric(url, "rewardmill_truncated_inputs_total")
    with caplog.at_level(logging.WARNING, logger="rewardmill.server"):
        scores = openrlhf_request(url, queries, ["What is 2+2?", "Tell me a story."])
    kept = [ids[0], *ids[len(ids) - 2047:]]  # --truncation left: BOS kept, then the last tokens, the answer's end
    assert abs(scores[0] - ref.text(queries[0])) <= TOL and abs(scores[1] - ref.ids(kept)) <= TOL
    assert _metric(url, "rewardmill_truncated_inputs_total") == before + 1
    assert any(f"query[1] ({len(ids)} tokens)" in r.getMessage() for r in caplog.records)
    with running(create_app(llama[0], ServerOptions(over_long="error"))) as strict:
        refused = post(strict, "/get_reward", {"query": queries})
        assert refused.status_code == 422 and refused.json()["error"]["message"].startswith("query[1]: ")
        assert "exceed the maximum length" in refused.json()["error"]["message"]


def test_more_inputs_than_the_queue_holds_is_413_not_a_503_forever(llama):
    with running(create_app(llama[0], ServerOptions(max_queue=4))) as url:
        for path, body in (("/get_reward", {"query": ["x"] * 5}), ("/classify", {"input": ["x"] * 5}),
                           ("/v1/rewards", {"rows": [{"instruction": "q", "response": "a"}] * 5}),
                           ("/v1/rewards", {"rows": [{"instruction": "q", "responses": ["a", "b", "c"]}] * 2}),
                           ("/v1/rewards", {"inputs": [{"text": "x"}] * 5})):
            answer = post(url, path, body)
            assert answer.status_code == 413, (path, answer.text)
            assert "at most 4 (--max-queue)" in answer.json()["error"]["message"]
        client = RewardClient(url, retries=5, backoff=10.0)
        started = time.perf_counter()
        with pytest.raises(RewardServerError, match="refused the request: 413"):
            client.rewards([{"instruction": "q", "response": "a"}] * 5)
        assert time.perf_counter() - started < 5.0  # not retried (a first retry would wait at least 5 s)
        assert post(url, "/get_reward", {"query": ["x"] * 4}).status_code == 200


def test_a_full_queue_is_refused_before_any_tokenizing(gated):
    model, ref, gate = gated
    app = create_app(model, ServerOptions(max_queue=4))
    service = app.state.service
    with running(app) as url:
        gate.open.clear()
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(post, url, "/get_reward", {"query": ["first"]})  # the model holds this one
            time.sleep(0.3)
            queued = pool.submit(post, url, "/get_reward", {"query": ["a", "b", "c", "d"]})  # fills the queue
            deadline = time.monotonic() + 5
            while service.batcher.depth < 4 and time.monotonic() < deadline:
                time.sleep(0.02)
            calls = []
            encode_text = service.adapter.encode_text
            service.adapter.encode_text = lambda *a: calls.append(a) or encode_text(*a)
            refused = post(url, "/get_reward", {"query": ["one more"]})
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1" and calls == []
            gate.open.set()
            assert first.result().status_code == 200 and queued.result().status_code == 200
        assert post(url, "/get_reward", {"query": ["again"]}).status_code == 200 and len(calls) == 1


def test_a_body_that_is_not_json_gets_the_position(served):
    url, _ = served
    body = '{"query": ["a",\n   oops]}'
    try:
        json.loads(body)
    except json.JSONDecodeError as error:
        want = f"{error.msg} at line {error.lineno} column {error.colno} (character {error.pos})"
    answer = httpx.post(url + "/get_reward", content=body.encode(), headers={"content-type": "application/json"})
    assert answer.status_code == 422
    assert answer.json()["error"]["message"] == f"the body is not valid JSON: {want}"


def test_v1_rewards_inputs_are_scored_as_given_each_with_its_own_error(served):
    url, ref = served
    text = ref.render(CONVS[1])
    inputs = [{"text": text}, {"text": ""}, {"messages": CONVS[0]}, {"bogus": 1},
              {"messages": [{"role": "user", "content": None}]}]
    results = post(url, "/v1/rewards", {"inputs": inputs}).json()["results"]
    assert abs(results[0]["score"] - ref.text(text)) <= TOL and results[0]["error"] is None
    assert abs(results[2]["score"] - ref.text(ref.render(CONVS[0]))) <= TOL
    assert results[1] == {"score": None, "error": "inputs[1]: empty text: there is nothing to score"}
    assert results[3]["error"].startswith("inputs[3]: give {\"text\"") and results[3]["score"] is None
    assert results[4]["error"] == "inputs[4]: messages[0] has no content and no tool_calls"
    both = post(url, "/v1/rewards", {"rows": [], "inputs": []})
    assert both.status_code == 422 and "one of the two" in both.json()["error"]["message"]


def test_a_non_finite_score_fails_only_its_request_and_never_reaches_json(llama):
    """Issue 28, point 2, on the server: a NaN (fp16 overflow, a broken head) is a 500 naming the input on the
    plain routes and that input's error in /v1/rewards inputs; the other inputs and requests are scored."""
    model, ref = llama
    good, bad = (ref.render(c) for c in CONVS[:2])
    poisoned = ref.text(bad)
    real = model.normalized

    def normalized(output):
        output = real(output)
        return {**output, "score": float("nan")} if abs(output["score"] - poisoned) < 1e-4 else output

    model.normalized = normalized
    try:
        with running(create_app(model)) as url:
            failed = post(url, "/get_reward", {"query": [good, bad]})
            assert failed.status_code == 500 and "query[1]: the model gave a non-finite score (nan)" in failed.text
            ok = post(url, "/get_reward", {"query": [good]})
            assert ok.status_code == 200 and abs(ok.json()["rewards"][0] - ref.text(good)) <= TOL
            each = post(url, "/v1/rewards", {"inputs": [{"text": good}, {"text": bad}]}).json()["results"]
            assert abs(each[0]["score"] - ref.text(good)) <= TOL and each[0]["error"] is None
            assert each[1] == {"score": None, "error": "inputs[1]: the model gave a non-finite score (nan)"}
    finally:
        model.normalized = real


def group_sizes(batch) -> list[int]:
    """How many continuations each prefix-shared group of a batch has (padded grouped rows, or unpadded ones)."""
    segments = batch.segments if batch.layout is None else batch.layout.segments
    return [] if segments is None else [int(row.max()) for row in segments if bool((row == 0).any())]


def test_the_completions_of_one_prompt_sent_in_separate_requests_share_the_prompt(gated):
    """A GRPO step sends its G completions of one prompt together, one request each: queued together, they run
    as one group (the prompt once), and each reward equals the single-row reference."""
    model, ref, gate = gated
    seen = []
    model.adapter.forward = lambda batch: (seen.append(batch), gate(batch))[1]
    prompt = [{"role": "user", "content": "Write a short poem about the sea and the ships on it. " * 3}]
    texts = [ref.render(prompt + [{"role": "assistant", "content": f"Completion {g}: " + "waves " * g}])
             for g in range(4)]
    with running(create_app(model, ServerOptions(max_delay=0.05))) as url:
        gate.open.clear()  # the model is busy with a first request while the G completions arrive
        with ThreadPoolExecutor(5) as pool:
            first = pool.submit(post, url, "/get_reward", {"query": [ref.render(CONVS[0])]})
            time.sleep(0.5)
            futures = [pool.submit(post, url, "/get_reward", {"query": [t]}) for t in texts]
            time.sleep(1.0)
            gate.open.set()
            assert first.result().status_code == 200
            rewards = [f.result().json()["rewards"][0] for f in futures]
    sizes = [size for batch in seen for size in group_sizes(batch)]
    assert max(sizes, default=0) == 4, "the 4 completions ran as one group"
    for reward, text in zip(rewards, texts):
        assert abs(reward - ref.text(text)) <= TOL
