#!/usr/bin/env python3
"""Serving benchmark: aggregate tokens/s through gRPC (rwkv-server + rwkv-client bench) beside the
engine-only decode figure at the same batch (engine_bench), in one run, on the CPU backend with
the RWKV-7 0.1B shape.

  bench/serve_bench.py [--build build] [--levels 1,4,16,64] [--duration 20] [--max-tokens 256]
                       [--prompt-tokens 1] [--out build/bench/serve]

Prompts default to 1 token so that the gRPC figure is decode, like the engine figure (a longer
prompt adds prefill work to the steps that the engine-only decode number does not contain).
Requests use greedy sampling and ignore end-of-text, so every request generates max-tokens.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--levels", default="1,4,16,64")
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--prompt-tokens", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    out = a.out or os.path.join(a.build, "bench", "serve")
    os.makedirs(out, exist_ok=True)
    levels = [int(x) for x in a.levels.split(",")]
    model = os.path.join(a.build, "bench", "rwkv7-0.1b-random.safetensors")
    if not os.path.exists(model):
        print(f"making {model} ...", flush=True)
        subprocess.run([sys.executable, os.path.join(ROOT, "tests/reference/make_fixtures.py"), "--bench-model", model],
                       check=True)

    print("engine_bench (engine only, same shape) ...", flush=True)
    engine_json = os.path.join(out, "engine.json")
    subprocess.run([os.path.join(a.build, "bench/engine_bench"), "--batches", a.levels, "--prompt", "16",
                    "--seconds", "3", "--json", engine_json], check=True, stdout=subprocess.DEVNULL)
    engine = json.load(open(engine_json))
    engine_tps = {r["batch"]: r["tokens_per_s"] for r in engine["decode"]}

    log = open(os.path.join(out, "server.log"), "w+")
    server = subprocess.Popen(
        [os.path.join(a.build, "server/rwkv-server"), "--model", model,
         "--vocab", os.path.join(ROOT, "engine/vocab/rwkv_vocab_v20230424.txt"), "--host", "127.0.0.1", "--port", "0", "--http-port", "-1",
         "--metrics-port", "-1", "--state-slots", str(max(levels)), "--step-tokens", "512", "--access-log", "false",
         "--queue-length", "4096"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        port = None
        for _ in range(600):
            text = open(log.name).read()
            m = re.search(r'msg="grpc listening" address=[\d.]+:(\d+)', text)
            if m and "msg=ready" in text:
                port = int(m.group(1))
                break
            if server.poll() is not None:
                sys.exit("server failed:\n" + text)
            time.sleep(0.1)
        client_json = os.path.join(out, "client.json")
        subprocess.run([os.path.join(a.build, "client/rwkv-client"), "--server", f"127.0.0.1:{port}", "bench",
                        "--concurrency", a.levels, "--duration", str(a.duration), "--max-tokens", str(a.max_tokens),
                        "--prompt-tokens", str(a.prompt_tokens), "--json", client_json, "--plot", out], check=True)
    finally:
        server.terminate()
        server.wait(timeout=60)
    client = json.load(open(client_json))

    rows = []
    print(f"\n{engine['model']}, CPU backend, {engine['threads']} threads; prompt {a.prompt_tokens} token(s), "
          f"{a.max_tokens} generated per request, {a.duration:g} s per level\n")
    print(f"{'streams':>8} {'engine tok/s':>13} {'gRPC tok/s':>11} {'gRPC/engine':>12} {'TTFT p50':>9} "
          f"{'ITL p50':>8} {'ITL p99':>8} {'errors':>7}")
    for lvl in client["levels"]:
        n = lvl["concurrency"]
        e = engine_tps.get(n)
        ratio = lvl["tokens_per_s"] / e if e else None
        errors = sum(lvl["errors"].values())
        rows.append({"streams": n, "engine_tokens_per_s": e, "grpc_tokens_per_s": lvl["tokens_per_s"], "ratio": ratio,
                     "ttft_p50_s": lvl["ttft_s"]["p50"], "itl_p50_s": lvl["itl_s"]["p50"],
                     "itl_p99_s": lvl["itl_s"]["p99"], "errors": errors})
        print(f"{n:>8} {e:>13.1f} {lvl['tokens_per_s']:>11.1f} {ratio:>12.3f} {lvl['ttft_s']['p50'] * 1e3:>7.1f}ms "
              f"{lvl['itl_s']['p50'] * 1e3:>6.1f}ms {lvl['itl_s']['p99'] * 1e3:>6.1f}ms {errors:>7}")
    json.dump({"model": engine["model"], "rows": rows, "engine": engine, "client": client},
              open(os.path.join(out, "serve_bench.json"), "w"), indent=1)
    print(f"\nJSON and plots in {out}")


if __name__ == "__main__":
    main()
