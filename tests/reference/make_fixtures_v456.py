#!/usr/bin/env python3
"""Writes tiny random RWKV-4, RWKV-5.0/5.1/5.2 and RWKV-6 checkpoints with the official tensor names and
shapes (docs/rwkv-spec.md sections 3-5), as .pth (torch.save) and .safetensors, with float64
reference logits of every position from rwkv456_ref.py and a manifest.

  make_fixtures_v456.py OUT_DIR        (needs numpy and torch; the output is committed)
"""
import argparse
import collections
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv456_ref  # noqa: E402
import tensorio  # noqa: E402
from make_fixtures import save_pth  # noqa: E402

TINY = dict(n_layer=3, n_embd=64, head_size=16, vocab=256)
N_TOKENS = 24


def common(rng, t, C, V):
    t["emb.weight"] = rng.normal(0, 1, (V, C))
    t["blocks.0.ln0.weight"] = 1 + 0.1 * rng.normal(size=C)
    t["blocks.0.ln0.bias"] = 0.1 * rng.normal(size=C)


def lns(rng, t, p, C):
    for ln in ("ln1", "ln2"):
        t[p + ln + ".weight"] = 1 + 0.1 * rng.normal(size=C)
        t[p + ln + ".bias"] = 0.1 * rng.normal(size=C)


def mat(rng, out_dim, in_dim):
    return rng.normal(0, 1 / np.sqrt(in_dim), (out_dim, in_dim))


def tail(rng, t, C, V):
    t["ln_out.weight"] = 1 + 0.1 * rng.normal(size=C)
    t["ln_out.bias"] = 0.1 * rng.normal(size=C)
    t["head.weight"] = mat(rng, V, C)


def v4_ffn(rng, t, p, C, F):
    f = p + "ffn."
    t[f + "time_mix_k"] = rng.uniform(0, 1, (1, 1, C))
    t[f + "time_mix_r"] = rng.uniform(0, 1, (1, 1, C))
    t[f + "key.weight"] = mat(rng, F, C)
    t[f + "receptance.weight"] = mat(rng, C, C)
    t[f + "value.weight"] = mat(rng, C, F)


def random_rwkv4(rng, n_layer, n_embd, vocab, **_):
    C, V, F = n_embd, vocab, 4 * n_embd
    t = collections.OrderedDict()
    common(rng, t, C, V)
    for l in range(n_layer):
        p = f"blocks.{l}."
        lns(rng, t, p, C)
        a = p + "att."
        t[a + "time_decay"] = rng.uniform(-3, 1, C)
        t[a + "time_first"] = rng.normal(0, 0.5, C)
        for c in "kvr":
            t[a + "time_mix_" + c] = rng.uniform(0, 1, (1, 1, C))
        for m in ("key", "value", "receptance", "output"):
            t[a + m + ".weight"] = mat(rng, C, C)
        v4_ffn(rng, t, p, C, F)
    tail(rng, t, C, V)
    return t


def random_rwkv5(rng, n_layer, n_embd, head_size, vocab, version="5.2", **_):
    """v5.2 (gate, per-channel decay and time_faaaa), v5.1 (gate, per-head decay and time_faaaa) or
    v5.0 (no gate, per-head decay, log-space bonus time_first)."""
    C, V, F, N = n_embd, vocab, 4 * n_embd, head_size
    H = C // N
    gated, per_head = version != "5.0", (H, N) if version == "5.2" else H
    t = collections.OrderedDict()
    common(rng, t, C, V)
    for l in range(n_layer):
        p = f"blocks.{l}."
        lns(rng, t, p, C)
        a = p + "att."
        for c in ("kvrg" if gated else "kvr"):
            t[a + "time_mix_" + c] = rng.uniform(0, 1, (1, 1, C))
        t[a + "time_decay"] = rng.uniform(-3, 0.5, per_head)
        if gated:
            t[a + "time_faaaa"] = rng.normal(0, 0.5, per_head)
        else:
            t[a + "time_first"] = rng.normal(-0.5, 0.5, per_head)
        for m in ("receptance", "key", "value") + (("gate",) if gated else ()) + ("output",):
            t[a + m + ".weight"] = mat(rng, C, C)
        t[a + "ln_x.weight"] = 1 + 0.1 * rng.normal(size=C)
        t[a + "ln_x.bias"] = 0.1 * rng.normal(size=C)
        v4_ffn(rng, t, p, C, F)
    tail(rng, t, C, V)
    return t


def random_rwkv6(rng, n_layer, n_embd, head_size, vocab, dm=8, dd=8, **_):
    C, V, N = n_embd, vocab, head_size
    H, F = C // N, int(3.5 * C) // 32 * 32
    t = collections.OrderedDict()
    common(rng, t, C, V)
    for l in range(n_layer):
        p = f"blocks.{l}."
        lns(rng, t, p, C)
        a = p + "att."
        for c in "xwkvrg":
            t[a + "time_maa_" + c] = rng.uniform(0, 1, (1, 1, C))
        t[a + "time_maa_w1"] = rng.normal(0, 1 / np.sqrt(C), (C, 5 * dm))
        t[a + "time_maa_w2"] = rng.normal(0, 0.5 / np.sqrt(dm), (5, dm, C))
        t[a + "time_decay"] = rng.uniform(-6, 0, (1, 1, C))
        t[a + "time_decay_w1"] = rng.normal(0, 1 / np.sqrt(C), (C, dd))
        t[a + "time_decay_w2"] = rng.normal(0, 0.5 / np.sqrt(dd), (dd, C))
        t[a + "time_faaaa"] = rng.normal(0, 0.5, (H, N))
        for m in ("receptance", "key", "value", "gate", "output"):
            t[a + m + ".weight"] = mat(rng, C, C)
        t[a + "ln_x.weight"] = 1 + 0.1 * rng.normal(size=C)
        t[a + "ln_x.bias"] = 0.1 * rng.normal(size=C)
        f = p + "ffn."
        t[f + "time_maa_k"] = rng.uniform(0, 1, (1, 1, C))
        t[f + "time_maa_r"] = rng.uniform(0, 1, (1, 1, C))
        t[f + "key.weight"] = mat(rng, F, C)
        t[f + "receptance.weight"] = mat(rng, C, C)
        t[f + "value.weight"] = mat(rng, C, F)
    tail(rng, t, C, V)
    return t


MODELS = (
    ("rwkv4", random_rwkv4, rwkv456_ref.Rwkv4),
    ("rwkv5.2", random_rwkv5, rwkv456_ref.Rwkv5),
    ("rwkv6", random_rwkv6, rwkv456_ref.Rwkv6),
    # Appended after the others, so that their random draws (and files) stay as they were.
    ("rwkv5.0", lambda rng, **k: random_rwkv5(rng, version="5.0", **k), rwkv456_ref.Rwkv5),
    ("rwkv5.1", lambda rng, **k: random_rwkv5(rng, version="5.1", **k), rwkv456_ref.Rwkv5),
)


def make_all(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20261129)
    tokens = [int(x) for x in rng.integers(0, TINY["vocab"], N_TOKENS)]
    tokens[3] = 0
    fixtures = []
    for arch, make, ref in MODELS:
        t = make(rng, **TINY)
        name = f"tiny-{arch}-f32"
        f32 = {k: "f32" for k in t}
        save_pth(os.path.join(out, name + ".pth"), t, f32)
        tensorio.write_safetensors(os.path.join(out, name + ".safetensors"), t, f32)
        logits = ref({k: tensorio.round_to(v, "f32") for k, v in t.items()}).logits_sequence(tokens)
        logits.astype("<f8").tofile(os.path.join(out, name + ".ref.f64"))
        fixtures.append({"architecture": arch, "files": [name + ".pth", name + ".safetensors"],
                         "reference": name + ".ref.f64", "logit_std": float(logits.std())})
    manifest = {"config": TINY, "tokens": tokens, "fixtures": fixtures,
                "note": "Reference logits: float64 little-endian, [len(tokens), vocab], every position, from "
                        "rwkv456_ref.py on the float32 weights."}
    with open(os.path.join(out, "tiny-rwkv456.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    make_all(ap.parse_args().out)
