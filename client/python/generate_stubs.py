#!/usr/bin/env python3
"""Generates src/rwkv_serve/v1/rwkv_pb2{,_grpc}.py{,i} from proto/rwkv/v1/rwkv.proto with
grpcio-tools, importing each other as rwkv_serve.v1 (not a top-level `rwkv` package, which would
clash with the official rwkv package). --check: fail if the committed stubs differ.
"""
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "src", "rwkv_serve", "v1")
FILES = ["rwkv_pb2.py", "rwkv_pb2.pyi", "rwkv_pb2_grpc.py"]


def generate(out_dir):
    from grpc_tools import protoc
    proto_dir = os.path.join(ROOT, "proto")
    rc = protoc.main(["grpc_tools.protoc", f"-I{proto_dir}", f"--python_out={out_dir}", f"--pyi_out={out_dir}",
                      f"--grpc_python_out={out_dir}", os.path.join(proto_dir, "rwkv", "v1", "rwkv.proto")])
    if rc != 0:
        sys.exit(f"protoc failed ({rc})")
    texts = {}
    for f in FILES:
        text = open(os.path.join(out_dir, "rwkv", "v1", f)).read()
        texts[f] = text.replace("from rwkv.v1 import", "from rwkv_serve.v1 import")
    return texts


def main():
    with tempfile.TemporaryDirectory() as d:
        texts = generate(d)
    if "--check" in sys.argv:
        stale = [f for f in FILES if not os.path.exists(os.path.join(OUT, f))
                 or open(os.path.join(OUT, f)).read() != texts[f]]
        if stale:
            sys.exit(f"stale stubs (run client/python/generate_stubs.py): {stale}")
        print("stubs are current")
        return
    for f in FILES:
        with open(os.path.join(OUT, f), "w") as out:
            out.write(texts[f])
    print(f"wrote {', '.join(FILES)} to {OUT}")


if __name__ == "__main__":
    main()
