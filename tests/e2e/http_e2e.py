#!/usr/bin/env python3
"""End to end: the OpenAI-compatible HTTP API of the real rwkv-server binary.

--part curl (curl and the standard library):
  /v1/models; greedy /v1/completions equals greedy gRPC Generate for the same prompt (text and
  token ids); a chat through the World template equals the raw "User: ...\\n\\nAssistant:" prompt
  through gRPC with the turn separator as stop; SSE streams (chat and completions) join to the
  whole response, end with [DONE] and carry usage when asked; n > 1; a multi-turn chat that
  resends its history reports cached prompt tokens, and its log-probabilities equal, bit for
  bit, those of a server without the prefix cache; errors in OpenAI's shape with their status
  (400 with param, 404, 405, 429 with Retry-After, 401 with API keys, another tenant's session
  404, all over HTTPS); a client that disconnects mid-stream cancels its sequence; /metrics,
  /health, /ready; Expect: 100-continue.
--part sdk (the OpenAI Python SDK from .tools/venv): models, chat and completions, streamed and
  not, n > 1, logprobs, and its exception types for errors. Exit 77 (skipped) without the SDK.
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_test import Checker, Server  # noqa: E402

KEY_A = "key-a-0123456789abcdef"
KEY_B = "key-b-0123456789abcdef"
CONTINUES = []  # Paths answered "100 Continue".


TLS_CA = None  # With a CA file, requests go over HTTPS to "localhost" (the test certificate's name).


def curl(port, path, body=None, headers=(), method=None):
    """(status, headers text, body text) of one request through curl."""
    args = ["curl", "-s", "-S", "-i", "--max-time", "120"]
    if TLS_CA:
        args += ["--cacert", TLS_CA, "--resolve", f"localhost:{port}:127.0.0.1", f"https://localhost:{port}{path}"]
    else:
        args.append(f"http://127.0.0.1:{port}{path}")
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    if method:
        args += ["-X", method]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run(args, capture_output=True, timeout=150).stdout.decode("utf-8", "replace")
    while out.startswith("HTTP/1.1 100 Continue\r\n"):
        out = out.partition("\r\n\r\n")[2]
        CONTINUES.append(path)
    head, _, rest = out.partition("\r\n\r\n")
    status = int(head.split(" ")[1]) if head.startswith("HTTP/") else 0
    return status, head, rest


def post(port, path, body, headers=()):
    status, head, text = curl(port, path, body, headers)
    try:
        return status, head, json.loads(text)
    except json.JSONDecodeError:
        return status, head, text


def sse(text):
    """The data payloads of an SSE body, in order."""
    return [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]


def disconnect_mid_stream(port, body):
    """Opens a stream, reads its first bytes, closes the socket."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    payload = json.dumps(body).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    got = s.recv(256)
    s.close()
    return got


def curl_part(a, c, srv):
    port = srv.http_port
    st, _, models = post(port, "/v1/models", None)
    model_id = os.path.splitext(os.path.basename(a.model))[0]
    c.expect(st == 200 and models["data"][0]["id"] == model_id, f"/v1/models lists {model_id}")

    # Completions equal gRPC Generate, greedy, from token ids and from text.
    ids = [10, 20, 30, 40]
    grpc = c.generate("--tokens", ",".join(map(str, ids)), "--max-tokens", "24")
    st, _, r = post(port, "/v1/completions", {"prompt": ids, "max_tokens": 24, "temperature": 0, "ignore_eos": True,
                                             "logprobs": 0})
    c.expect(st == 200 and r["choices"][0]["text"] == grpc["text"], "greedy /v1/completions (ids) equals gRPC")
    c.expect(r["usage"] == {"prompt_tokens": 4, "completion_tokens": 24, "total_tokens": 28,
                            "prompt_tokens_details": {"cached_tokens": 0}}, f"usage counts ({r['usage']})")
    c.expect(len(r["choices"][0]["logprobs"]["token_logprobs"]) == 24, "logprobs: one per token")
    grpc = c.generate("--prompt", "Hello there", "--max-tokens", "16")
    st, _, r = post(port, "/v1/completions", {"prompt": "Hello there", "max_tokens": 16, "temperature": 0,
                                             "ignore_eos": True})
    c.expect(st == 200 and r["choices"][0]["text"] == grpc["text"], "greedy /v1/completions (text) equals gRPC")

    # A chat is the World template: equal to the raw prompt with "\n\n" as stop.
    msgs = [{"role": "system", "content": "Be brief.\n\n\nReally."}, {"role": "user", "content": "Hi!"}]
    raw = "System: Be brief.\nReally.\n\nUser: Hi!\n\nAssistant:"
    grpc = c.generate("--prompt", raw, "--max-tokens", "40", "--stop", "\n\n")
    st, _, r = post(port, "/v1/chat/completions", {"messages": msgs, "max_tokens": 40, "temperature": 0,
                                                   "ignore_eos": True})
    reply = r["choices"][0]["message"]["content"]
    c.expect(st == 200 and reply == grpc["text"].lstrip(" "),
             f"chat through the template equals the raw World prompt via gRPC ({reply!r} vs {grpc['text']!r})")
    c.expect(r["object"] == "chat.completion" and r["choices"][0]["message"]["role"] == "assistant",
             "chat response shape")

    # Streams join to the whole response.
    body = {"messages": msgs, "max_tokens": 40, "temperature": 0, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}
    st, head, text = curl(port, "/v1/chat/completions", body)
    events = sse(text)
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    joined = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks if ch["choices"])
    c.expect(st == 200 and "text/event-stream" in head, "chat stream is text/event-stream")
    c.expect(joined == reply, "chat stream joins to the whole reply")
    c.expect(events[-1] == "[DONE]" and chunks[-1]["usage"]["completion_tokens"] == r["usage"]["completion_tokens"],
             "chat stream ends with usage, then [DONE]")
    c.expect(chunks[0]["choices"][0]["delta"].get("role") == "assistant", "first chunk carries the role")
    st, _, text = curl(port, "/v1/completions", {"prompt": ids, "max_tokens": 24, "temperature": 0,
                                                  "ignore_eos": True, "stream": True})
    joined = "".join(json.loads(e)["choices"][0]["text"] for e in sse(text) if e != "[DONE]")
    c.expect(joined == grpc_text_of(c, ids, 24), "completions stream joins to the greedy text")

    # n > 1: one prefill, n choices.
    st, _, r = post(port, "/v1/completions", {"prompt": "abc", "max_tokens": 5, "n": 3, "seed": 7,
                                             "ignore_eos": True})
    c.expect(st == 200 and sorted(ch["index"] for ch in r["choices"]) == [0, 1, 2]
             and r["usage"]["completion_tokens"] == 15, "n = 3 gives three choices and counts their tokens")

    # Multi-turn chat resending history: cached prompt tokens, and the same numbers as no cache.
    turn1 = [{"role": "user", "content": "Tell me a story about a fox."}]
    st, _, r1 = post(port, "/v1/chat/completions", {"messages": turn1, "max_tokens": 12, "temperature": 0})
    turn2 = turn1 + [{"role": "assistant", "content": r1["choices"][0]["message"]["content"]},
                     {"role": "user", "content": "And then?"}]
    req2 = {"messages": turn2, "max_tokens": 12, "temperature": 0, "logprobs": True, "top_logprobs": 3}
    st, _, r2 = post(port, "/v1/chat/completions", req2)
    cached = r2["usage"]["prompt_tokens_details"]["cached_tokens"]
    c.expect(st == 200 and cached > 0, f"turn 2 reuses cached prefix state ({cached} of {r2['usage']['prompt_tokens']})")
    nocache = Server(a.server, a.model, a.vocab, ["--prefix-cache-bytes", "0"])
    try:
        st, _, r2b = post(nocache.http_port, "/v1/chat/completions", req2)
        c.expect(r2b["usage"]["prompt_tokens_details"]["cached_tokens"] == 0, "without the cache nothing is cached")
        c.expect(r2["choices"][0]["logprobs"] == r2b["choices"][0]["logprobs"]
                 and r2["choices"][0]["message"] == r2b["choices"][0]["message"],
                 "a cache hit gives the same text and log-probabilities, bit for bit")
    finally:
        nocache.stop()

    # A client that sends "Expect: 100-continue" (curl does for large bodies) sends the body only
    # after "100 Continue": without one it would wait (curl: a second).
    CONTINUES.clear()
    st, _, r = post(port, "/v1/chat/completions", {"messages": [{"role": "user", "content": "word " * 400}],
                                                   "max_tokens": 2}, ["Expect: 100-continue"])
    c.expect(st == 200 and CONTINUES == ["/v1/chat/completions"], "Expect: 100-continue is answered")

    # Errors: OpenAI's shape and the matching status.
    st, _, e = post(port, "/v1/chat/completions", {"messages": msgs, "temperature": -1})
    c.expect(st == 400 and e["error"]["param"] == "temperature" and e["error"]["type"] == "invalid_request_error",
             f"bad temperature: 400 naming the param ({e})")
    st, _, e = post(port, "/v1/chat/completions", {"messages": msgs, "session_id": "nope"})
    c.expect(st == 404 and "nope" in e["error"]["message"], "unknown session: 404")
    st, _, e = post(port, "/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]})
    c.expect(st == 400 and "robot" in e["error"]["message"], "unknown role: 400 naming it")
    st, _, e = post(port, "/v1/chat/completions", {"messages": msgs, "tools": [{"type": "function"}]})
    c.expect(st == 400 and e["error"]["param"] == "tools", "tools: 400")
    st, _, _ = curl(port, "/v1/chat/completions", method="GET")
    c.expect(st == 405, "GET on a POST route: 405")
    st, _, _ = curl(port, "/v2/nothing")
    c.expect(st == 404, "unknown route: 404")
    status, _, text = curl(port, "/metrics")
    c.expect(status == 200 and 'method="ChatCompletions"' in text and "rwkv_prefix_cache_hits_total" in text,
             "/metrics on the HTTP port counts the API's requests and the prefix cache")
    c.expect(curl(port, "/health")[0] == 200 and curl(port, "/ready")[0] == 200, "/health and /ready")

    # Many streams at once, all on the server's two HTTP threads: 24 run (the state slots), the
    # rest wait in the admission queue (256 by default; beyond it a stream would get 429).
    done = many_streams(port, 200, 8)
    c.expect(done == 200, f"200 concurrent SSE streams all complete ({done})")

    # A client that leaves mid-stream cancels its sequence.
    before = cancelled_count(srv)
    got = disconnect_mid_stream(port, {"prompt": "go", "max_tokens": 90000, "ignore_eos": True, "stream": True})
    deadline = time.time() + 20
    while time.time() < deadline and cancelled_count(srv) == before:
        time.sleep(0.1)
    c.expect(got.startswith(b"HTTP/1.1 200") and cancelled_count(srv) == before + 1,
             "a disconnected client's stream is cancelled")
    running = re.search(r"^rwkv_requests_running (\S+)", srv.metrics(), re.M).group(1)
    c.expect(float(running) == 0, f"nothing keeps running after the disconnect ({running})")


def many_streams(port, n, max_tokens):
    """n concurrent SSE streams from one asyncio loop; returns how many ended with [DONE]."""
    import asyncio

    async def one(i):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = json.dumps({"prompt": [1 + i % 200], "max_tokens": max_tokens, "ignore_eos": True,
                              "stream": True}).encode()
        writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
        await writer.drain()
        body = await asyncio.wait_for(reader.read(), timeout=240)
        writer.close()
        return b"data: [DONE]" in body and b"\"finish_reason\":\"length\"" in body

    async def run():
        return await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)

    return sum(1 for r in asyncio.run(run()) if r is True)


def grpc_text_of(c, ids, n):
    return c.generate("--tokens", ",".join(map(str, ids)), "--max-tokens", str(n))["text"]


def cancelled_count(srv):
    m = re.search(r'^rwkv_requests_total\{code="cancelled",method="Completions"\} (\S+)', srv.metrics(), re.M)
    return float(m.group(1)) if m else 0.0


def keys_part(a, c):
    """API keys and tenants on the HTTP API, over TLS with the test certificates."""
    global TLS_CA
    tls = os.path.join(os.path.dirname(a.model), "tls")
    with tempfile.TemporaryDirectory() as d:
        keys = os.path.join(d, "keys.txt")
        with open(keys, "w") as f:
            f.write(f"{KEY_A} acme tokens_per_minute=20\n{KEY_B} globex\n")
        srv = Server(a.server, a.model, a.vocab, ["--api-keys", keys, "--tls-cert", os.path.join(tls, "server1.pem"),
                                                  "--tls-key", os.path.join(tls, "server1.key")])
        try:
            port = srv.http_port
            c.expect(curl(port, "/health")[0] == 0, "plain HTTP to the TLS port gets no answer")
            TLS_CA = os.path.join(tls, "ca1.pem")
            body = {"prompt": "hi", "max_tokens": 4, "ignore_eos": True}
            st, _, e = post(port, "/v1/completions", body)
            c.expect(st == 401 and e["error"]["type"] == "authentication_error", "no key: 401")
            st, _, e = post(port, "/v1/completions", body, ["Authorization: Bearer wrong-key-0123456789"])
            c.expect(st == 401 and "wrong-key" not in json.dumps(e), "wrong key: 401, the key not echoed")
            st, _, _ = post(port, "/v1/models", None, [f"Authorization: Bearer {KEY_A}"])
            c.expect(st == 200, "right key: 200")
            c.expect(curl(port, "/health")[0] == 200, "/health needs no key")
            # A session of tenant B is not there for tenant A.
            Checker(a.client, srv).run("--tls-ca", TLS_CA, "--tls-server-name", "localhost", "--api-key", KEY_B,
                                       "session", "create", "--id", "mine", "--prompt", "x")
            st, _, e = post(port, "/v1/completions", {**body, "session_id": "mine"}, [f"Authorization: Bearer {KEY_A}"])
            c.expect(st == 404, "another tenant's session: 404")
            st, _, _ = post(port, "/v1/completions", {**body, "session_id": "mine"}, [f"Authorization: Bearer {KEY_B}"])
            c.expect(st == 200, "the owner continues its session over HTTP")
            # acme's 20 tokens a minute: a 24-token request uses them up; the next is 429.
            post(port, "/v1/completions", {**body, "max_tokens": 24}, [f"Authorization: Bearer {KEY_A}"])
            st, head, e = post(port, "/v1/completions", body, [f"Authorization: Bearer {KEY_A}"])
            c.expect(st == 429 and "retry-after: 1" in head.lower() and e["error"]["type"] == "rate_limit_error",
                     f"tenant token limit: 429 with Retry-After ({st})")
        finally:
            TLS_CA = None
            srv.stop()


def sdk_part(a, c, srv):
    try:
        import openai
    except ImportError:
        print("SKIP: the openai package is not installed (scripts/install-deps.sh puts it in .tools/venv)")
        return 77
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{srv.http_port}/v1", api_key="unused", max_retries=0)
    model_id = os.path.splitext(os.path.basename(a.model))[0]
    c.expect([m.id for m in client.models.list().data] == [model_id], "SDK: models.list")
    msgs = [{"role": "user", "content": "Hello, who are you?"}]
    eos = {"ignore_eos": True}  # As the gRPC side (Checker.generate) runs.
    r = client.chat.completions.create(model=model_id, messages=msgs, max_tokens=30, temperature=0, extra_body=eos)
    grpc = c.generate("--prompt", "User: Hello, who are you?\n\nAssistant:", "--max-tokens", "30", "--stop", "\n\n")
    c.expect(r.choices[0].message.content == grpc["text"].lstrip(" "), "SDK: chat equals gRPC over the raw template")
    stream = client.chat.completions.create(model=model_id, messages=msgs, max_tokens=30, temperature=0, stream=True,
                                            stream_options={"include_usage": True}, extra_body=eos)
    parts, usage = [], None
    for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
        if chunk.usage:
            usage = chunk.usage
    c.expect("".join(parts) == r.choices[0].message.content, "SDK: streamed chat joins to the whole reply")
    c.expect(usage is not None and usage.completion_tokens == r.usage.completion_tokens, "SDK: stream usage")
    r = client.chat.completions.create(model=model_id, messages=msgs, max_tokens=5, n=2, temperature=1, seed=3,
                                       logprobs=True, top_logprobs=2)
    c.expect(len(r.choices) == 2 and len(r.choices[0].logprobs.content[0].top_logprobs) == 2,
             "SDK: n = 2 with logprobs")
    r = client.completions.create(model=model_id, prompt="Once upon", max_tokens=8, temperature=0, extra_body=eos)
    grpc = c.generate("--prompt", "Once upon", "--max-tokens", "8")
    c.expect(r.choices[0].text == grpc["text"], "SDK: greedy completions equal gRPC")
    try:
        client.chat.completions.create(model=model_id, messages=msgs, temperature=-1)
        c.expect(False, "SDK: bad temperature raises")
    except openai.BadRequestError as e:
        c.expect(e.status_code == 400 and "temperature" in str(e), "SDK: BadRequestError for a bad temperature")
    try:
        client.chat.completions.create(model=model_id, messages=msgs, extra_body={"session_id": "absent"})
        c.expect(False, "SDK: unknown session raises")
    except openai.NotFoundError:
        c.expect(True, "SDK: NotFoundError for an unknown session_id (RWKV extra in the body)")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--client", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--part", choices=["curl", "sdk"], required=True)
    a = ap.parse_args()
    srv = Server(a.server, a.model, a.vocab)
    c = Checker(a.client, srv)
    rc = 0
    try:
        if a.part == "curl":
            curl_part(a, c, srv)
            keys_part(a, c)
        else:
            rc = sdk_part(a, c, srv)
    finally:
        srv.stop()
    if c.failures:
        print(srv.text()[-4000:])
        print(f"{c.failures} check(s) failed")
        return 1
    if rc == 0:
        print("all HTTP API checks passed")
    return rc


if __name__ == "__main__":
    sys.exit(main())
