#!/usr/bin/env python3
"""End to end, the hardened edge with the real binaries on a tiny model:
  a second server on a gRPC port in use refuses to start (no SO_REUSEPORT split);
  TLS on both ports, API keys (no key, wrong key, right key), mTLS;
  SIGHUP re-reads the keys and the certificates: a stream running across the reload completes,
  new handshakes get the new certificate, a broken file is refused and the old ones stay;
  /metrics answers over HTTPS while many clients hold connections open and one trickles bytes;
  rwkv-client: unknown flags and bad values exit 2, per subcommand; `--prompt bench --json`.
Standard library only; servers run on loopback ports they pick themselves.
"""
import argparse
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_test import Server  # noqa: E402

KEY_A = "e2e-key-tenant-a-0123456789"
KEY_B = "e2e-key-tenant-b-0123456789"
KEY_C = "e2e-key-tenant-c-0123456789"


class Checker:
    def __init__(self, client):
        self.client = client
        self.failures = 0

    def run(self, server, *args, timeout=60):
        return subprocess.run([self.client, "--server", f"127.0.0.1:{server.grpc_port}", "--timeout", "10", *args],
                              capture_output=True, text=True, timeout=timeout)

    def expect(self, cond, what):
        print(("ok   " if cond else "FAIL ") + what, flush=True)
        if not cond:
            self.failures += 1


def https_context(ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False  # The test certificates name localhost; we connect to 127.0.0.1 by address.
    return ctx


def scrape(port, ctx=None, timeout=10):
    scheme = "https" if ctx else "http"
    t0 = time.monotonic()
    with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/metrics", timeout=timeout, context=ctx) as r:
        body = r.read().decode()
    return body, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--client", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--tls", required=True, help="tests/fixtures/tls")
    a = ap.parse_args()
    c = Checker(a.client)
    work = tempfile.mkdtemp(prefix="rwkv-sec-")
    servers = []
    try:
        # The gRPC port: a second server on a port in use refuses to start.
        first = Server(a.server, a.model, a.vocab)
        servers.append(first)
        second = Server(a.server, a.model, a.vocab, port=str(first.grpc_port), wait=False)
        servers.append(second)
        try:
            rc = second.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rc = None
        c.expect(rc == 1 and "the port is in use" in second.text(),
                 f"a second server on gRPC port {first.grpc_port} exits 1 naming the port in use (rc {rc})")
        c.expect(c.run(first, "health").stdout.strip() == "SERVING", "the first server still serves alone")
        first.stop()

        # rwkv-client: usage errors exit 2, per subcommand, before anything is sent.
        for args, want in [(["generate", "--prompt", "x", "--temprature", "0"], "unknown flag --temprature for generate"),
                           (["generate", "--prompt", "x", "--max-tokens", "ten"], "--max-tokens: 'ten' is not an integer"),
                           (["generate", "--prompt", "x", "--temperature", "hot"], "--temperature: 'hot' is not a number"),
                           (["info", "--prompt", "x"], "unknown flag --prompt for info"),
                           (["bench", "--concurrency", "1,x"], "--concurrency: '1,x' is not a list of integers"),
                           (["--timeout", "soon", "info"], "--timeout: 'soon' is not a number"),
                           (["session", "list", "--sessions"], "unknown flag --sessions for session")]:
            r = subprocess.run([a.client, "--server", "127.0.0.1:1", *args], capture_output=True, text=True, timeout=30)
            c.expect(r.returncode == 2 and want in r.stderr, f"rwkv-client {' '.join(args)}: exit 2, '{want}'")

        # TLS on both ports, API keys, SIGHUP reloads.
        cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
        shutil.copy(os.path.join(a.tls, "server1.pem"), cert)
        shutil.copy(os.path.join(a.tls, "server1.key"), key)
        keys = os.path.join(work, "keys.txt")
        with open(keys, "w") as f:
            f.write(f"{KEY_A} acme\n{KEY_B} bravo streams=1\n")
        srv = Server(a.server, a.model, a.vocab, ["--tls-cert", cert, "--tls-key", key, "--api-keys", keys])
        servers.append(srv)
        ca1, ca2 = os.path.join(a.tls, "ca1.pem"), os.path.join(a.tls, "ca2.pem")
        tls1 = ["--tls-ca", ca1, "--tls-server-name", "localhost"]
        tls2 = ["--tls-ca", ca2, "--tls-server-name", "localhost"]
        r = c.run(srv, *tls1, "info")
        c.expect(r.returncode == 1 and "UNAUTHENTICATED" in r.stderr, "no key: UNAUTHENTICATED")
        r = c.run(srv, *tls1, "--api-key", KEY_A + "x", "info")
        c.expect(r.returncode == 1 and "UNAUTHENTICATED" in r.stderr and KEY_A not in r.stderr,
                 "wrong key: UNAUTHENTICATED, key not echoed")
        r = c.run(srv, *tls1, "--api-key", KEY_A, "info")
        c.expect(r.returncode == 0 and "fingerprint" in r.stdout, "right key over TLS: served")
        r = c.run(srv, "--api-key", KEY_A, "info")
        c.expect(r.returncode == 1, "plaintext to the TLS port fails")
        env = dict(os.environ, RWKV_API_KEY=KEY_A)
        r = subprocess.run([a.client, "--server", f"127.0.0.1:{srv.grpc_port}", *tls1, "session", "create", "--id", "mine"],
                           capture_output=True, text=True, timeout=60, env=env)
        c.expect(r.returncode == 0, "RWKV_API_KEY from the environment")
        r = c.run(srv, *tls1, "--api-key", KEY_B, "session", "get", "mine")
        c.expect(r.returncode == 1 and "NOT_FOUND" in r.stderr, "another tenant's session is NOT_FOUND")
        log = srv.text()
        c.expect(KEY_A not in log and KEY_B not in log, "keys never reach the log")

        # /metrics over HTTPS, while 32 clients hold silent connections and one trickles a byte a second.
        ctx1 = https_context(ca1)
        idle = [socket.create_connection(("127.0.0.1", srv.metrics_port)) for _ in range(32)]
        trickle = socket.create_connection(("127.0.0.1", srv.metrics_port))
        stop = threading.Event()

        def drip():
            for ch in b"GET /metrics HTTP/1.1\r\n":
                if stop.wait(1.0):
                    return
                try:
                    trickle.send(bytes([ch]))
                except OSError:
                    return
        dripper = threading.Thread(target=drip)
        dripper.start()
        time.sleep(0.5)
        times = []
        for _ in range(5):
            body, took = scrape(srv.metrics_port, ctx1)
            times.append(took)
        stop.set()
        dripper.join()
        for s in idle + [trickle]:
            s.close()
        times.sort()
        c.expect("rwkv_auth_failures_total" in body and 'reason="invalid"' in body,
                 "HTTPS scrape carries the auth failure counter")
        with urllib.request.urlopen(f"https://127.0.0.1:{srv.metrics_port}/readyz", timeout=10, context=ctx1) as r:
            c.expect(r.status == 200, "GET /readyz over HTTPS: 200 while serving (probes for a TLS server)")
        with urllib.request.urlopen(f"https://127.0.0.1:{srv.metrics_port}/livez", timeout=10, context=ctx1) as r:
            c.expect(r.status == 200, "GET /livez over HTTPS: 200")
        c.expect(times[-1] < 5, f"scrapes answer while 33 connections stall (median {times[2]:.3f} s, max {times[-1]:.3f} s)")
        try:
            scrape(srv.metrics_port)
            plain_ok = True
        except Exception:
            plain_ok = False
        c.expect(not plain_ok, "plain HTTP to the HTTPS metrics port fails")

        # SIGHUP: keys. B goes, C comes.
        long = subprocess.Popen([a.client, "--server", f"127.0.0.1:{srv.grpc_port}", *tls1, "--api-key", KEY_A,
                                 "generate", "--prompt", "go", "--max-tokens", "60000", "--ignore-eos"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        long.stdout.read(16)  # Streaming.
        with open(keys, "w") as f:
            f.write(f"{KEY_A} acme\n{KEY_C} charlie\n")
        # SIGHUP: certificates. The second pair, from the second CA.
        shutil.copy(os.path.join(a.tls, "server2.pem"), cert)
        shutil.copy(os.path.join(a.tls, "server2.key"), key)
        srv.proc.send_signal(signal.SIGHUP)
        c.expect(srv.wait_log(r'msg="API keys reloaded"', 1) and srv.wait_log(r'msg="TLS certificates reloaded"', 1),
                 "SIGHUP reloads keys and certificates")
        ok_c = ok_new = False
        deadline = time.time() + 10
        while time.time() < deadline and not ok_new:  # gRPC's watcher picks the new files within a second.
            ok_new = c.run(srv, *tls2, "--api-key", KEY_C, "info").returncode == 0
            time.sleep(0.2)
        ok_c = ok_new
        c.expect(ok_c, "after SIGHUP: the new key over the new certificate is served")
        r = c.run(srv, *tls2, "--api-key", KEY_B, "info")
        c.expect(r.returncode == 1 and "UNAUTHENTICATED" in r.stderr, "after SIGHUP: the removed key is refused")
        c.expect(c.run(srv, *tls1, "--api-key", KEY_A, "info").returncode != 0, "after SIGHUP: the old CA no longer verifies")
        _, err = long.communicate(timeout=300)
        c.expect(long.returncode == 0 and b"60000 generated" in err,
                 f"the stream running across the reload completed ({err.decode(errors='replace')[-200:].strip()})")
        _, took = scrape(srv.metrics_port, https_context(ca2))
        c.expect(True, f"metrics port serves the new certificate ({took:.3f} s)")

        # A broken reload is refused; what is in use stays.
        with open(key, "w") as f:
            f.write("not a key\n")
        with open(keys, "w") as f:
            f.write("short acme\n")
        srv.proc.send_signal(signal.SIGHUP)
        c.expect(srv.wait_log(r'msg="TLS reload failed; the certificates in use stay"', 1) and
                 srv.wait_log(r'msg="API keys reload failed; the keys in use stay"', 1), "broken files are refused on SIGHUP")
        c.expect(c.run(srv, *tls2, "--api-key", KEY_C, "info").returncode == 0, "the old certificate and keys still serve")
        c.expect(srv.stop() == 0, "TLS server drains and exits 0")

        # mTLS: a client certificate from the CA is required.
        shutil.copy(os.path.join(a.tls, "server1.key"), key)
        shutil.copy(os.path.join(a.tls, "server1.pem"), cert)
        mtls = Server(a.server, a.model, a.vocab, ["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", ca1])
        servers.append(mtls)
        c.expect(c.run(mtls, *tls1, "info").returncode != 0, "mTLS: no client certificate, refused")
        r = c.run(mtls, *tls1, "--tls-cert", os.path.join(a.tls, "client1.pem"), "--tls-key",
                  os.path.join(a.tls, "client1.key"), "info")
        c.expect(r.returncode == 0, "mTLS: the client certificate from the CA is served")
        c.expect(mtls.stop() == 0, "mTLS server exits 0")

        # `--json` is a switch for generate even when an argument is "bench".
        plain = Server(a.server, a.model, a.vocab)
        servers.append(plain)
        r = c.run(plain, "generate", "--prompt", "bench", "--json", "--max-tokens", "3", "--temperature", "0")
        c.expect(r.returncode == 0 and r.stdout.startswith("{"), "generate --prompt bench --json prints JSON")
        plain.stop()
    finally:
        for s in servers:
            if s.proc.poll() is None:
                s.proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    if c.failures:
        for s in servers:
            print(s.text()[-3000:])
        print(f"{c.failures} check(s) failed")
        return 1
    print("all security end-to-end checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
