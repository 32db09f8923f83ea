#!/usr/bin/env python3
"""The Python client package (client/python) against the real rwkv-server: installed with pip
from the source tree, its stubs current with the proto, generate/stream/chat/sessions equal what
rwkv-client gets, errors as RwkvError with the gRPC code, and the example chat runs.
Run with a Python that has grpcio, protobuf and grpcio-tools (.tools/venv); exit 77 without them.
"""
import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from e2e_test import Checker, Server  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--client", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--vocab", required=True)
    a = ap.parse_args()
    try:
        import grpc  # noqa: F401
        import grpc_tools  # noqa: F401
    except ImportError:
        print("SKIP: grpcio / grpcio-tools are not installed (scripts/install-deps.sh puts them in .tools/venv)")
        return 77
    target = tempfile.mkdtemp(prefix="rwkv-pyclient-")
    pkg = os.path.join(ROOT, "client", "python")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                        target, pkg], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        return 1
    sys.path.insert(0, target)
    import rwkv_serve
    from rwkv_serve import Client, RwkvError
    srv = Server(a.server, a.model, a.vocab)
    c = Checker(a.client, srv)
    try:
        c.expect(rwkv_serve.__file__.startswith(target), f"the package imports from its pip install ({rwkv_serve.__file__})")
        check = subprocess.run([sys.executable, os.path.join(pkg, "generate_stubs.py"), "--check"], capture_output=True,
                               text=True)
        c.expect(check.returncode == 0, f"generated stubs are current with the proto {check.stdout}{check.stderr}")
        with Client(f"127.0.0.1:{srv.grpc_port}") as py:
            info = py.model_info()
            c.expect(info.architecture == "rwkv7" and info.vocab_size == 257, "model_info")
            ids = [10, 20, 30]
            got = py.generate(ids, max_tokens=12, temperature=0, ignore_eos=True)
            want = c.generate("--tokens", "10,20,30", "--max-tokens", "12")
            c.expect(got.token_ids == want["token_ids"] and got.text == want["text"], "generate equals rwkv-client")
            c.expect(got.finish_reason == "length" and got.usage.generated_tokens == 12, "finish reason and usage")
            c.expect("".join(py.stream(ids, max_tokens=12, temperature=0, ignore_eos=True)) == got.text,
                     "stream joins to generate")
            chat = py.generate(messages=[("user", "Hi")], max_tokens=20, temperature=0, ignore_eos=True)
            raw = c.generate("--prompt", "User: Hi\n\nAssistant:", "--max-tokens", "20", "--stop", "\n\n")
            c.expect(chat.text == raw["text"].lstrip(" "), "messages go through the chat template")
            s = py.create_session("py-a", prompt="Hello")
            t1 = py.generate(" there", session_id="py-a", max_tokens=5, temperature=0, ignore_eos=True)
            f = py.fork_session("py-a", "py-b")
            c.expect(f.token_count == py.get_session("py-a").token_count == t1.session_tokens, "fork keeps the count")
            data = py.export_session("py-a")
            py.import_session(data, "py-c")
            x = py.generate(" more", session_id="py-b", max_tokens=6, temperature=0, ignore_eos=True)
            y = py.generate(" more", session_id="py-c", max_tokens=6, temperature=0, ignore_eos=True)
            c.expect(x.token_ids == y.token_ids and s.session_id == "py-a", "fork and export/import continue alike")
            c.expect({"py-a", "py-b", "py-c"} <= {s.session_id for s in py.list_sessions()}, "list_sessions")
            py.delete_session("py-b")
            try:
                py.get_session("py-b")
                c.expect(False, "a deleted session raises")
            except RwkvError as e:
                c.expect(e.code.name == "NOT_FOUND" and "py-b" in e.message, "RwkvError carries NOT_FOUND")
            try:
                py.generate("x", max_tokens=0)
                c.expect(False, "max_tokens 0 raises")
            except RwkvError as e:
                c.expect(e.code.name == "INVALID_ARGUMENT" and "max_tokens" in e.message, "RwkvError INVALID_ARGUMENT")
            c.expect(py.detokenize(py.tokenize("héllo")) == "héllo", "tokenize / detokenize round trip")
        env = dict(os.environ, PYTHONPATH=target)
        ex = subprocess.run([sys.executable, os.path.join(pkg, "examples", "chat.py"), "--server",
                             f"127.0.0.1:{srv.grpc_port}", "--max-tokens", "8"], input="Hi\nMore\n\n",
                            capture_output=True, text=True, env=env, timeout=60)
        c.expect(ex.returncode == 0 and ex.stdout.count("Assistant: ") == 2, f"examples/chat.py runs two turns {ex.stderr}")
    finally:
        srv.stop()
    if c.failures:
        print(srv.text()[-3000:])
        print(f"{c.failures} check(s) failed")
        return 1
    print("all Python client checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
