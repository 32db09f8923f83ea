#!/usr/bin/env python3
"""One-off cross-check of rwkv456_ref.py against the official `rwkv` pip package on the tiny v4,
v5.2 and v6 fixtures (sequence mode and one-token mode). Not part of `make test` (needs torch and
the rwkv package); tests/reference/README.md records the result:

  RWKV_JIT_ON=0 RWKV_CUDA_ON=0 venv/bin/python tests/reference/cross_check_official_v456.py tests/fixtures
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv456_ref  # noqa: E402
import tensorio  # noqa: E402

os.environ.setdefault("RWKV_JIT_ON", "0")
os.environ.setdefault("RWKV_CUDA_ON", "0")
from rwkv.model import RWKV  # noqa: E402

REF = {"rwkv4": rwkv456_ref.Rwkv4, "rwkv5.0": rwkv456_ref.Rwkv5, "rwkv5.1": rwkv456_ref.Rwkv5,
       "rwkv5.2": rwkv456_ref.Rwkv5, "rwkv6": rwkv456_ref.Rwkv6}


def main(fx):
    manifest = json.load(open(os.path.join(fx, "tiny-rwkv456.json")))
    tokens = manifest["tokens"]
    for f in manifest["fixtures"]:
        ours = np.fromfile(os.path.join(fx, f["reference"]), "<f8").reshape(len(tokens), -1)
        again = REF[f["architecture"]](tensorio.read_safetensors(os.path.join(fx, f["files"][1]))).logits_sequence(tokens)
        assert np.array_equal(ours, again), "the stored reference is not what rwkv456_ref.py computes"
        model = RWKV(model=os.path.join(fx, f["files"][0])[:-4], strategy="cpu fp32")
        seq, _ = model.forward(tokens, None, full_output=True)
        seq = seq.double().numpy()
        state, one = None, []
        for t in tokens:
            out, state = model.forward([t], state)
            one.append(out.double().numpy())
        one = np.stack(one)
        for label, off in (("sequence mode", seq), ("one-token mode", one)):
            rel = max(np.linalg.norm(off[i] - ours[i]) / np.linalg.norm(ours[i]) for i in range(len(tokens)))
            print(f"{f['architecture']} {label}: max |diff| {np.abs(off - ours).max():.3g}, worst relative L2 "
                  f"{rel:.3g}, logit std {ours.std():.3g}")


if __name__ == "__main__":
    main(sys.argv[1])
