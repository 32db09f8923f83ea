#!/usr/bin/env python3
"""The stored v4/v5.x/v6 reference logits are what rwkv456_ref.py computes from the fixture files
(numpy only; guards the references that the RWKV-4/5/6 engine tests will compare against)."""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv456_ref  # noqa: E402
import tensorio  # noqa: E402

REF = {"rwkv4": rwkv456_ref.Rwkv4, "rwkv5.0": rwkv456_ref.Rwkv5, "rwkv5.1": rwkv456_ref.Rwkv5,
       "rwkv5.2": rwkv456_ref.Rwkv5, "rwkv6": rwkv456_ref.Rwkv6}


def main(fx):
    manifest = json.load(open(os.path.join(fx, "tiny-rwkv456.json")))
    tokens = manifest["tokens"]
    bad = 0
    for f in manifest["fixtures"]:
        stored = np.fromfile(os.path.join(fx, f["reference"]), "<f8").reshape(len(tokens), -1)
        live = REF[f["architecture"]](tensorio.read_safetensors(os.path.join(fx, f["files"][1]))).logits_sequence(tokens)
        # Same code, same inputs, same float64 operations: identical up to BLAS summation order.
        ok = np.allclose(live, stored, rtol=0, atol=1e-12)
        print(("ok   " if ok else "FAIL ") + f["architecture"])
        bad += not ok
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
