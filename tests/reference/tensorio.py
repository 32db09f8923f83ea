"""Minimal safetensors reader/writer and bf16/f16 rounding for the fixture scripts (numpy only)."""
import json
import struct

import numpy as np

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


def to_bf16_bits(a):
    """float32 -> bfloat16 bit patterns, round to nearest even (what torch's .to(bfloat16) does)."""
    b = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_bits_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def round_to(a, dtype):
    """The float64 value a tensor has after being stored in `dtype` ('f32', 'f16', 'bf16')."""
    a = np.asarray(a, dtype=np.float32)
    if dtype == "bf16":
        return bf16_bits_to_f32(to_bf16_bits(a)).astype(np.float64)
    if dtype == "f16":
        return a.astype(np.float16).astype(np.float64)
    return a.astype(np.float64)


def write_safetensors(path, tensors, dtypes, metadata=None):
    """tensors: name -> float array; dtypes: name -> 'f32' | 'f16' | 'bf16'."""
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        dt = dtypes[name]
        if dt == "bf16":
            raw, tag = to_bf16_bits(arr).tobytes(), "BF16"
        elif dt == "f16":
            raw, tag = np.asarray(arr, np.float32).astype(np.float16).tobytes(), "F16"
        else:
            raw, tag = np.asarray(arr, np.float32).tobytes(), "F32"
        header[name] = {"dtype": tag, "shape": list(np.shape(arr)), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def read_safetensors(path):
    """name -> float64 array (F32/F16/BF16/F64)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = data[base + b:base + e]
        if info["dtype"] == "BF16":
            arr = bf16_bits_to_f32(np.frombuffer(raw, dtype=np.uint16))
        else:
            arr = np.frombuffer(raw, dtype=_ST_DTYPES[info["dtype"]])
        out[name] = arr.astype(np.float64).reshape(info["shape"])
    return out
