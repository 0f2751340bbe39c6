"""A small in-process server that speaks OpenAI's chat-completions protocol on 127.0.0.1, answers like a
(length-loving) judge, and injects faults on the first request of a prompt that carries a marker:
  RATE-LIMITED -> 429 with Retry-After, SERVER-ERROR -> 500, SLOW -> answers after the client's timeout,
  MALFORMED -> a body that is not JSON, BAD-REQUEST -> 400 (every time), UNPARSEABLE -> an answer without
  scores (a re-ask gets a proper one), SEED-002 -> seed 002's scores [5, 3, 1] (every time), POSITION-BIASED ->
  always [[A]] in pairwise prompts, NO-LOGPROBS -> an answer without log-probabilities. With `logprobs: true` it
  returns token log-probabilities (see token_logprobs).
It records every request, how many were in flight at once, and the Authorization header it saw.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def judge_answer(messages: list[dict]) -> str:
    prompt = messages[0]["content"]
    reasked = len(messages) > 1
    if "UNPARSEABLE" in prompt and not reasked:
        return "Both responses have merits; I cannot decide."
    if prompt.startswith("CUSTOM"):
        answer = prompt.split("Answer: ", 1)[1].split("\n")[0]
        if "JSON" in prompt:
            return f'Here: {{"score": {len(answer)}, "why": "length"}}' if answer != "bad" else '{"why": "no score"}'
        return f"Points: {len(answer)}" if answer != "bad" else "No points."
    if "SEED-002" in prompt:  # seed 002's example: three responses rated [5, 3, 1], above the 1-3 the prompt states
        return "[1] Score: 5\n[2] Score: 3\n[3] Score: 1"
    if "#Response [" in prompt or "#Instruction [" in prompt:
        responses = re.findall(r"#(?:Response|Instruction) \[\d+\]#:\n(.*?)\n\n", prompt, re.S)
        ranks = sorted(range(len(responses)), key=lambda i: (len(responses[i]), i))
        scores = {i: rank + 1 for rank, i in enumerate(ranks)}
        return "Here is my ranking.\n\n" + "\n".join(f"**[{i + 1}] Score:** {scores[i]}" for i in range(len(responses)))
    if "[The Start of Assistant A's Answer]" in prompt:
        a = prompt.split("[The Start of Assistant A's Answer]\n")[1].split("\n[The End")[0]
        b = prompt.split("[The Start of Assistant B's Answer]\n")[1].split("\n[The End")[0]
        if "POSITION-BIASED" in prompt:
            return "The first answer reads better. [[A]]"
        tag = "A" if len(a) > len(b) else "B" if len(b) > len(a) else "C"
        return f"Comparing the two, I weigh depth most. Final verdict: [[{tag}]]"
    if "[The Start of Assistant's Answer]" in prompt:
        answer = prompt.split("[The Start of Assistant's Answer]\n")[1].split("\n[The End")[0]
        return f"A reasonable answer. Rating: [[{min(10, max(1, len(answer)))}]]"
    texts = re.findall(r"## Text \d+\n(.*?)\n\n", prompt, re.S)
    ranks = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    return "\n\n".join(f"#### Output for Text {i + 1}\nRating: {min(5, ranks.index(i) + 1)}\nRationale: {len(texts[i])} chars."
                       for i in range(len(texts)))


def cut_at(text: str, max_tokens: int | None) -> tuple[str, str]:
    """The answer cut at `max_tokens` tokens (here a token is a whitespace-separated word), as a server cuts it,
    with OpenAI's finish_reason: "length" when it was cut, else "stop"."""
    words = text.split(" ")
    if max_tokens is None or len(words) <= max_tokens:
        return text, "stop"
    return " ".join(words[:max_tokens]), "length"


def structured_answer(messages: list[dict]) -> str:
    """The same judgement as judge_answer, as the JSON a schema-constrained server returns."""
    text = judge_answer(messages)
    prompt = messages[0]["content"]
    if "#Response [" in prompt:
        scores = [int(x) for x in re.findall(r"Score:\*\* (\d+)", text)]
        if "SHORT-JSON" in prompt and len(messages) == 1:
            scores = scores[:-1]  # a server that ignores maxItems: rewardmill must notice
        return json.dumps({"scores": scores})
    if "[The Start of Assistant A's Answer]" in prompt:
        tag = re.findall(r"\[\[(\w)\]\]", text)[-1]
        return json.dumps({"winner": {"C": "tie"}.get(tag, tag)})
    if "[The Start of Assistant's Answer]" in prompt:
        return json.dumps({"rating": int(re.findall(r"\[\[(\d+)\]\]", text)[-1])})
    ratings = [int(x) for x in re.findall(r"Rating: (\d+)", text)]
    return json.dumps({"ratings": ratings, "rationales": re.findall(r"Rationale: (.*)", text)})


def label_distribution(label: str) -> dict[str, float]:
    """The fake judge's next-token probabilities where it writes `label`: 0.6 on it, the rest on neighbours."""
    if label.isdigit():
        d = int(label)
        return {str(d): 0.6, str(max(1, d - 1)): 0.3, str(min(9, d + 1)): 0.1} if 1 < d < 9 else {label: 0.9, "5": 0.1}
    others = [x for x in "ABC" if x != label]
    return {label: 0.7, others[0]: 0.2, others[1]: 0.1}


def token_logprobs(text: str) -> dict:
    """OpenAI-style `logprobs.content` for `text`, with top_logprobs spread where a label follows '[['."""
    import math

    tokens = re.findall(r"\s*\[\[|\]\]|\d|\s*\w+|\s*[^\w\s]|\s+", text)
    content = []
    for i, token in enumerate(tokens):
        if i and tokens[i - 1].strip() == "[[" and (token.isdigit() or token in "ABC"):
            top = label_distribution(token)
        else:
            top = {token: 1.0}
        content.append({"token": token, "logprob": math.log(top[token]), "bytes": None,
                        "top_logprobs": [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in top.items()]})
    return {"content": content}


class FakeJudgeServer:
    def __init__(self, slow_seconds: float = 3.0, expect_key: str | None = None):
        self.requests: list[list[dict]] = []
        self.formats: list[str | None] = []  # response_format type of each request
        self.per_prompt: Counter = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.slow_seconds = slow_seconds
        self.expect_key = expect_key
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                messages = body["messages"]
                prompt = messages[0]["content"]
                with server.lock:
                    server.requests.append(messages)
                    server.per_prompt[json.dumps(messages)] += 1
                    first = server.per_prompt[json.dumps(messages)] == 1
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(0.05)  # some work, so that concurrent requests overlap
                    auth = self.headers.get("Authorization", "")
                    if server.expect_key and auth != f"Bearer {server.expect_key}":
                        return self._send(401, {"error": {"message": f"bad key in {auth}"}})
                    if "BAD-REQUEST" in prompt:
                        return self._send(400, {"error": {"message": f"context too long (auth was {auth})"}})
                    if first and "RATE-LIMITED" in prompt:
                        return self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "0.2"})
                    if first and "SERVER-ERROR" in prompt:
                        return self._send(500, {"error": {"message": "oops"}})
                    if first and "SLOW" in prompt:
                        time.sleep(server.slow_seconds)
                    if first and "MALFORMED" in prompt:
                        return self._send_raw(200, b'{"id": "x", "choices": [{"message": ')
                    kind = (body.get("response_format") or {}).get("type")
                    if kind == "json_schema" and "NO-JSON-SCHEMA" in prompt:
                        server.formats.append(kind)
                        return self._send(400, {"error": {"message": "response_format type json_schema is not "
                                                                     "supported, use json_object"}})
                    server.formats.append(kind)
                    text = structured_answer(messages) if kind else judge_answer(messages)
                    text, finish = cut_at(text, body.get("max_tokens"))
                    logprobs = token_logprobs(text) if body.get("logprobs") and "NO-LOGPROBS" not in prompt else None
                    return self._send(200, {
                        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": finish, "logprobs": logprobs,
                                     "message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    })
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _send(self, status, payload, headers=None):
                self._send_raw(status, json.dumps(payload).encode(), headers)

            def _send_raw(self, status, data, headers=None):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout), as it should

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeJudgeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
