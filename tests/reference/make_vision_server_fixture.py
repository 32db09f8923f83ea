#!/usr/bin/env python3
"""tests/fixtures/vision/tiny-visualrwkv7-v257.safetensors: the server tests' VisualRWKV-7.

tests/fixtures/tiny-rwkv7-v257 (the server fixture: 257 ids, the byte vocabulary's) as `rwkv.*`,
beside the tiny encoder's `vit.*` and `proj.*` (tests/fixtures/vision/tiny-visualrwkv-encoder).
Only a concatenation: the server tests compare against the engine driven directly, and the
encoder and the language model each have their own float64 fixtures.

Usage: /usr/bin/python3 tests/reference/make_vision_server_fixture.py tests/fixtures
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tensorio import read_safetensors, write_safetensors  # noqa: E402


def main():
    fix = sys.argv[1]
    lm = read_safetensors(os.path.join(fix, "tiny-rwkv7-v257.safetensors"))
    enc = read_safetensors(os.path.join(fix, "vision", "tiny-visualrwkv-encoder.safetensors"))
    full = {"rwkv." + k: v for k, v in lm.items()}
    full.update(enc)
    write_safetensors(os.path.join(fix, "vision", "tiny-visualrwkv7-v257.safetensors"), full, {k: "f32" for k in full},
                      metadata={"tokens_per_image": "4"})


if __name__ == "__main__":
    main()
