#!/usr/bin/env python3
"""CTest cli_image_parity: `rwkv-cli logits --image` on the tiny VisualRWKV-7 fixture
(tests/fixtures/vision/tiny-visualrwkv7.safetensors: tiny-rwkv7 as rwkv.*, the tiny encoder as vit.*
and proj.*) and the image tests/fixtures/images/source-37x23.png, with chunks of 1, 3 and all
positions (the image rows cross chunk boundaries), against the float64 logits stored by
make_vision_fixtures.py: relative L2 per position below 1e-5 (the engine test measures ~3e-6)."""
import argparse
import json
import os
import subprocess
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--fixtures", required=True)
    args = ap.parse_args()
    model = os.path.join(args.fixtures, "vision", "tiny-visualrwkv7.safetensors")
    image = os.path.join(args.fixtures, "images", "source-37x23.png")
    tokens = json.load(open(os.path.join(args.fixtures, "tiny-rwkv7.json")))["tokens"][:6]
    want = np.fromfile(os.path.join(args.fixtures, "vision", "tiny-visualrwkv7.logits.f64"), "<f8").reshape(10, -1)
    worst = 0.0
    for chunk in (1, 3, 10):
        out = subprocess.run([args.cli, "logits", "--model", model, "--image", image, "--image-tokens", "4",
                              "--dino-heads", "4", "--siglip-heads", "5", "--tokens", ",".join(map(str, tokens)),
                              "--chunk", str(chunk)], check=True, capture_output=True, text=True).stdout
        got = np.array([[float(v) for v in line.split()] for line in out.strip().split("\n")])
        if got.shape != want.shape:
            sys.exit(f"chunk {chunk}: {got.shape} logits, expected {want.shape}")
        for p in range(want.shape[0]):
            err = np.linalg.norm(got[p] - want[p]) / np.linalg.norm(want[p])
            worst = max(worst, err)
            if err >= 1e-5:
                sys.exit(f"chunk {chunk}, position {p}: relative L2 {err:.3g} >= 1e-5")
    print(f"cli_image_parity: 3 chunkings x 10 positions, worst relative L2 {worst:.3g}")


if __name__ == "__main__":
    main()
