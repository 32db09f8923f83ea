#!/usr/bin/env python3
"""Durable sessions benchmark: what --state-dir costs a chat turn, on the CPU backend with the
RWKV-7 0.1B shape (random weights), through gRPC, in one run:

  * turn latency and turns/s with --persist-interval 0 (each turn's Final waits for its write) and
    5 (write-behind), interleaved rounds of `rwkv-client bench --sessions`, medians;
  * server start-up (process start to ready) with 0 and with 10,000 stored sessions;
  * the state file round trip and the index on start, from bench/state_bench.

  bench/durable_bench.py [--build build] [--rounds 3] [--duration 8] [--levels 1,8]
                         [--stored 10000] [--dir DIR]

--dir is where the state directories go (default: a temporary one under /tmp): the disk under it
is what the write figures measure.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(a, model, state_dir, *extra):
    log = tempfile.NamedTemporaryFile("w+", prefix="rwkv-durable-bench-", suffix=".log", delete=False)
    t0 = time.time()
    proc = subprocess.Popen(
        [os.path.join(a.build, "server/rwkv-server"), "--model", model,
         "--vocab", os.path.join(ROOT, "engine/vocab/rwkv_vocab_v20230424.txt"), "--host", "127.0.0.1", "--port", "0", "--http-port", "-1",
         "--metrics-port", "0", "--state-slots", "32", "--access-log", "false", "--state-dir", state_dir,
         "--max-sessions", "20000", *extra], stdout=log, stderr=subprocess.STDOUT)
    for _ in range(3000):
        text = open(log.name).read()
        m = re.search(r'msg="grpc listening" address=[\d.]+:(\d+)', text)
        p = re.search(r'msg="metrics listening" address=[\d.]+:(\d+)', text)
        if m and p and "msg=ready" in text:
            return proc, int(m.group(1)), int(p.group(1)), time.time() - t0, text
        if proc.poll() is not None:
            sys.exit("server failed:\n" + text)
        time.sleep(0.005)
    sys.exit("server did not start")


def stop(proc):
    proc.terminate()
    proc.wait(timeout=120)


def metric(port, name):
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    m = re.search(rf"^{name} (\S+)", text, re.M)
    return float(m.group(1)) if m else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--levels", default="1,8")
    ap.add_argument("--stored", type=int, default=10000)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    model = os.path.join(a.build, "bench", "rwkv7-0.1b-random.safetensors")
    if not os.path.exists(model):
        subprocess.run([sys.executable, os.path.join(ROOT, "tests/reference/make_fixtures.py"), "--bench-model", model],
                       check=True)
    work = tempfile.mkdtemp(prefix="rwkv-durable-bench-", dir=a.dir)
    levels = [int(x) for x in a.levels.split(",")]
    results = {(iv, n): {"p50": [], "p99": [], "tps": []} for iv in ("0", "5") for n in levels}
    writes = {"0": [], "5": []}
    try:
        for r in range(a.rounds):
            for iv in ("0", "5"):  # Interleaved: both settings see the same machine noise.
                d = os.path.join(work, f"turns-{iv}-{r}")
                proc, port, mport, _, _ = start(a, model, d, "--persist-interval", iv)
                out = os.path.join(work, f"turns-{iv}-{r}.json")
                w0 = metric(mport, "rwkv_state_disk_writes_total")
                subprocess.run([os.path.join(a.build, "client/rwkv-client"), "--server", f"127.0.0.1:{port}", "bench",
                                "--sessions", "--concurrency", a.levels, "--duration", str(a.duration),
                                "--prompt-tokens", "8", "--max-tokens", "8", "--no-progress", "--json", out],
                               check=True, stdout=subprocess.DEVNULL)
                writes[iv].append(metric(mport, "rwkv_state_disk_writes_total") - w0)
                stop(proc)
                for lvl in json.load(open(out))["levels"]:
                    res = results[(iv, lvl["concurrency"])]
                    res["p50"].append(lvl["request_s"]["p50"])
                    res["p99"].append(lvl["request_s"]["p99"])
                    res["tps"].append(lvl["requests_per_s"])
                shutil.rmtree(d)
        print(f"\nturns on sessions (8 prompt + 8 generated tokens), RWKV-7 0.1B shape, CPU, "
              f"{a.rounds} interleaved rounds of {a.duration:g} s per level, medians")
        print(f"{'streams':>8} {'interval':>9} {'turn p50':>10} {'turn p99':>10} {'turns/s':>9} {'vs 5 s':>8}")
        for n in levels:
            base = statistics.median(results[("5", n)]["tps"])
            for iv in ("0", "5"):
                res = results[(iv, n)]
                tps = statistics.median(res["tps"])
                print(f"{n:>8} {iv + ' s':>9} {statistics.median(res['p50']) * 1e3:>8.1f}ms "
                      f"{statistics.median(res['p99']) * 1e3:>8.1f}ms {tps:>9.2f} {tps / base:>8.3f}")
        print(f"state writes per run: interval 0: {statistics.median(writes['0']):.0f}, "
              f"interval 5 s: {statistics.median(writes['5']):.0f} (coalesced)")

        # Start-up with stored sessions (the files are real states of this model).
        startup = {}
        for n in (0, a.stored):
            d = os.path.join(work, f"stored-{n}")
            if n:
                subprocess.run([os.path.join(a.build, "bench/state_bench"), "--model", model, "--make", d,
                                "--count", str(n)], check=True, stderr=subprocess.DEVNULL)
            times, index = [], []
            for _ in range(3):
                proc, _, _, t, text = start(a, model, d)
                m = re.search(r'msg="state dir indexed".*?sessions=(\d+).*?seconds=([\d.]+)', text)
                assert m and int(m.group(1)) == n, text
                times.append(t)
                index.append(float(m.group(2)))
                stop(proc)
            startup[n] = (statistics.median(times), statistics.median(index))
        print(f"\nserver start to ready (model load included), median of 3")
        for n, (t, idx) in startup.items():
            print(f"  {n:>6} stored sessions: {t:.3f} s (index {idx * 1e3:.1f} ms)")
        print()
        subprocess.run([os.path.join(a.build, "bench/state_bench"), "--rounds", "30", "--index-sessions",
                        str(a.stored), "--dir", os.path.join(work, "state_bench")], check=True,
                       stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
