#!/usr/bin/env python3
"""Durable sessions end to end: the real rwkv-server and rwkv-client binaries with --state-dir.

  1. SIGTERM + restart with the same flags: every session is back, its export byte-identical to
     the one taken before the stop, its greedy continuation equal to one stateless request over
     the whole conversation; two more restarts in a row change no file.
  2. kill -9 in the middle of concurrent turns (--persist-interval 1), then restart: every
     session present is intact (it continues exactly like the conversation up to one of its
     committed turns) and the turns missing all finished within the last interval before the kill.
     The counts are printed.
  3. A session file corrupted by hand: the next turn on it is DATA_LOSS, the file is in
     quarantine/, the metric counts it, and the session is gone; the others are unharmed.
Standard library only; loopback ports the server picks.
"""
import argparse
import hashlib
import os
import re
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_test import Checker, Server, ids_arg  # noqa: E402

INTERVAL = 1.0  # --persist-interval of the kill -9 run, seconds.


def dir_digest(d):
    out = {}
    for name in sorted(os.listdir(os.path.join(d, "sessions"))):
        with open(os.path.join(d, "sessions", name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def session_tokens(c, sid):
    r = c.run("session", "get", sid, check=False)
    if r.returncode != 0:
        return None, r.stderr
    m = re.search(r"tokens=(\d+)\ttier=(\w+)", r.stdout)
    return int(m.group(1)), m.group(2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--client", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--vocab", required=True)
    a = ap.parse_args()
    failures = 0
    procs = []

    def start(state_dir, *extra):
        s = Server(a.server, a.model, a.vocab, ["--state-dir", state_dir, *extra])
        procs.append(s)
        return s, Checker(a.client, s)

    try:
        # 1. SIGTERM + restart.
        with tempfile.TemporaryDirectory() as d:
            srv, c = start(d)
            history = {}
            exports = {}
            for i in range(5):
                sid = f"conv-{i}"
                c.run("session", "create", "--id", sid)
                prompt = [20 + i, 30, 40 + i]
                out = c.generate("--session", sid, "--tokens", ids_arg(prompt), "--max-tokens", "22")
                history[sid] = prompt + out["token_ids"]
                path = os.path.join(d, f"{sid}.before")
                c.run("session", "export", sid, path)
                exports[sid] = open(path, "rb").read()
            c.expect(srv.stop() == 0, "SIGTERM: the server exits 0 with sessions to write")
            c.expect(len(os.listdir(os.path.join(d, "sessions"))) == 5, "every session has its file after the drain")
            failures += c.failures

            srv, c = start(d)
            c.expect(c.run("health").stdout.strip() == "SERVING", "restarted server is SERVING")
            listed = c.run("session", "list").stdout
            c.expect(listed.count("tier=DISK") == 5, "ListSessions shows all 5 at once, on the disk tier")
            for sid, hist in history.items():
                tokens, tier = session_tokens(c, sid)
                c.expect(tokens == len(hist), f"{sid}: {tokens} tokens after the restart (expected {len(hist)})")
                path = os.path.join(d, f"{sid}.after")
                c.run("session", "export", sid, path)
                c.expect(open(path, "rb").read() == exports[sid], f"{sid}: export byte-identical across the restart")
            for sid, hist in history.items():
                nxt = [50, 51]
                cont = c.generate("--session", sid, "--tokens", ids_arg(nxt), "--max-tokens", "8")["token_ids"]
                flat = c.generate("--tokens", ids_arg(hist + nxt), "--max-tokens", "8")["token_ids"]
                c.expect(cont == flat, f"{sid}: continues exactly like one stateless request over the conversation")
                history[sid] = hist + nxt + cont
            c.expect(srv.stop() == 0, "second stop exits 0")
            failures += c.failures
            snapshot = dir_digest(d)
            for n in range(2):
                srv, c = start(d)
                c.run("session", "list")
                c.expect(srv.stop() == 0, f"restart {n + 1} of 2 without turns exits 0")
                c.expect(dir_digest(d) == snapshot, f"restart {n + 1} of 2 changed no file")
                failures += c.failures

        # 2. kill -9 during concurrent turns.
        with tempfile.TemporaryDirectory() as d:
            srv, c = start(d, "--persist-interval", str(INTERVAL))
            n_sessions = 8
            turns = {f"k-{i}": [] for i in range(n_sessions)}  # (finished_at, session_tokens, prompt, output)
            stop = threading.Event()
            for sid in turns:
                c.run("session", "create", "--id", sid)

            def worker(sid):
                k = 0
                while not stop.is_set():
                    prompt = [60 + (k % 30), 61]
                    r = c.run("generate", "--json", "--temperature", "0", "--ignore-eos", "--session", sid,
                              "--tokens", ids_arg(prompt), "--max-tokens", "5", check=False)
                    if r.returncode != 0:
                        return
                    out = __import__("json").loads(r.stdout)
                    turns[sid].append((time.time(), out["session_tokens"], prompt, out["token_ids"]))
                    k += 1
            threads = [threading.Thread(target=worker, args=(sid,)) for sid in turns]
            for t in threads:
                t.start()
            time.sleep(4.0)
            killed_at = time.time()
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait()
            stop.set()
            for t in threads:
                t.join()

            srv, c = start(d, "--persist-interval", str(INTERVAL))
            checked = lost = total = 0
            slack = 1.0  # The write itself (fsync) after the interval, on a loaded CI machine.
            for sid, done in turns.items():
                total += len(done)
                tokens, _ = session_tokens(c, sid)
                if tokens is None:
                    c.expect(all(t >= killed_at - INTERVAL - slack for t, *_ in done),
                             f"{sid}: absent, and every one of its {len(done)} turns was in the last interval")
                    lost += len(done)
                    continue
                # The restored state is at a turn boundary: find which.
                k = next((j for j, (_, st, _, _) in enumerate(done) if st == tokens), None)
                if tokens == 0:
                    k = -1
                c.expect(k is not None, f"{sid}: restored token count {tokens} is one of its committed turns")
                if k is None:
                    continue
                missing = done[k + 1:]
                lost += len(missing)
                c.expect(all(t >= killed_at - INTERVAL - slack for t, *_ in missing),
                         f"{sid}: the {len(missing)} missing turn(s) finished within the last interval before the kill")
                hist = []
                for _, _, p, o in done[:k + 1]:
                    hist += p + o
                nxt = [70, 71]
                cont = c.generate("--session", sid, "--tokens", ids_arg(nxt), "--max-tokens", "6")["token_ids"]
                flat = c.generate("--tokens", ids_arg(hist + nxt), "--max-tokens", "6")["token_ids"]
                c.expect(cont == flat, f"{sid}: intact (continues exactly like its conversation up to turn {k + 1})")
                checked += 1
            print(f"kill -9: {checked} sessions checked intact, {total} turns committed before the kill, "
                  f"{lost} lost (persist interval {INTERVAL:g} s)", flush=True)
            c.expect(total >= 2 * n_sessions, f"the load ran ({total} turns)")
            c.expect(srv.stop() == 0, "server after the crash stops cleanly")
            failures += c.failures

            # 3. A file corrupted by hand is quarantined.
            victim = "k-3"
            path = os.path.join(d, "sessions", victim + ".state")
            data = bytearray(open(path, "rb").read())
            data[-10] ^= 0x40
            open(path, "wb").write(bytes(data))
            srv, c = start(d, "--persist-interval", str(INTERVAL))
            r = c.run("generate", "--session", victim, "--tokens", "5", "--max-tokens", "2", check=False)
            c.expect(r.returncode != 0 and "DATA_LOSS" in r.stderr and "quarantine" in r.stderr,
                     f"a turn on the corrupted session is DATA_LOSS naming the quarantine ({r.stderr.strip()[:120]})")
            q = os.listdir(os.path.join(d, "quarantine"))
            c.expect(len(q) == 1 and q[0].startswith(victim + "."), f"the file is in quarantine/ ({q})")
            r = c.run("session", "get", victim, check=False)
            c.expect("NOT_FOUND" in r.stderr, "the corrupted session is gone, never served")
            m = re.search(r"^rwkv_state_disk_quarantined_total (\S+)", srv.metrics(), re.M)
            c.expect(m is not None and float(m.group(1)) == 1, "rwkv_state_disk_quarantined_total counts it")
            text = srv.metrics()
            disk = re.search(r'^rwkv_sessions\{tier="disk"\} (\S+)', text, re.M)
            c.expect(disk is not None and float(disk.group(1)) >= 1, "rwkv_sessions{tier=\"disk\"} is exported")
            for metric in ("rwkv_state_disk_bytes", "rwkv_state_disk_writes_total", "rwkv_state_disk_reads_total",
                           "rwkv_state_disk_write_seconds_count"):
                c.expect(re.search(rf"^{metric} ", text, re.M) is not None, f"{metric} is exported")
            other = "k-4" if victim != "k-4" else "k-5"
            r = c.run("generate", "--session", other, "--tokens", "5", "--max-tokens", "2", check=False)
            c.expect(r.returncode == 0, "the other sessions are unharmed")
            c.expect(srv.stop() == 0, "stops cleanly")
            failures += c.failures
    finally:
        for s in procs:
            if s.proc.poll() is None:
                s.proc.kill()
    if failures:
        for s in procs[-2:]:
            print(open(s.log.name).read()[-3000:])
        print(f"{failures} check(s) failed")
        return 1
    print("all durable-session checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
