#!/usr/bin/env python3
"""The OpenAI-compatible HTTP API under load, on the CPU backend with the RWKV-7 0.1B shape
(random weights), in one run:

  replay  multi-turn chat replay: C concurrent conversations of T turns, each turn resending the
          whole history through /v1/chat/completions (streamed), once against a server with the
          prefix-state cache and once against one without. Prompt tokens sent and computed, hit
          rate, TTFT p50/p99 per turn index, tokens/s, wall time.
  ratio   aggregate decode tokens/s through HTTP (/v1/completions, SSE) against gRPC (rwkv-client
          bench) at the same concurrency, prompt and length, levels interleaved on one server.

  bench/http_bench.py [--build build] [--part replay,ratio] [--conversations 32] [--turns 8]
                      [--levels 1,16,64] [--duration 15] [--out build/bench/http]

Clients are Python threads (http.client, one connection each); they parse every SSE event.
"""
import argparse
import http.client
import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ("the river stone light garden winter market letter morning window silver story engine voice "
         "north paper island quiet bridge summer orange signal forest harbor candle mountain").split()


def start_server(build, model, extra, log_path):
    log = open(log_path, "w+")
    proc = subprocess.Popen(
        [os.path.join(build, "server/rwkv-server"), "--model", model,
         "--vocab", os.path.join(ROOT, "engine/vocab/rwkv_vocab_v20230424.txt"), "--host", "127.0.0.1",
         "--port", "0", "--http-port", "0", "--metrics-port", "-1", "--state-slots", "64", "--access-log", "false",
         "--queue-length", "4096", "--max-prompt-tokens", "65536", *extra],
        stdout=log, stderr=subprocess.STDOUT)
    for _ in range(1200):
        text = open(log_path).read()
        g = re.search(r'msg="grpc listening" address=[\d.]+:(\d+)', text)
        h = re.search(r'msg="http listening" address=[\d.]+:(\d+)', text)
        if g and h and "msg=ready" in text:
            return proc, int(g.group(1)), int(h.group(1))
        if proc.poll() is not None:
            sys.exit("server failed:\n" + text)
        time.sleep(0.1)
    sys.exit("server did not start")


def stream(port, path, body):
    """POSTs a streamed request; returns (ttft seconds, text, usage, chunk count)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"{resp.status}: {resp.read()[:300]}")
    ttft, text, usage, chunks = None, [], None, 0
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            break
        ev = json.loads(data)
        if ev.get("usage"):
            usage = ev["usage"]
        for ch in ev.get("choices", []):
            piece = ch.get("delta", {}).get("content") if "delta" in ch else ch.get("text")
            if piece:
                if ttft is None:
                    ttft = time.perf_counter() - t0
                text.append(piece)
                chunks += 1
    conn.close()
    return ttft or (time.perf_counter() - t0), "".join(text), usage, chunks


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def replay(port, conversations, turns, reply_tokens, seed):
    """Runs the conversations concurrently; per turn index: ttfts, prompt and cached tokens."""
    per_turn = [{"ttft": [], "prompt": 0, "cached": 0, "hits": 0, "completion": 0} for _ in range(turns)]
    lock = threading.Lock()
    errors = []

    def conversation(c):
        rng = random.Random(seed * 7919 + c)
        messages = [{"role": "system", "content": f"You are assistant number {c}. " +
                     " ".join(rng.choice(WORDS) for _ in range(40))}]
        try:
            for t in range(turns):
                messages.append({"role": "user", "content": " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 40)))})
                body = {"messages": messages, "max_tokens": reply_tokens, "temperature": 0, "ignore_eos": True,
                        "stream": True, "stream_options": {"include_usage": True}}
                ttft, text, usage, _ = stream(port, "/v1/chat/completions", body)
                messages.append({"role": "assistant", "content": text})
                with lock:
                    pt = per_turn[t]
                    pt["ttft"].append(ttft)
                    pt["prompt"] += usage["prompt_tokens"]
                    cached = usage["prompt_tokens_details"]["cached_tokens"]
                    pt["cached"] += cached
                    pt["hits"] += cached > 0
                    pt["completion"] += usage["completion_tokens"]
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"conversation {c}: {e}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=conversation, args=(c,)) for c in range(conversations)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    if errors:
        sys.exit("replay failed: " + "; ".join(errors[:3]))
    return per_turn, wall


def http_load(port, concurrency, duration, prompt_tokens, max_tokens, seed):
    """Aggregate generated tokens/s of `concurrency` streaming clients over `duration` seconds."""
    stop = time.perf_counter() + duration
    counts = [0] * concurrency
    ttfts = []

    def worker(w):
        rng = random.Random(seed * 1000003 + w)
        while time.perf_counter() < stop:
            ids = [1 + rng.randrange(65535) for _ in range(prompt_tokens)]
            body = {"prompt": ids, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "stream": True,
                    "stream_options": {"include_usage": True}}
            ttft, _, usage, _ = stream(port, "/v1/completions", body)
            counts[w] += usage["completion_tokens"]
            ttfts.append(ttft)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(counts) / (time.perf_counter() - t0), statistics.median(ttfts)


def grpc_load(build, port, concurrency, duration, prompt_tokens, max_tokens, out):
    path = os.path.join(out, f"grpc-{concurrency}.json")
    subprocess.run([os.path.join(build, "client/rwkv-client"), "--server", f"127.0.0.1:{port}", "bench",
                    "--concurrency", str(concurrency), "--duration", str(duration), "--max-tokens", str(max_tokens),
                    "--prompt-tokens", str(prompt_tokens), "--no-progress", "--json", path],
                   check=True, stdout=subprocess.DEVNULL)
    lvl = json.load(open(path))["levels"][0]
    return lvl["tokens_per_s"], lvl["ttft_s"]["p50"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--part", default="replay,ratio")
    ap.add_argument("--conversations", type=int, default=32)
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--reply-tokens", type=int, default=32)
    ap.add_argument("--levels", default="1,16,64")
    ap.add_argument("--duration", type=float, default=15)
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--cache-bytes", default="4GiB")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    out = a.out or os.path.join(a.build, "bench", "http")
    os.makedirs(out, exist_ok=True)
    model = os.path.join(a.build, "bench", "rwkv7-0.1b-random.safetensors")
    if not os.path.exists(model):
        print(f"making {model} ...", flush=True)
        subprocess.run([sys.executable, os.path.join(ROOT, "tests/reference/make_fixtures.py"), "--bench-model", model],
                       check=True)
    parts = a.part.split(",")
    result = {}

    if "replay" in parts:
        runs = {}
        for name, extra in (("cache", ["--prefix-cache-bytes", a.cache_bytes]), ("no cache", ["--prefix-cache-bytes", "0"])):
            proc, _, hport = start_server(a.build, model, extra, os.path.join(out, f"server-{name.replace(' ', '-')}.log"))
            try:
                print(f"replay ({name}): {a.conversations} conversations x {a.turns} turns ...", flush=True)
                runs[name] = replay(hport, a.conversations, a.turns, a.reply_tokens, seed=1)
            finally:
                proc.terminate()
                proc.wait(timeout=120)
        print(f"\nChat replay: {a.conversations} concurrent conversations x {a.turns} turns, each resending its "
              f"history; {a.reply_tokens}-token replies; CPU backend, RWKV-7 0.1B shape\n")
        print(f"{'':>9} {'prompt tok':>11} {'computed':>9} {'hit rate':>9} {'tok/s':>7} {'wall s':>7}")
        rows = {}
        for name, (per_turn, wall) in runs.items():
            prompt = sum(t["prompt"] for t in per_turn)
            cached = sum(t["cached"] for t in per_turn)
            hits = sum(t["hits"] for t in per_turn)
            completion = sum(t["completion"] for t in per_turn)
            n = a.conversations * a.turns
            rows[name] = {"prompt_tokens": prompt, "computed_prompt_tokens": prompt - cached, "hit_rate": hits / n,
                          "generated_tokens_per_s": completion / wall, "wall_s": wall,
                          "ttft_p50_s": [statistics.median(t["ttft"]) for t in per_turn],
                          "ttft_p99_s": [pct(t["ttft"], 99) for t in per_turn]}
            print(f"{name:>9} {prompt:>11} {prompt - cached:>9} {hits / n:>9.2f} {completion / wall:>7.1f} {wall:>7.1f}")
        print(f"\n{'turn':>5} {'cache p50':>10} {'cache p99':>10} {'none p50':>10} {'none p99':>10}   TTFT (s)")
        for t in range(a.turns):
            c, nc = rows["cache"], rows["no cache"]
            print(f"{t + 1:>5} {c['ttft_p50_s'][t]:>10.3f} {c['ttft_p99_s'][t]:>10.3f} {nc['ttft_p50_s'][t]:>10.3f} "
                  f"{nc['ttft_p99_s'][t]:>10.3f}")
        result["replay"] = rows

    if "ratio" in parts:
        proc, gport, hport = start_server(a.build, model, [], os.path.join(out, "server-ratio.log"))
        rows = []
        try:
            print(f"\nHTTP vs gRPC: prompt {a.prompt_tokens} tokens, {a.max_tokens} generated, {a.duration:g} s "
                  f"per point, interleaved\n", flush=True)
            print(f"{'streams':>8} {'gRPC tok/s':>11} {'HTTP tok/s':>11} {'HTTP/gRPC':>10} {'gRPC TTFT':>10} {'HTTP TTFT':>10}")
            for lvl in [int(x) for x in a.levels.split(",")]:
                g, gt = grpc_load(a.build, gport, lvl, a.duration, a.prompt_tokens, a.max_tokens, out)
                h, ht = http_load(hport, lvl, a.duration, a.prompt_tokens, a.max_tokens, seed=lvl)
                rows.append({"streams": lvl, "grpc_tokens_per_s": g, "http_tokens_per_s": h, "ratio": h / g,
                             "grpc_ttft_p50_s": gt, "http_ttft_p50_s": ht})
                print(f"{lvl:>8} {g:>11.1f} {h:>11.1f} {h / g:>10.3f} {gt * 1e3:>8.1f}ms {ht * 1e3:>8.1f}ms", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=120)
        result["ratio"] = rows
    json.dump(result, open(os.path.join(out, "http_bench.json"), "w"), indent=1)
    print(f"\nJSON in {out}/http_bench.json")


if __name__ == "__main__":
    main()
