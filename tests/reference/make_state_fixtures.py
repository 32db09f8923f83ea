#!/usr/bin/env python3
"""Writes state-tuning files for the tiny RWKV-6 and RWKV-7 fixtures (`blocks.N.att.time_state`,
[H, N, N], stored [H][value][key] as the official trainer writes them; docs/rwkv-spec.md section 7)
and the float64 reference logits of the fixture prompt started from them. The references load the
file the way ChatRWKV does: RWKV-7's state is [H][value][key] already, RWKV-6's is [H][key][value],
so its initial S is the file with the last two axes swapped.

  make_state_fixtures.py FIXTURE_DIR            writes the files (numpy only; committed)
  make_state_fixtures.py FIXTURE_DIR --check    recomputes the references and compares
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv456_ref  # noqa: E402
import rwkv7_ref  # noqa: E402
import tensorio  # noqa: E402

CASES = (  # (arch, model file, manifest with the prompt, reference class, S orientation of the class)
    ("rwkv7", "tiny-rwkv7-f32.safetensors", "tiny-rwkv7.json", rwkv7_ref.Rwkv7, "value_key"),
    ("rwkv6", "tiny-rwkv6-f32.safetensors", "tiny-rwkv456.json", rwkv456_ref.Rwkv6, "key_value"),
)


def reference(fx, arch, model_file, manifest, ref_class, orientation, time_state):
    tokens = json.load(open(os.path.join(fx, manifest)))["tokens"]
    model = ref_class(tensorio.read_safetensors(os.path.join(fx, model_file)))
    state = model.init_state()
    for l, ts in enumerate(time_state):
        state[l][1] = ts.copy() if orientation == "value_key" else ts.transpose(0, 2, 1).copy()
    return np.stack([model.forward(tok, state) for tok in tokens])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fixtures")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    fx = args.fixtures
    rng = np.random.default_rng(20261130)
    bad = 0
    for arch, model_file, manifest, ref_class, orientation in CASES:
        name = f"tiny-{arch}-state"
        path = os.path.join(fx, name + ".safetensors")
        if args.check:
            t = tensorio.read_safetensors(path)
            time_state = [t[f"blocks.{l}.att.time_state"] for l in range(len(t))]
        else:
            cfg = tensorio.read_safetensors(os.path.join(fx, model_file))
            n_layer = 1 + max(int(k.split(".")[1]) for k in cfg if k.startswith("blocks."))
            H, N = cfg["blocks.0.att.time_faaaa" if arch == "rwkv6" else "blocks.0.att.r_k"].shape[:2]
            # Asymmetric on purpose, so that a transposed load cannot pass.
            time_state = [rng.normal(0, 0.5, (H, N, N)) for _ in range(n_layer)]
            t = {f"blocks.{l}.att.time_state": s for l, s in enumerate(time_state)}
            tensorio.write_safetensors(path, t, {k: "f32" for k in t})
            time_state = [tensorio.round_to(s, "f32") for s in time_state]
        logits = reference(fx, arch, model_file, manifest, ref_class, orientation, time_state)
        ref_path = os.path.join(fx, name + ".ref.f64")
        if args.check:
            stored = np.fromfile(ref_path, "<f8").reshape(logits.shape)
            # Same code, same inputs, same float64 operations: identical up to BLAS summation order.
            ok = np.allclose(logits, stored, rtol=0, atol=1e-12)
            print(("ok   " if ok else "FAIL ") + name)
            bad += not ok
        else:
            logits.astype("<f8").tofile(ref_path)
            print("wrote", path, ref_path)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
