#!/usr/bin/env python3
"""One-off cross-check of rwkv7_ref.py against the official `rwkv` pip package (ChatRWKV model.py).

Not part of `make test` (it needs torch and the rwkv package, which a test machine does not have).
Run it where both install; tests/reference/README.md records the result:

  python3 -m venv --system-site-packages venv && venv/bin/pip install rwkv --no-deps
  RWKV_V7_ON=1 RWKV_JIT_ON=0 RWKV_CUDA_ON=0 venv/bin/python tests/reference/cross_check_official.py tests/fixtures
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv7_ref  # noqa: E402
import tensorio  # noqa: E402

# The v7 loader passes mmap=True, which torch < 2.1 does not know (spec section 15).
_load = torch.load
torch.load = lambda *a, **k: _load(*a, **{x: y for x, y in k.items() if x != "mmap"})

os.environ.setdefault("RWKV_V7_ON", "1")
os.environ.setdefault("RWKV_JIT_ON", "0")
os.environ.setdefault("RWKV_CUDA_ON", "0")
from rwkv.model import RWKV  # noqa: E402


def main(fx):
    manifest = json.load(open(os.path.join(fx, "tiny-rwkv7.json")))
    tokens = manifest["tokens"]
    for name in ("tiny-rwkv7-f32", "tiny-rwkv7-bf16"):
        ours = rwkv7_ref.Rwkv7(tensorio.read_safetensors(os.path.join(fx, name + ".safetensors"))).logits_sequence(tokens)
        model = RWKV(model=os.path.join(fx, name + ".pth")[:-4], strategy="cpu fp32")
        seq, _ = model.forward(tokens, None, full_output=True)
        seq = seq.double().numpy()
        state, one = None, []
        for t in tokens:
            out, state = model.forward([t], state)
            one.append(out.double().numpy())
        one = np.stack(one)
        for label, off in (("sequence mode", seq), ("one-token mode", one)):
            rel = max(np.linalg.norm(off[i] - ours[i]) / np.linalg.norm(ours[i]) for i in range(len(tokens)))
            print(f"{name} {label}: max |diff| {np.abs(off - ours).max():.3g}, worst relative L2 {rel:.3g}, "
                  f"logit std {ours.std():.3g}")


if __name__ == "__main__":
    main(sys.argv[1])
