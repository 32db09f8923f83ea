#!/usr/bin/env python3
"""End to end: images through the real rwkv-server binary (VisualRWKV-7).

The model is tests/fixtures/vision/tiny-visualrwkv7-v257 (the tiny towers and projector beside the
byte-vocabulary RWKV-7; 4 tokens an image). Checked:
  - gRPC (rwkv-client --image): a greedy stream after an image equals the argmax of rwkv-cli's
    logits with the same image at every position (rwkv-cli runs the engine without the server);
  - the OpenAI API (curl, an image_url data URL in a chat message) equals the same prompt through
    gRPC; a second question on the same image reports the prompt up to the image as cached and
    runs no vision work (rwkv_images_total{source="encoded"} unchanged, source="cache" counted);
  - a session created with an image continues as the stateless prompt does;
  - errors: remote URLs, bad base64, undecodable images (HTTP 400 naming the part), a marker
    without an image and an undecodable file over gRPC (INVALID_ARGUMENT), a text-only model.
"""
import argparse
import base64
import json
import os
import re
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from e2e_test import Checker, Server  # noqa: E402
from http_e2e import post  # noqa: E402

VISION_FLAGS = ["--image-tokens", "4", "--dino-heads", "4", "--siglip-heads", "5", "--threads", "1"]


def cli_argmax(cli, model, image, tokens):
    out = subprocess.run([cli, "logits", "--model", model, "--image", image, *VISION_FLAGS[:6],
                          "--tokens", ",".join(map(str, tokens))], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    return [int(np.argmax([float(v) for v in line.split()])) for line in out.strip().split("\n")]


def metric(text, name, labels):
    m = re.search(re.escape(name) + r"\{" + re.escape(labels) + r"\} ([0-9.e+]+)", text)
    return float(m.group(1)) if m else None


def data_url(path):
    return "data:image/png;base64," + base64.b64encode(open(path, "rb").read()).decode()


def main():
    ap = argparse.ArgumentParser()
    for f in ("server", "client", "cli", "fixtures"):
        ap.add_argument("--" + f, required=True)
    a = ap.parse_args()
    model = os.path.join(a.fixtures, "vision", "tiny-visualrwkv7-v257.safetensors")
    vocab = os.path.join(a.fixtures, "byte-vocab.txt")
    img_a = os.path.join(a.fixtures, "images", "source-37x23.png")
    img_b = os.path.join(a.fixtures, "images", "bicubic-80x50.png")
    failures = 0

    srv = Server(a.server, model, vocab, VISION_FLAGS)
    c = Checker(a.client, srv)
    try:
        info = c.run("info").stdout
        c.expect("images:       4 tokens each" in info, "info reports 4 tokens an image")

        # gRPC: "<image>Describe." is the image's rows, then the text: rwkv-cli's layout.
        prompt = c.tokens("Describe.")
        got = c.generate("--prompt", "<image>Describe.", "--image", img_a, "--max-tokens", "10")
        ids = got["token_ids"]
        want = cli_argmax(a.cli, model, img_a, prompt + ids[:-1])[4 + len(prompt) - 1:]
        c.expect(len(ids) == 10 and ids == want, f"gRPC greedy after an image equals rwkv-cli's argmax ({ids})")
        c.expect(got["usage"]["prompt_tokens"] == len(prompt) + 4, "the image counts as 4 prompt tokens")

        # HTTP: a chat with an image_url part equals the raw prompt through gRPC.
        raw = "User: <image>\nWhat is this?\n\nAssistant:"
        grpc = c.generate("--prompt", raw, "--image", img_a, "--max-tokens", "12", "--stop", "\n\n")
        msgs = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(img_a)}},
                                             {"type": "text", "text": "What is this?"}]}]
        st, _, r = post(srv.http_port, "/v1/chat/completions",
                        {"messages": msgs, "max_tokens": 12, "temperature": 0, "ignore_eos": True})
        reply = r["choices"][0]["message"]["content"] if st == 200 else r
        c.expect(st == 200 and reply == grpc["text"].lstrip(), f"HTTP chat with an image equals gRPC ({reply!r})")
        before = srv.metrics()
        encoded = metric(before, "rwkv_images_total", 'source="encoded"')

        # A second question on the same image: cached through the image, no vision work.
        msgs[0]["content"][1]["text"] = "And the colour?"
        st, _, r2 = post(srv.http_port, "/v1/chat/completions",
                         {"messages": msgs, "max_tokens": 12, "temperature": 0, "ignore_eos": True})
        cached = r2["usage"]["prompt_tokens_details"]["cached_tokens"] if st == 200 else -1
        through_image = len(c.tokens("User: ")) + 4
        c.expect(cached == through_image, f"second question: {cached} cached prompt tokens, the prompt through the image")
        after = srv.metrics()
        c.expect(metric(after, "rwkv_images_total", 'source="encoded"') == encoded,
                 f"second question: no image encoded (encoded stays {encoded})")
        c.expect((metric(after, "rwkv_images_total", 'source="cache"') or 0) >= 1, "second question: the image from the cache")
        m = re.search(r"rwkv_image_encode_seconds_count ([0-9.e+]+)", after)
        c.expect(m is not None and float(m.group(1)) == encoded, "the encode-time histogram counts every encoding")
        grpc2 = c.generate("--prompt", "User: <image>\nAnd the colour?\n\nAssistant:", "--image", img_a,
                           "--max-tokens", "12", "--stop", "\n\n")
        c.expect(st == 200 and r2["choices"][0]["message"]["content"] == grpc2["text"].lstrip(),
                 "the cached answer equals gRPC's")

        # Another image with the same text: its own encoding.
        got_b = c.generate("--prompt", raw, "--image", img_b, "--max-tokens", "4")
        c.expect(got_b["usage"]["cached_prompt_tokens"] < through_image, "another image misses the cache past 'User: '")
        c.expect(metric(srv.metrics(), "rwkv_images_total", 'source="encoded"') == encoded + 1, "another image is encoded")

        # Sessions: created with the image, then a turn, equals the stateless prompt.
        c.run("session", "create", "--id", "pic", "--prompt", raw, "--image", img_a)
        turn = c.generate("--session", "pic", "--max-tokens", "12")
        whole = c.generate("--prompt", raw, "--image", img_a, "--max-tokens", "12")
        c.expect(turn["token_ids"] == whole["token_ids"], "a session with an image continues as the stateless prompt")

        # Errors.
        for url, what in (("https://example.com/cat.png", "does not fetch remote images"),
                          ("data:image/png;base64,@@@", "not valid base64"),
                          ("data:image/png;base64," + base64.b64encode(b"not an image").decode(),
                           "messages[0].content[0].image_url: ")):
            bad = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]
            st, _, r = post(srv.http_port, "/v1/chat/completions", {"messages": bad, "max_tokens": 2})
            msg = r["error"]["message"] if isinstance(r, dict) and "error" in r else str(r)
            c.expect(st == 400 and what in msg and r["error"].get("param") == "messages", f"HTTP 400 for {url[:30]}...: {msg}")
        r = c.run("generate", "--prompt", "<image><image>", "--image", img_a, "--max-tokens", "2", check=False)
        c.expect(r.returncode != 0 and "INVALID_ARGUMENT" in r.stderr and "2 \"<image>\" markers and images has 1" in r.stderr,
                 "two markers for one image is INVALID_ARGUMENT")
        r = c.run("generate", "--prompt", "<image>", "--image", vocab, "--max-tokens", "2", check=False)
        c.expect(r.returncode != 0 and "INVALID_ARGUMENT" in r.stderr and "images[0]" in r.stderr,
                 "an undecodable image is INVALID_ARGUMENT naming images[0]")
    finally:
        srv.stop()
        failures += c.failures

    # A text-only model refuses images with a clear error.
    srv = Server(a.server, os.path.join(a.fixtures, "tiny-rwkv7-v257.safetensors"), vocab)
    c = Checker(a.client, srv)
    try:
        r = c.run("generate", "--prompt", "<image>", "--image", img_a, "--max-tokens", "2", check=False)
        c.expect(r.returncode != 0 and "takes no images" in r.stderr, "a text-only model refuses images")
        bad = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(img_a)}}]}]
        st, _, r = post(srv.http_port, "/v1/chat/completions", {"messages": bad, "max_tokens": 2})
        c.expect(st == 400 and "takes no images" in json.dumps(r), "HTTP: a text-only model refuses image parts")
    finally:
        srv.stop()
        failures += c.failures
    print("vision_e2e:", "FAILED" if failures else "passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
