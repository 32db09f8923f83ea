#!/usr/bin/env python3
"""Writes the fuzz seed corpus (tests/fuzz/corpus/TARGET/) from the repo's fixtures and a few
hand-made inputs. Standard library only; run from anywhere. The corpus is committed; rerun after
a format changes."""
import base64
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


def png(width, height, color_type, depth, pixels, plte=None):
    """A PNG of unfiltered rows (filter byte 0) holding `pixels` (row-major, packed)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    row = width * channels * depth // 8
    raw = b"".join(b"\0" + pixels[y * row:(y + 1) * row] for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0))
    if plte is not None:
        out += chunk(b"PLTE", plte)
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


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

    # Images: PNGs written here (RGB, grey, palette, RGBA, 16-bit), and an 8x8 JPEG (4:2:0) and
    # WebPs (lossless and lossy) made once with TurboJPEG and libwebp.
    put("fuzz_image", "rgb.png", png(5, 3, 2, 8, bytes(range(45))))
    put("fuzz_image", "grey.png", png(4, 4, 0, 8, bytes(range(0, 256, 16))))
    put("fuzz_image", "palette.png", png(3, 2, 3, 8, bytes([0, 1, 2, 2, 1, 0]), plte=bytes(range(9))))
    put("fuzz_image", "rgba.png", png(2, 2, 6, 8, bytes(range(16))))
    put("fuzz_image", "rgb16.png", png(2, 2, 2, 16, bytes(range(24))))
    put("fuzz_image", "420.jpg", bytes.fromhex(
        "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c1912"
        "130f141d1a1f1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffdb0043010909"
        "090c0b0c180d0d1832211c21323232323232323232323232323232323232323232323232323232323232323232323232"
        "3232323232323232323232323232ffc00011080008000803012200021101031101ffc4001f0000010501010101010100"
        "000000000000000102030405060708090a0bffc400b5100002010303020403050504040000017d010203000411051221"
        "31410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a"
        "434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a9293949596979899"
        "9aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1"
        "f2f3f4f5f6f7f8f9faffc4001f0100030101010101010101010000000000000102030405060708090a0bffc400b51100"
        "020102040403040705040400010277000102031104052131061241510761711322328108144291a1b1c109233352f015"
        "6272d10a162434e125f11718191a262728292a35363738393a434445464748494a535455565758595a63646566676869"
        "6a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4"
        "c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9faffda000c03010002110311003f0064"
        "d1451430d94296e8580de0c8bb5b8008cf0318603d02b0fe1389ca28ae5ad8ba9423050eaaff00362855508f338a6db7"
        "bab9ffd9"))
    put("fuzz_image", "lossless.webp", bytes.fromhex(
        "524946462a000000574542505650384c1e0000002f07c00100cd6444ff0364d2366aaaaf6ffdb36f06667b4a62025876"
        "dc00"))
    put("fuzz_image", "lossy.webp", bytes.fromhex(
        "524946466a00000057454250565038205e000000b001009d012a0800080002c04c25a8027400f37b018400ce2bae9b61"
        "40fdaca0ce258c2ed2bb833f5cbb82517db0641130bfd10c6718837ad6da07fec80e0ed18b2cc1c1b1210aa20943effc"
        "0c4d4fd8f7a36f035b1a751e6d4d78200000"))

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
    tiny_png = png(2, 2, 2, 8, bytes(range(12)))
    image = field(1, 2, tiny_png)  # Image.data
    put("fuzz_request", "generate_image", b"\1" + field(1, 2, b"User: <image>\nWhat?") + field(10, 2, image))
    put("fuzz_request", "chat_image", b"\1" + field(9, 2, field(1, 2, field(1, 2, b"user") + field(2, 2, b"Hi") +
                                                                    field(3, 2, image))))
    put("fuzz_request", "create_image", b"\0" + field(2, 2, b"<image>Hi") + field(5, 2, image))

    # OpenAI bodies: byte 0 = 0 chat, 1 completions, 2 a --chat-template file; then the JSON.
    put("fuzz_openai_request", "chat", b"\0" + json.dumps({
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": [{"type": "text", "text": "Hi\n\n\nthere"}]}],
        "max_tokens": 8, "temperature": 0.5, "top_p": 0.9, "stop": ["END"], "n": 2, "stream": True,
        "stream_options": {"include_usage": True}, "logprobs": True, "top_logprobs": 2,
        "logit_bias": {"5": -10}, "seed": 3}).encode())
    put("fuzz_openai_request", "chat_image", b"\0" + json.dumps({
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(tiny_png).decode()}},
            {"type": "text", "text": "What is it?"}]}], "max_tokens": 4}).encode())
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
