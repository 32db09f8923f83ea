#!/usr/bin/env python3
"""Writes the fuzz seed corpus (tests/fuzz/corpus/TARGET/) from the repo's fixtures and a few
hand-made inputs. Standard library only; run from anywhere. The corpus is committed; rerun after
a format changes."""
import io
import json
import os
import struct
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIX = os.path.join(ROOT, "tests", "fixtures")


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors):
    header, blob = {}, b""
    for name, shape in tensors:
        n = 4
        for s in shape:
            n *= s
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(blob), len(blob) + n]}
        blob += b"\0" * n
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + blob


def main():
    # .pth: the real pickle of a fixture with its storages emptied (the unpickler runs in full,
    # the extent checks refuse), and the malformed fixtures.
    with zipfile.ZipFile(os.path.join(FIX, "tiny-rwkv7-f32.pth")) as z:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as w:
            for info in z.infolist():
                data = z.read(info.filename)
                w.writestr(info.filename, data if info.filename.endswith((".pkl", "version")) else data[:8])
        put("fuzz_pth", "rwkv7_pickle.pth", out.getvalue())
    for name in sorted(os.listdir(os.path.join(FIX, "bad"))):
        if name.endswith(".pth"):
            put("fuzz_pth", name, open(os.path.join(FIX, "bad", name), "rb").read())

    # safetensors: byte 0 even = one file, odd = an index over a.safetensors/b.safetensors.
    put("fuzz_safetensors", "two_tensors", b"\0" + safetensors([("emb.weight", [4, 8]), ("head.weight", [4, 8])]))
    put("fuzz_safetensors", "state_tuning", b"\0" + open(os.path.join(FIX, "tiny-rwkv7-state.safetensors"), "rb").read())
    index = {"metadata": {"total_size": 32},
             "weight_map": {"emb.weight": "a.safetensors", "head.weight": "b.safetensors"}}
    put("fuzz_safetensors", "index", b"\1" + json.dumps(index).encode())

    # World vocabularies: the byte vocabulary and the head of the shipped one.
    put("fuzz_world_vocab", "bytes.txt", open(os.path.join(FIX, "byte-vocab.txt"), "rb").read())
    vocab = open(os.path.join(ROOT, "engine", "vocab", "rwkv_vocab_v20230424.txt"), "rb").read().split(b"\n")
    put("fuzz_world_vocab", "world_head.txt", b"\n".join(vocab[:400]) + b"\n")

    put("fuzz_tokenizer_json", "tiny_neox.json", open(os.path.join(FIX, "tiny-neox-tokenizer.json"), "rb").read())

    for i, text in enumerate([b"Hello, world!", "\u4e16\u754c \U0001f600 caf\u00e9".encode(), b"\xff\xfe\x80 bad utf8",
                              b"User: hi\n\nAssistant:", b"  spaces\t\ttabs\r\n"]):
        put("fuzz_encode_decode", f"text{i}", text)

    # A valid state file for the fuzz target's tiny RWKV-7 (2 layers, C 32, 2 heads of 16).
    payload = b"\0" * (2 * (2 * 32 + 2 * 16 * 16) * 4)
    header = json.dumps({"format": 2, "model_fingerprint": "fuzz-fingerprint", "architecture": "rwkv7", "n_layer": 2,
                         "n_embd": 32, "n_head": 2, "head_size": 16, "dtype": "float32",
                         "payload_bytes": len(payload), "token_count": 3, "pending_token": 7,
                         "session": {"id": "chat", "created_unix_ms": 1, "last_used_unix_ms": 2}}).encode()
    body = b"RWKVSTAT" + struct.pack("<I", len(header)) + header + payload
    put("fuzz_state_file", "valid.rwkvstate", body + struct.pack("<I", zlib.crc32(body)))

    # Requests: byte 0 odd = GenerateRequest, even = CreateSessionRequest; protobuf wire bytes.
    def field(num, wire, data):
        key = bytes([num << 3 | wire])
        return key + (bytes([len(data)]) + data if wire == 2 else data)
    put("fuzz_request", "generate_text", b"\1" + field(1, 2, b"hello") + field(3, 2, b"chat"))  # text, session_id
    put("fuzz_request", "create_text", b"\0" + field(2, 2, b"hello"))

    # OpenAI bodies: byte 0 = 0 chat, 1 completions, 2 a --chat-template file; then the JSON.
    put("fuzz_openai_request", "chat", b"\0" + json.dumps({
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": [{"type": "text", "text": "Hi\n\n\nthere"}]}],
        "max_tokens": 8, "temperature": 0.5, "top_p": 0.9, "stop": ["END"], "n": 2, "stream": True,
        "stream_options": {"include_usage": True}, "logprobs": True, "top_logprobs": 2,
        "logit_bias": {"5": -10}, "seed": 3}).encode())
    put("fuzz_openai_request", "completion_ids", b"\1" + json.dumps({
        "prompt": [[1, 2, 3]], "max_tokens": 4, "logprobs": 1, "top_k": 5, "min_p": 0.1,
        "session_id": "abc", "stop_token_ids": [7], "ignore_eos": True}).encode())
    put("fuzz_openai_request", "template", b"\2" + json.dumps({
        "roles": {"user": {"prefix": "<u>", "suffix": "</u>"}, "assistant": {"prefix": "<a>", "suffix": "</a>"}},
        "generation_prompt": "<a>", "stop": ["</a>"], "collapse_blank_lines": False, "trim_reply": False}).encode())

    put("fuzz_api_keys", "keys.txt", b"# keys\nplain-key-0123456789 acme streams=2\n"
        b"sha256:" + b"ab" * 32 + b" bravo sessions=5 tokens_per_minute=100\n")


if __name__ == "__main__":
    main()
