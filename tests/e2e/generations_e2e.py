#!/usr/bin/env python3
"""End to end for every generation: the real rwkv-server and rwkv-client binaries serving tiny
random RWKV-4 (with the GPT-NeoX tokenizer), RWKV-5.2 and RWKV-6 (with a byte vocabulary and a
state-tuning start state) checkpoints written here. Each server's greedy stream is checked
against rwkv-cli's logits of the same tokens (the argmax at every generated position), and the
NeoX server's Tokenize against the Hugging Face ids stored with the tokenizer fixture.

  generations_e2e.py --server S --client C --cli RWKV_CLI --fixtures DIR   (numpy only)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import make_fixtures_v456  # noqa: E402
import tensorio  # noqa: E402
from e2e_test import Checker, Server  # noqa: E402

SHAPE = dict(n_layer=2, n_embd=32, head_size=8)


def write_model(path, make, vocab, seed):
    t = make(np.random.default_rng(seed), vocab=vocab, **SHAPE)
    tensorio.write_safetensors(path, t, {k: "f32" for k in t})


def cli_argmax(cli, model, tokens, state=None):
    args = [cli, "logits", "--model", model, "--tokens", ",".join(map(str, tokens))]
    if state:
        args += ["--state", state]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120).stdout
    return [int(np.argmax([float(v) for v in line.split()])) for line in out.strip().split("\n")]


def main():
    ap = argparse.ArgumentParser()
    for f in ("server", "client", "cli", "fixtures"):
        ap.add_argument("--" + f, required=True)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rwkv-generations-")
    byte_vocab = os.path.join(a.fixtures, "byte-vocab.txt")
    neox = os.path.join(a.fixtures, "tiny-neox-tokenizer.json")
    tuned = os.path.join(tmp, "tuned.safetensors")
    H, N = SHAPE["n_embd"] // SHAPE["head_size"], SHAPE["head_size"]
    ts = {f"blocks.{l}.att.time_state": np.random.default_rng(5).normal(0, 0.5, (H, N, N)) for l in range(2)}
    tensorio.write_safetensors(tuned, ts, {k: "f32" for k in ts})
    cases = [
        ("rwkv4", make_fixtures_v456.random_rwkv4, 1536, neox, ["--tokenizer", "neox"], "neox", None),
        ("rwkv5.2", make_fixtures_v456.random_rwkv5, 257, byte_vocab, [], "world", None),
        ("rwkv6", make_fixtures_v456.random_rwkv6, 257, byte_vocab, ["--states", "tuned=" + tuned], "world", tuned),
    ]
    failures = 0
    for i, (arch, make, vocab, tok_file, extra, tok_kind, state) in enumerate(cases):
        model = os.path.join(tmp, arch + ".safetensors")
        write_model(model, make, vocab, 100 + i)
        srv = Server(a.server, model, tok_file, extra)
        c = Checker(a.client, srv)
        try:
            info = c.run("info").stdout
            c.expect(f"{arch} L2 C32" in info and f"tokenizer:    {tok_kind}" in info, f"{arch}: info names the model and the {tok_kind} tokenizer")
            prompt = [3, 17, 42, 5]
            got = c.generate("--tokens", ",".join(map(str, prompt)), "--max-tokens", "12")["token_ids"]
            want = cli_argmax(a.cli, model, prompt + got[:-1])[len(prompt) - 1:]
            c.expect(len(got) == 12 and got == want, f"{arch}: greedy stream equals rwkv-cli's argmax at every position")
            if tok_kind == "neox":
                stored = json.load(open(os.path.join(a.fixtures, "tiny-neox-cases.json")))["cases"]
                same = all(c.tokens(k["text"]) == k["ids"] for k in stored if k["text"])
                c.expect(same, f"{arch}: Tokenize equals Hugging Face tokenizers on the stored cases")
            if state:
                tuned_ids = c.generate("--tokens", ",".join(map(str, prompt)), "--max-tokens", "12",
                                       "--state", "tuned")["token_ids"]
                want = cli_argmax(a.cli, model, prompt + tuned_ids[:-1], state)[len(prompt) - 1:]
                c.expect(tuned_ids == want and tuned_ids != got,
                         f"{arch}: --state tuned streams what rwkv-cli computes from the tuned state")
            c.expect(srv.stop() == 0, f"{arch}: server exits 0 on SIGTERM")
        finally:
            if srv.proc.poll() is None:
                srv.proc.kill()
        if c.failures:
            print(open(srv.log.name).read()[-3000:])
        failures += c.failures
    print(f"{failures} check(s) failed" if failures else "all generation checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
