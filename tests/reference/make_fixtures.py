#!/usr/bin/env python3
"""Writes the tiny RWKV-7 test checkpoints, their float64 reference logits and the bad files.

Usage:
  make_fixtures.py OUT_DIR            all fixtures (needs numpy and torch; run once, output is committed)
  make_fixtures.py --demo FILE        the demo model: World vocabulary size, random weights (numpy only)
  make_fixtures.py --server-fixture FILE   the server tests' model, vocabulary 257 (numpy only)
  make_fixtures.py --bench-model FILE      the 0.1B-shape serving benchmark model (numpy only)

The checkpoints use the official tensor names (and one the Hugging Face fla-hub names). The .pth
files are written by torch.save itself, so the loader is tested on exactly what users download.
"""
import argparse
import collections
import io
import json
import os
import sys
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv7_ref  # noqa: E402
import tensorio  # noqa: E402

# Deliberately not the released proportions: head size 16, FFN 3C, four different LoRA ranks,
# so a loader that hard-codes any of them fails.
TINY = dict(n_layer=3, n_embd=64, head_size=16, ffn=192, vocab=256, dw=8, da=6, dv=4, dg=10)
N_TOKENS = 24


def random_rwkv7(rng, n_layer, n_embd, head_size, ffn, vocab, dw, da, dv, dg):
    C, H, N = n_embd, n_embd // head_size, head_size

    def mat(out_dim, in_dim, scale=1.0):
        return rng.normal(0, scale / np.sqrt(in_dim), (out_dim, in_dim))

    t = collections.OrderedDict()
    t["emb.weight"] = rng.normal(0, 1, (vocab, C))
    t["blocks.0.ln0.weight"] = 1 + 0.1 * rng.normal(size=C)
    t["blocks.0.ln0.bias"] = 0.1 * rng.normal(size=C)
    for l in range(n_layer):
        p = f"blocks.{l}."
        for ln in ("ln1", "ln2"):
            t[p + ln + ".weight"] = 1 + 0.1 * rng.normal(size=C)
            t[p + ln + ".bias"] = 0.1 * rng.normal(size=C)
        a = p + "att."
        for s in "rwkvag":
            t[a + "x_" + s] = rng.uniform(0, 1, (1, 1, C))
        t[a + "w0"] = rng.normal(0, 1.5, (1, 1, C))
        t[a + "w1"] = rng.normal(0, 1 / np.sqrt(C), (C, dw))
        t[a + "w2"] = rng.normal(0, 0.5 / np.sqrt(dw), (dw, C))
        t[a + "a0"] = rng.normal(0, 1, (1, 1, C))
        t[a + "a1"] = rng.normal(0, 1 / np.sqrt(C), (C, da))
        t[a + "a2"] = rng.normal(0, 1 / np.sqrt(da), (da, C))
        t[a + "v0"] = rng.normal(0, 1, (1, 1, C))
        t[a + "v1"] = rng.normal(0, 1 / np.sqrt(C), (C, dv))
        t[a + "v2"] = rng.normal(0, 1 / np.sqrt(dv), (dv, C))
        t[a + "g1"] = rng.normal(0, 1 / np.sqrt(C), (C, dg))
        t[a + "g2"] = rng.normal(0, 1 / np.sqrt(dg), (dg, C))
        t[a + "k_k"] = rng.uniform(0.5, 1.5, (1, 1, C))
        t[a + "k_a"] = rng.uniform(0, 1, (1, 1, C))
        t[a + "r_k"] = rng.normal(0, 0.5, (H, N))
        t[a + "receptance.weight"] = mat(C, C)
        t[a + "key.weight"] = mat(C, C)
        t[a + "value.weight"] = mat(C, C)
        t[a + "output.weight"] = mat(C, C)
        t[a + "ln_x.weight"] = 1 + 0.1 * rng.normal(size=C)
        t[a + "ln_x.bias"] = 0.1 * rng.normal(size=C)
        t[p + "ffn.x_k"] = rng.uniform(0, 1, (1, 1, C))
        t[p + "ffn.key.weight"] = mat(ffn, C)
        t[p + "ffn.value.weight"] = mat(C, ffn)
    t["ln_out.weight"] = 1 + 0.1 * rng.normal(size=C)
    t["ln_out.bias"] = 0.1 * rng.normal(size=C)
    t["head.weight"] = mat(vocab, C, 3.0)
    return t


def to_fla_hub(t):
    """Official names -> Hugging Face fla-hub RWKV-7 names (the inverse of spec section 17)."""
    out = collections.OrderedDict()
    lora = {"w": "w_lora", "a": "a_lora", "v": "v_lora", "g": "g_lora"}
    proj = {"receptance": "r_proj", "key": "k_proj", "value": "v_proj", "output": "o_proj"}
    for name, arr in t.items():
        parts = name.split(".")
        if name == "emb.weight":
            out["model.embeddings.weight"] = arr
        elif name == "head.weight":
            out["lm_head.weight"] = arr
        elif parts[0] == "ln_out":
            out["model.norm." + parts[1]] = arr
        elif parts[0] == "blocks":
            layer, rest = parts[1], parts[2:]
            p = f"model.layers.{layer}."
            if rest[0] in ("ln0", "ln1", "ln2"):
                out[p + {"ln0": "pre_norm", "ln1": "attn_norm", "ln2": "ffn_norm"}[rest[0]] + "." + rest[1]] = arr
            elif rest[0] == "att":
                key = rest[1]
                if layer == "0" and key in ("v0", "v1", "v2"):
                    continue  # fla drops layer 0's unused value-residual LoRA
                if key in proj:
                    out[p + "attn." + proj[key] + ".weight"] = arr
                elif key == "ln_x":
                    out[p + "attn.g_norm." + rest[2]] = arr
                elif len(key) == 2 and key[0] in lora and key[1] in "012":
                    base = p + "attn." + lora[key[0]] + ".lora."
                    if key[1] == "0":
                        out[base + "2.bias"] = arr.reshape(-1)
                    elif key[1] == "1":
                        out[base + "0.weight"] = arr.T.copy()
                    else:
                        out[base + "2.weight"] = arr.T.copy()
                else:
                    out[p + "attn." + key] = arr
            else:
                out[p + ".".join(rest)] = arr
    return out


def save_pth(path, t, dtypes, plain_dict=False):
    import torch
    torch_dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
    sd = {} if plain_dict else collections.OrderedDict()
    for name, arr in t.items():
        sd[name] = torch.tensor(np.asarray(arr, dtype=np.float32)).to(torch_dtype[dtypes[name]])
    torch.save(sd, path)


def write_reference(path, t, dtypes, tokens):
    model = rwkv7_ref.Rwkv7({k: tensorio.round_to(v, dtypes[k]) for k, v in t.items()})
    logits = model.logits_sequence(tokens)
    logits.astype("<f8").tofile(path)
    return logits


def write_zip_pickle(path, pickle_bytes):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/version", "3\n")


def make_bad(out, t):
    bad = os.path.join(out, "bad")
    os.makedirs(bad, exist_ok=True)
    with open(os.path.join(bad, "not_a_zip.pth"), "wb") as f:
        f.write(b"this is a text file, not a checkpoint\n" * 4)
    # A pickle that would run os.system("echo pwned") if it were executed.
    write_zip_pickle(os.path.join(bad, "evil_global.pth"),
                     b"\x80\x02cos\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.")
    write_zip_pickle(os.path.join(bad, "bad_opcode.pth"), b"\x80\x02}q\x00\xfe.")
    write_zip_pickle(os.path.join(bad, "inst_opcode.pth"), b"\x80\x02(ios\nsystem\nX\x01\x00\x00\x00xq\x00.")
    f32 = {k: "f32" for k in t}
    missing = collections.OrderedDict((k, v) for k, v in t.items() if k != "blocks.1.att.key.weight")
    tensorio.write_safetensors(os.path.join(bad, "missing_tensor.safetensors"), missing, f32)
    wrong = collections.OrderedDict(t)
    wrong["blocks.1.ffn.value.weight"] = wrong["blocks.1.ffn.value.weight"][:, :48]
    tensorio.write_safetensors(os.path.join(bad, "wrong_shape.safetensors"), wrong, f32)
    unknown = collections.OrderedDict((k, v) for k, v in t.items() if not k.startswith("blocks."))
    unknown["blocks.0.mlp.fc.weight"] = np.zeros((4, 4))
    tensorio.write_safetensors(os.path.join(bad, "unknown_arch.safetensors"), unknown, {k: "f32" for k in unknown})
    import torch
    sd = collections.OrderedDict((k, torch.tensor(np.asarray(v, np.float32))) for k, v in t.items())
    sd["blocks.0.att.key.weight"] = torch.zeros(sd["blocks.0.att.key.weight"].shape, dtype=torch.int64)
    torch.save(sd, os.path.join(bad, "wrong_dtype.pth"))


def make_all(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20261128)
    t = random_rwkv7(rng, **TINY)
    tokens = [int(x) for x in rng.integers(0, TINY["vocab"], N_TOKENS)]
    tokens[5] = 0  # end-of-text is an ordinary input id
    f32 = {k: "f32" for k in t}
    bf16 = {k: "bf16" for k in t}
    # One file mixing all three dtypes: matrices bf16, LoRA f16, vectors f32.
    mixed = {k: ("bf16" if k.endswith(".weight") and np.ndim(v) == 2 else "f16" if np.ndim(v) == 2 else "f32")
             for k, v in t.items()}
    fixtures = []
    for tag, dtypes in (("f32", f32), ("bf16", bf16), ("mixed", mixed)):
        ref = f"tiny-rwkv7-{tag}.ref.f64"
        write_reference(os.path.join(out, ref), t, dtypes, tokens)
        files = [f"tiny-rwkv7-{tag}.pth"]
        save_pth(os.path.join(out, files[0]), t, dtypes, plain_dict=(tag == "mixed"))
        if tag != "mixed":
            files.append(f"tiny-rwkv7-{tag}.safetensors")
            tensorio.write_safetensors(os.path.join(out, files[1]), t, dtypes)
        if tag == "f32":
            fla = to_fla_hub(t)
            files.append("tiny-rwkv7-fla.safetensors")
            tensorio.write_safetensors(os.path.join(out, files[-1]), fla, {k: "f32" for k in fla})
        fixtures.append({"dtype": tag, "files": files, "reference": ref})
    manifest = {
        "architecture": "rwkv7",
        "config": TINY,
        "tokens": tokens,
        "fixtures": fixtures,
        "note": "Reference logits: float64 little-endian, [len(tokens), vocab], every position, "
                "from rwkv7_ref.py on the weights as rounded to each file's dtypes.",
    }
    with open(os.path.join(out, "tiny-rwkv7.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    make_server_fixture(os.path.join(out, "tiny-rwkv7-v257.safetensors"))
    # The bad files only need to be recognisably RWKV-7: a smaller model keeps them small.
    make_bad(out, random_rwkv7(rng, n_layer=2, n_embd=32, head_size=16, ffn=64, vocab=64, dw=4, da=4, dv=4, dg=4))


def make_demo(path):
    rng = np.random.default_rng(7)
    t = random_rwkv7(rng, n_layer=2, n_embd=128, head_size=32, ffn=256, vocab=65536, dw=16, da=16, dv=8, dg=16)
    tensorio.write_safetensors(path, t, {k: "bf16" for k in t},
                               metadata={"description": "rwkv-serve demo model: random weights"})


def make_server_fixture(path):
    """The server tests' model: tiny, with a vocabulary of 257 so that a byte-level vocabulary
    (tests/fixtures/byte-vocab.txt: id = byte + 1, 0 = end-of-text) covers it."""
    rng = np.random.default_rng(11)
    t = random_rwkv7(rng, n_layer=2, n_embd=64, head_size=16, ffn=128, vocab=257, dw=8, da=8, dv=4, dg=8)
    tensorio.write_safetensors(path, t, {k: "f32" for k in t},
                               metadata={"description": "rwkv-serve server test model: random weights"})


def make_bench_model(path):
    """The serving benchmark's model: the RWKV-7 0.1B shape (L12 C768 H12x64 F3072, vocab 65536,
    LoRA 64/64/32/128, as engine_bench builds in memory), random weights, bf16."""
    rng = np.random.default_rng(3)
    t = random_rwkv7(rng, n_layer=12, n_embd=768, head_size=64, ffn=3072, vocab=65536, dw=64, da=64, dv=32, dg=128)
    tensorio.write_safetensors(path, t, {k: "bf16" for k in t},
                               metadata={"description": "rwkv-serve benchmark model: random weights"})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?")
    ap.add_argument("--demo")
    ap.add_argument("--server-fixture")
    ap.add_argument("--bench-model")
    args = ap.parse_args()
    if args.bench_model:
        make_bench_model(args.bench_model)
        return
    if args.server_fixture:
        make_server_fixture(args.server_fixture)
        return
    if args.demo:
        make_demo(args.demo)
    elif args.out:
        make_all(args.out)
    else:
        ap.error("give OUT_DIR or --demo FILE")


if __name__ == "__main__":
    main()
