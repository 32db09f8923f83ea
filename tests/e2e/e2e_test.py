#!/usr/bin/env python3
"""End to end: the real rwkv-server binary and the real rwkv-client binary on a tiny model.

Checks, each against an independent run of the same request:
  concurrent greedy streams of different lengths equal their single-stream output;
  session turn 2 equals one stateless request over turn-1 prompt + output + turn-2 prompt;
  a fork continues like its source; export then import continues identically;
  a cancelled turn leaves the session as it was;
  batching is real (the batch-size histogram has steps with more than one sequence);
  every metric of DESIGN.md is exported; errors carry the right code;
  SIGTERM drains: NOT_SERVING, new work refused, the running stream completes, exit 0.
Standard library only; the server runs on loopback ports it picks itself.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

METRICS = [
    "rwkv_requests_total", "rwkv_prompt_tokens_total", "rwkv_generated_tokens_total",
    "rwkv_time_to_first_token_seconds", "rwkv_inter_token_latency_seconds", "rwkv_request_duration_seconds",
    "rwkv_queue_wait_seconds", "rwkv_batch_size", "rwkv_step_duration_seconds", "rwkv_requests_running",
    "rwkv_requests_waiting", "rwkv_state_slots_used", "rwkv_state_slots_total", "rwkv_sessions", "rwkv_serving",
]


class Server:
    """rwkv-server on loopback; `port` "0" picks one. With wait, returns once it is ready."""

    def __init__(self, binary, model, vocab, extra=(), port="0", wait=True):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="rwkv-server-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [binary, "--model", model, "--vocab", vocab, "--host", "127.0.0.1", "--port", port, "--metrics-port", "0",
             "--http-port", "0", "--state-slots", "24", "--max-tokens", "100000", *extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.grpc_port = self.metrics_port = self.http_port = None
        if not wait:
            return
        deadline = time.time() + 60
        while time.time() < deadline:
            text = open(self.log.name).read()
            m = re.search(r'msg="grpc listening" address=[\d.]+:(\d+)', text)
            p = re.search(r'msg="metrics listening" address=[\d.]+:(\d+)', text)
            h = re.search(r'msg="http listening" address=[\d.]+:(\d+)', text)
            if m and p and (h or "--http-port" in extra) and "msg=ready" in text:
                self.grpc_port, self.metrics_port = int(m.group(1)), int(p.group(1))
                self.http_port = int(h.group(1)) if h else None
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("server did not start:\n" + open(self.log.name).read())

    def text(self):
        return open(self.log.name).read()

    def wait_log(self, pattern, count, timeout=10):
        """True once the log holds `count` matches of `pattern`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(re.findall(pattern, self.text())) >= count:
                return True
            time.sleep(0.05)
        return False

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            return r.read().decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=60)
        return self.proc.returncode


class Checker:
    def __init__(self, client, server):
        self.client, self.server = client, server
        self.failures = 0

    def run(self, *args, check=True):
        r = subprocess.run([self.client, "--server", f"127.0.0.1:{self.server.grpc_port}", *args],
                           capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError(f"rwkv-client {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def generate(self, *args):
        out = self.run("generate", "--json", "--temperature", "0", "--ignore-eos", *args).stdout
        return json.loads(out)

    def tokens(self, text):
        return [int(x) for x in self.run("tokenize", text).stdout.strip().split(",") if x]

    def expect(self, cond, what):
        print(("ok   " if cond else "FAIL ") + what, flush=True)
        if not cond:
            self.failures += 1


def ids_arg(ids):
    return ",".join(str(i) for i in ids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--client", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--vocab", required=True)
    a = ap.parse_args()

    # A generous grace: the drain check streams 60000 tokens, slow under the sanitizers on a busy machine.
    srv = Server(a.server, a.model, a.vocab, ["--grace", "120"])
    c = Checker(a.client, srv)
    try:
        c.expect(c.run("health").stdout.strip() == "SERVING", "health: SERVING once loaded")

        # Concurrent streams of different lengths equal their single-stream greedy output.
        reqs = [(["--tokens", ids_arg([10 + i, 20, 30 + i]), "--max-tokens", str(5 + 9 * i)]) for i in range(8)]
        results = [None] * len(reqs)

        def worker(i):
            results[i] = c.generate(*reqs[i])["token_ids"]
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(reqs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        alone = [c.generate(*r)["token_ids"] for r in reqs]
        c.expect(results == alone, "8 concurrent streams each equal their single-stream output")
        c.expect([len(r) for r in results] == [5 + 9 * i for i in range(8)], "each stream has its own length")

        # Session continuation equals one stateless request.
        c.run("session", "create", "--id", "A")
        t1 = c.generate("--session", "A", "--prompt", "Hello", "--max-tokens", "8")
        t2 = c.generate("--session", "A", "--prompt", " again", "--max-tokens", "8")
        flat = c.tokens("Hello") + t1["token_ids"] + c.tokens(" again")
        stateless = c.generate("--tokens", ids_arg(flat), "--max-tokens", "8")
        c.expect(t2["token_ids"] == stateless["token_ids"], "turn 2 equals prompt1 + output1 + prompt2 stateless")
        c.expect(t2["session_tokens"] == len(flat) + 8, f"session covers every token ({t2['session_tokens']})")

        # Fork: the branch continues exactly like the source would.
        c.run("session", "fork", "A", "--id", "B")
        fa = c.generate("--session", "A", "--prompt", " fork", "--max-tokens", "6")
        fb = c.generate("--session", "B", "--prompt", " fork", "--max-tokens", "6")
        c.expect(fa["token_ids"] == fb["token_ids"], "fork continues identically")

        # A cancelled turn leaves the session intact (B is A's twin until now).
        before = c.run("session", "get", "A").stdout.split("\t")[1]
        p = subprocess.Popen([a.client, "--server", f"127.0.0.1:{srv.grpc_port}", "generate", "--session", "A",
                              "--prompt", " long", "--max-tokens", "90000", "--ignore-eos"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdout.read(16)  # Streaming has begun.
        p.send_signal(signal.SIGINT)  # The client cancels the call.
        _, err = p.communicate(timeout=60)
        c.expect(p.returncode != 0 and b"CANCELLED" in err, "interrupted client ends with CANCELLED")
        after = c.run("session", "get", "A").stdout.split("\t")[1]
        c.expect(before == after, f"cancelled turn left the token count ({before} -> {after})")
        # B got the same turns as A before the cancel, so both must continue identically.
        c.run("session", "fork", "A", "--id", "A2")
        ga = c.generate("--session", "A", "--prompt", " next", "--max-tokens", "6")
        gb = c.generate("--session", "B", "--prompt", " next", "--max-tokens", "6")
        c.expect(ga["token_ids"] == gb["token_ids"], "after the cancelled turn the session continues as if it never ran")

        # Export, then import under a new id: both continue identically.
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "a.state")
            c.run("session", "export", "A2", path)
            c.run("session", "import", path, "--id", "C")
            x = c.generate("--session", "A2", "--prompt", " end", "--max-tokens", "6")
            y = c.generate("--session", "C", "--prompt", " end", "--max-tokens", "6")
            c.expect(x["token_ids"] == y["token_ids"], "export then import continues identically")
            with open(path, "r+b") as f:
                f.seek(-1, 2)
                last = f.read(1)
                f.seek(-1, 2)
                f.write(bytes([last[0] ^ 1]))
            r = c.run("session", "import", path, "--id", "D", check=False)
            c.expect(r.returncode != 0 and "DATA_LOSS" in r.stderr, "a corrupt state is refused with DATA_LOSS")

        # Batching is real: 16 concurrent streams make steps with more than one sequence.
        threads = [threading.Thread(target=c.generate, args=("--tokens", str(40 + i), "--max-tokens", "200"))
                   for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        text = srv.metrics()
        le1 = float(re.search(r'^rwkv_batch_size_bucket\{le="1"\} (\S+)', text, re.M).group(1))
        total = float(re.search(r"^rwkv_batch_size_count (\S+)", text, re.M).group(1))
        c.expect(total > le1, f"batch-size metric shows multi-sequence steps ({total - le1:.0f} of {total:.0f})")
        missing = [m for m in METRICS if not re.search(rf"^{m}(_bucket|_count|\{{| )", text, re.M)]
        c.expect(not missing, f"every DESIGN.md metric is exported (missing: {missing})")
        gen = float(re.search(r"^rwkv_generated_tokens_total (\S+)", text, re.M).group(1))
        c.expect(gen >= 16 * 200, f"generated-token counter counts ({gen:.0f})")

        # Errors carry their codes.
        r = c.run("generate", "--session", "nope", "--prompt", "x", check=False)
        c.expect(r.returncode == 1 and "NOT_FOUND" in r.stderr, "unknown session is NOT_FOUND")
        r = c.run("generate", "--prompt", "x", "--max-tokens", "0", check=False)
        c.expect("INVALID_ARGUMENT" in r.stderr and "stop.max_tokens" in r.stderr, "bad max_tokens names the field")

        # Drain on SIGTERM.
        long = subprocess.Popen([a.client, "--server", f"127.0.0.1:{srv.grpc_port}", "generate", "--prompt", "go",
                                 "--max-tokens", "60000", "--ignore-eos"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        long.stdout.read(16)
        srv.proc.send_signal(signal.SIGTERM)
        deadline, status = time.time() + 10, ""
        while time.time() < deadline and status != "NOT_SERVING":
            status = c.run("health", check=False).stdout.strip()
        c.expect(status == "NOT_SERVING", "draining server reports NOT_SERVING")
        live = c.run("health", "--service", "liveness", check=False).stdout.strip()
        c.expect(live == "SERVING", "liveness stays SERVING while draining (no restart mid-drain)")
        r = c.run("generate", "--prompt", "x", "--max-tokens", "3", check=False)
        c.expect("UNAVAILABLE" in r.stderr, "new requests get UNAVAILABLE while draining")
        _, err = long.communicate(timeout=120)
        c.expect(long.returncode == 0 and b"60000 generated" in err, "the running stream completed during the drain")
        c.expect(srv.proc.wait(timeout=60) == 0, "server exited 0 after the drain")
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
    if c.failures:
        print(open(srv.log.name).read()[-4000:])
        print(f"{c.failures} check(s) failed")
        return 1
    print("all end-to-end checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
