#!/usr/bin/env python3
"""CPU weight matrix types side by side: engine_bench for each --dtype, interleaved in rounds
(f32, bf16, f16, int8, int4, f32, ...) so that a noisy machine slows every type alike, medians
over the rounds; and the peak RSS of loading the 0.1B-shape benchmark checkpoint (bf16 on disk)
with each type (`rwkv-cli inspect --dtype`, read from the child's rusage).

  bench/dtype_bench.py [--build build] [--rounds 3] [--seconds 3] [--dtypes f32,bf16,f16,int8,int4]
                       [--batches 1,16] [--prompt 512] [--json FILE]

Prints a Markdown table and writes the numbers as JSON (default: BUILD/bench/dtype_bench.json).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def engine_bench(build, dtype, batches, prompt, seconds):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([os.path.join(build, "bench/engine_bench"), "--dtype", dtype, "--batches", batches,
                        "--prompt", str(prompt), "--seconds", str(seconds), "--json", f.name],
                       check=True, stdout=subprocess.DEVNULL)
        return json.load(open(f.name))


def peak_rss_mb(build, model, dtype):
    """Maximum resident set size of a process that loads `model` with `dtype` and exits."""
    p = subprocess.Popen([os.path.join(build, "tools/rwkv-cli"), "inspect", "--model", model, "--dtype", dtype],
                         stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    if status != 0:
        raise SystemExit(f"rwkv-cli inspect --dtype {dtype} failed ({status})")
    return usage.ru_maxrss / 1024.0  # KiB on Linux.


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--dtypes", default="f32,bf16,f16,int8,int4")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--json")
    args = ap.parse_args()
    dtypes = args.dtypes.split(",")
    batches = [int(b) for b in args.batches.split(",")]

    runs = {d: [] for d in dtypes}
    for r in range(args.rounds):
        for d in dtypes:
            print(f"round {r + 1}/{args.rounds}: {d}", file=sys.stderr, flush=True)
            runs[d].append(engine_bench(args.build, d, args.batches, args.prompt, args.seconds))

    model = os.path.join(args.build, "bench", "rwkv7-0.1b-random.safetensors")  # As bench/http_bench.py.
    if not os.path.exists(model):
        subprocess.run([sys.executable, os.path.join(ROOT, "tests/reference/make_fixtures.py"), "--bench-model", model],
                       check=True)
    rss = {d: peak_rss_mb(args.build, model, d) for d in dtypes}

    def decode(run, batch):
        return next(p["tokens_per_s"] for p in run["decode"] if p["batch"] == batch)

    rows = {}
    for d in dtypes:
        rs = runs[d]
        row = {
            "weight_bytes_per_step": rs[0]["weight_bytes_per_step"],
            "read_bandwidth_gbs_best": statistics.median(x["read_bandwidth_gbs_best"] for x in rs),
            "decode": {b: statistics.median(decode(x, b) for x in rs) for b in batches},
            "decode_rounds": {b: [round(decode(x, b), 1) for x in rs] for b in batches},
            "prefill": statistics.median(x["prefill"]["tokens_per_s"] for x in rs) if args.prompt else None,
            "peak_rss_mb": rss[d],
        }
        row["floor_tok_s"] = row["read_bandwidth_gbs_best"] * 1e9 / row["weight_bytes_per_step"]
        rows[d] = row

    ref = rows.get("f32")
    b1, bmax = batches[0], batches[-1]
    print(f"\n{rs[0]['model']}, {rs[0]['threads']} threads, {args.rounds} interleaved rounds, medians\n")
    print(f"| matrices | MB read per step | floor tok/s | decode b{b1} tok/s (rounds) | vs f32 | of floor "
          f"| decode b{bmax} tok/s | b{bmax} / b{b1} | prefill {args.prompt} tok/s | vs f32 | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for d in dtypes:
        r = rows[d]
        vs = r["decode"][b1] / ref["decode"][b1] if ref else float("nan")
        pvs = r["prefill"] / ref["prefill"] if ref and r["prefill"] else float("nan")
        print(f"| {d} | {r['weight_bytes_per_step'] / 1e6:.0f} | {r['floor_tok_s']:.1f} "
              f"| {r['decode'][b1]:.1f} ({', '.join(str(x) for x in r['decode_rounds'][b1])}) | {vs:.2f} "
              f"| {r['decode'][b1] / r['floor_tok_s']:.2f} | {r['decode'][bmax]:.1f} "
              f"| {r['decode'][bmax] / r['decode'][b1]:.1f}x | {r['prefill'] or 0:.1f} | {pvs:.2f} "
              f"| {r['peak_rss_mb']:.0f} |")
    out = args.json or os.path.join(args.build, "bench/dtype_bench.json")
    with open(out, "w") as f:
        json.dump({"model": rs[0]["model"], "threads": rs[0]["threads"], "rounds": args.rounds, "dtypes": rows}, f,
                  indent=1)
    print(f"\njson: {out}")


if __name__ == "__main__":
    main()
