#!/usr/bin/env python3
"""rwkv-cli against the float64 reference, the way an outside tool checks parity.

For every fixture: run `rwkv-cli logits` (several chunk sizes), parse its %.9g lines, and compare each
position with rwkv7_ref.py evaluated live on the weights read from the safetensors twin of the file.
Tolerance 1e-5 relative L2 per position (fp32 engine vs float64 reference; see model_test.cc).
Also checks the committed .ref.f64 files against the live reference, and the CLI's other commands.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv7_ref  # noqa: E402
import tensorio  # noqa: E402

TOL = 1e-5
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)


def run(cli, *args):
    return subprocess.run([cli, *args], capture_output=True, text=True)


def cli_logits(cli, model, tokens, chunk):
    r = run(cli, "logits", "--model", model, "--tokens", ",".join(map(str, tokens)), "--chunk", str(chunk))
    if r.returncode != 0:
        raise RuntimeError(f"rwkv-cli logits failed on {model}: {r.stderr}")
    return np.array([[float(x) for x in line.split(" ")] for line in r.stdout.strip().split("\n")])


def rel_l2(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--vocab", required=True)
    args = ap.parse_args()
    fx = args.fixtures
    manifest = json.load(open(os.path.join(fx, "tiny-rwkv7.json")))
    tokens = manifest["tokens"]
    worst = 0.0
    for f in manifest["fixtures"]:
        committed = np.fromfile(os.path.join(fx, f["reference"]), dtype="<f8").reshape(len(tokens), -1)
        twin = [x for x in f["files"] if x.endswith(".safetensors") and "fla" not in x]
        if twin:
            live = rwkv7_ref.Rwkv7(tensorio.read_safetensors(os.path.join(fx, twin[0]))).logits_sequence(tokens)
            # Same float64 math on the same weights: only summation order may differ.
            check(np.abs(live - committed).max() < 1e-9, f"committed {f['reference']} differs from the live reference")
        else:
            live = committed
        for name in f["files"]:
            for chunk in (1, 4, len(tokens)):
                got = cli_logits(args.cli, os.path.join(fx, name), tokens, chunk)
                check(got.shape == live.shape, f"{name} chunk {chunk}: shape {got.shape}, expected {live.shape}")
                for pos in range(len(tokens)):
                    err = rel_l2(got[pos], live[pos])
                    worst = max(worst, err)
                    check(err < TOL, f"{name} chunk {chunk} position {pos}: relative L2 {err:.3g} >= {TOL}")
    print(f"logits: worst relative L2 over all fixtures, chunks and positions = {worst:.3g} (tolerance {TOL})")

    r = run(args.cli, "tokenize", "--vocab", args.vocab, "--text", "Hello world")
    check(r.returncode == 0 and r.stdout.strip() == "33155,40213", f"tokenize: {r.stdout!r} {r.stderr!r}")
    r = run(args.cli, "detokenize", "--vocab", args.vocab, "--tokens", "12605,10402,10997,14446")
    check(r.returncode == 0 and r.stdout == "我们发现\n", f"detokenize: {r.stdout!r} {r.stderr!r}")
    bad = os.path.join(fx, "bad", "evil_global.pth")
    r = run(args.cli, "inspect", "--model", bad)
    check(r.returncode != 0 and bad in r.stderr and "os.system" in r.stderr, f"bad file: {r.returncode} {r.stderr!r}")
    r = run(args.cli, "logits", "--model", os.path.join(fx, "tiny-rwkv7-f32.pth"), "--tokens", "1,256")
    check(r.returncode != 0 and "token 256" in r.stderr and "[0, 256)" in r.stderr, f"token range: {r.stderr!r}")
    r = run(args.cli, "logits", "--tokens", "1")
    check(r.returncode != 0 and "--model" in r.stderr, f"missing flag: {r.stderr!r}")
    r = run(args.cli, "inspect", "--model", os.path.join(fx, "tiny-rwkv7-bf16.pth"))
    check(r.returncode == 0 and "rwkv7" in r.stdout and "state bytes:     13824" in r.stdout, f"inspect: {r.stdout!r}")
    model = os.path.join(fx, "tiny-rwkv7-f32.pth")
    gen = ["generate", "--model", model, "--vocab", args.vocab, "--prompt", "Q", "--max-tokens", "24"]
    a, b = run(args.cli, *gen, "--seed", "5"), run(args.cli, *gen, "--seed", "5")
    c = run(args.cli, *gen, "--seed", "6")
    check(a.returncode == 0 and a.stdout == b.stdout, f"generate: same seed, different text: {a.stderr!r}")
    check(a.stdout != c.stdout, "generate: seeds 5 and 6 gave the same 24 tokens")
    check(a.stdout.startswith("Q") and "generated" in a.stderr, f"generate output: {a.stdout!r} {a.stderr!r}")
    r = run(args.cli, *gen[:-4], "--prompt", "hello", "--max-tokens", "3")
    check(r.returncode != 0 and "outside the model's vocabulary [0, 256)" in r.stderr, f"prompt vocab: {r.stderr!r}")
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("all CLI checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
