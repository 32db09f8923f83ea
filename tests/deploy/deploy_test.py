#!/usr/bin/env python3
"""The deployment assets (deploy/, docker/) checked with the real tools, in three modes:

  manifests  kubectl kustomize renders both overlays, and the objects say what docs/deploy.md
             promises (gRPC health probes, drain timing, non-root read-only pods, model volume,
             services, PDB, monitoring wiring); every RWKV_* key is a real server flag; yamllint;
             promtool check rules; the images' runtime package lists cover the binaries' libraries.
  lint       hadolint on both Dockerfiles (exit 77, skipped, when hadolint is not installed).
  scrape     Debian's Prometheus on loopback scrapes a running rwkv-server: the generated-token
             counter comes back through the HTTP API, every alert rule evaluates, every dashboard
             query and the autoscaler's adapter query run, and every metric name they use exists in
             the live scrape.
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

failures = 0


def expect(cond, what):
    global failures
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures += 1


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)


def render(overlay):
    r = run(["kubectl", "kustomize", os.path.join(DEPLOY, "overlays", overlay)])
    if r.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay}: {r.stderr}")
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def rules_file(objs, path):
    """The PrometheusRule's groups as a plain Prometheus rule file."""
    rule = by_kind(objs, "PrometheusRule")[0]
    with open(path, "w") as f:
        yaml.safe_dump({"groups": rule["spec"]["groups"]}, f)
    return rule["spec"]["groups"]


def server_flags(server):
    return set(re.findall(r"\[(RWKV_[A-Z_]+)\]", run([server, "--help"]).stdout))


def runtime_packages(dockerfile):
    """Packages the runtime stage installs (after the last FROM)."""
    text = open(dockerfile).read().split("\nFROM ")[-1]
    m = re.search(r"apt-get install -y -q --no-install-recommends \\\n(.*?)\n \&\&", text, re.S)
    return set(m.group(1).replace("\\", " ").split()) if m else set()


def needed_packages(binaries):
    base = {"libc6", "libstdc++6", "libgcc-s1"}  # In every Debian image.
    pkgs, unknown = set(), []
    for b in binaries:
        for line in run(["ldd", b]).stdout.splitlines():
            m = re.search(r"=> (/\S+)", line)
            if not m:
                continue
            lib = os.path.realpath(m.group(1))
            if "cuda" in lib or re.search(r"lib(cudart|cublas|cublasLt)\.so", lib):
                continue  # CUDA's own libraries: the CUDA image installs them by name.
            if re.search(r"lib(asan|ubsan|lsan|tsan)\.so", lib):
                continue  # A sanitizer build's runtime (make sanitize), never in an image.
            owner = None
            for p in (lib, lib.replace("/usr/lib/", "/lib/", 1), "/usr" + lib if lib.startswith("/lib/") else lib):
                r = run(["dpkg", "-S", p])
                if r.returncode == 0:
                    owner = r.stdout.split(":")[0]
                    break
            if owner is None:
                unknown.append(lib)
            elif owner not in base:
                pkgs.add(owner)
    return pkgs, unknown


def manifests(a):
    objs = {o: render(o) for o in ("cpu", "gpu")}
    for overlay, docs in objs.items():
        kinds = sorted({d["kind"] for d in docs})
        expect(kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                         "PrometheusRule", "Service", "ServiceAccount", "ServiceMonitor"],
               f"{overlay}: kubectl kustomize renders every object ({', '.join(kinds)})")
        dep = by_kind(docs, "Deployment")[0]
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        cms = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("rwkv-server-config")]
        env = cms[0]["data"]
        expect(c["envFrom"][0]["configMapRef"]["name"] == cms[0]["metadata"]["name"],
               f"{overlay}: the container reads the generated ConfigMap ({cms[0]['metadata']['name']})")
        unknown = sorted(set(env) - server_flags(a.server))
        expect(not unknown, f"{overlay}: every ConfigMap key is an rwkv-server flag" + (f" (not: {unknown})" if unknown else ""))
        probes = {k: c.get(k, {}) for k in ("startupProbe", "readinessProbe", "livenessProbe")}
        expect(all(p.get("grpc", {}).get("port") == 50051 for p in probes.values()),
               f"{overlay}: startup, readiness and liveness probes use grpc.health.v1 on 50051")
        expect(probes["livenessProbe"]["grpc"].get("service") == "liveness" and
               "service" not in probes["readinessProbe"]["grpc"],
               f"{overlay}: readiness asks the server's status, liveness the 'liveness' service")
        sleep = int(c["lifecycle"]["preStop"]["exec"]["command"][-1])
        grace = float(env["RWKV_GRACE"])
        expect(pod["terminationGracePeriodSeconds"] > sleep + grace,
               f"{overlay}: terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} > preStop {sleep} + drain {grace:g}")
        sc = c["securityContext"]
        expect(pod["securityContext"]["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and
               not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"],
               f"{overlay}: non-root, read-only root filesystem, no privilege escalation, no capabilities")
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        expect(mounts.get("/models", {}).get("readOnly") is True and env["RWKV_MODEL"].startswith("/models/"),
               f"{overlay}: the model comes from a read-only volume at /models")
        res = c["resources"]
        expect(res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory") and res.get("limits", {}).get("memory"),
               f"{overlay}: cpu and memory requests and a memory limit")
        gpu = res.get("limits", {}).get("nvidia.com/gpu")
        if overlay == "gpu":
            expect(gpu == 1 and env.get("RWKV_BACKEND") == "cuda" and c["image"].endswith(":cuda"),
                   "gpu: one nvidia.com/gpu, the CUDA image and --backend cuda")
        else:
            expect(gpu is None and env.get("RWKV_BACKEND", "cpu") == "cpu" and c["image"].endswith(":cpu"),
                   "cpu: no GPU, the CPU image and the CPU backend")
        svcs = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
        main, headless = svcs.get("rwkv-serve"), svcs.get("rwkv-serve-headless")
        ports = {p["name"] for p in c.get("ports", [])}
        expect(main and {p["name"] for p in main["spec"]["ports"]} == {"grpc", "http", "metrics"} and
               {"grpc", "http", "metrics"} <= ports and env.get("RWKV_HTTP_PORT") == "8080" and
               headless and headless["spec"].get("clusterIP") == "None",
               f"{overlay}: a service for gRPC, the HTTP API and metrics (container ports and RWKV_HTTP_PORT "
               "to match), and a headless one")
        sm = by_kind(docs, "ServiceMonitor")[0]
        expect(sm["spec"]["endpoints"][0]["port"] == "metrics" and
               sm["spec"]["selector"]["matchLabels"].items() <= main["metadata"]["labels"].items(),
               f"{overlay}: the ServiceMonitor selects the service's metrics port")
        hpa = by_kind(docs, "HorizontalPodAutoscaler")[0]
        expect(hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"],
               f"{overlay}: the HPA scales the Deployment")
        pdb = by_kind(docs, "PodDisruptionBudget")[0]
        expect(pdb["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items(),
               f"{overlay}: the PodDisruptionBudget covers the pods")
        ann = dep["spec"]["template"]["metadata"]["annotations"]
        expect(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == "9090",
               f"{overlay}: prometheus.io annotations for a plain Prometheus")

    stateful(objs["cpu"], a)
    secure(objs["cpu"], a)

    r = run(["yamllint", "-c", os.path.join(DEPLOY, ".yamllint"), DEPLOY])
    expect(r.returncode == 0, "yamllint deploy/" + ("" if r.returncode == 0 else ":\n" + r.stdout))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rules.yaml")
        rules_file(objs["cpu"], path)
        r = run(["promtool", "check", "rules", path])
        expect(r.returncode == 0, "promtool check rules: " + (r.stdout + r.stderr).strip().replace("\n", " "))

    binaries = [a.server, a.client, a.cli]
    need, unknown = needed_packages(binaries)
    expect(not unknown, "every library of the binaries belongs to a Debian package" + (f" (not: {unknown})" if unknown else ""))
    for df in ("Dockerfile.cpu", "Dockerfile.cuda"):
        have = runtime_packages(os.path.join(ROOT, "docker", df))
        missing = sorted(need - have)
        expect(have and not missing, f"{df}: the runtime stage installs every library package the binaries need"
               + (f" (missing: {missing})" if missing else f" ({len(need)} packages)"))
    cuda = runtime_packages(os.path.join(ROOT, "docker", "Dockerfile.cuda"))
    expect({"cuda-cudart-13-0", "libcublas-13-0"} <= cuda, "Dockerfile.cuda: the runtime stage installs cudart and cuBLAS")


def secure(cpu_docs, a):
    """The TLS + API keys variant: the cpu overlay's pods with both Secrets mounted, HTTPS probes."""
    docs = render("cpu-secure")
    dep = by_kind(docs, "Deployment")[0]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("rwkv-server-config")][0]["data"]
    unknown = sorted(set(env) - server_flags(a.server))
    expect(not unknown, "cpu-secure: every ConfigMap key is an rwkv-server flag" + (f" (not: {unknown})" if unknown else ""))
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    ok = True
    for var in ("RWKV_TLS_CERT", "RWKV_TLS_KEY", "RWKV_API_KEYS"):
        m = mounts.get(os.path.dirname(env.get(var, "")))
        ok = ok and m is not None and m.get("readOnly") and m["name"] in secrets
    expect(ok and sorted(secrets.values()) == ["rwkv-serve-api-keys", "rwkv-serve-tls"],
           "cpu-secure: the TLS files and the keys file come read-only from the two Secrets")
    probes = {k: c.get(k, {}) for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    expect(all("grpc" not in p and p.get("httpGet", {}).get("scheme") == "HTTPS" and p["httpGet"]["port"] == 9090
               for p in probes.values()) and probes["livenessProbe"]["httpGet"]["path"] == "/livez" and
           probes["readinessProbe"]["httpGet"]["path"] == "/readyz",
           "cpu-secure: probes are HTTPS /readyz and /livez on the metrics port (kubelet gRPC probes are plaintext)")
    sm = by_kind(docs, "ServiceMonitor")[0]["spec"]["endpoints"][0]
    expect(sm.get("scheme") == "https" and sm["tlsConfig"]["ca"]["secret"]["name"] == "rwkv-serve-tls",
           "cpu-secure: Prometheus scrapes over HTTPS, checking the server against the Secret's CA")
    cpu_c = dict(by_kind(cpu_docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0])
    same = dict(c)
    for k in ("envFrom", "volumeMounts", "startupProbe", "readinessProbe", "livenessProbe"):
        same[k] = cpu_c.get(k)
    expect(same == cpu_c, "cpu-secure: otherwise the cpu overlay's container")


def stateful(cpu_docs, a):
    """The StatefulSet variant: the cpu overlay's pods with a volume per pod for --state-dir."""
    docs = render("cpu-stateful")
    expect(not by_kind(docs, "Deployment") and len(by_kind(docs, "StatefulSet")) == 1,
           "cpu-stateful: a StatefulSet replaces the Deployment")
    sts = by_kind(docs, "StatefulSet")[0]
    spec, pod = sts["spec"], sts["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("rwkv-server-config")][0]["data"]
    unknown = sorted(set(env) - server_flags(a.server))
    expect(not unknown, "cpu-stateful: every ConfigMap key is an rwkv-server flag" + (f" (not: {unknown})" if unknown else ""))
    claims = {t["metadata"]["name"]: t for t in spec.get("volumeClaimTemplates", [])}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    expect("state" in claims and claims["state"]["spec"]["accessModes"] == ["ReadWriteOnce"] and
           mounts.get("state") == env.get("RWKV_STATE_DIR"),
           f"cpu-stateful: each pod's volume claim 'state' is mounted at RWKV_STATE_DIR ({env.get('RWKV_STATE_DIR')})")
    size = claims["state"]["spec"]["resources"]["requests"]["storage"]
    to_bytes = lambda v: float(re.match(r"[\d.]+", v).group(0)) * 1024 ** "KMGT".index(re.search(r"([KMGT])i", v).group(1)[0]) * 1024
    expect(to_bytes(env["RWKV_STATE_DISK_BYTES"]) < to_bytes(size),
           f"cpu-stateful: RWKV_STATE_DISK_BYTES {env['RWKV_STATE_DISK_BYTES']} stays below the volume's {size}")
    expect(spec["serviceName"] == "rwkv-serve-headless" and
           spec.get("persistentVolumeClaimRetentionPolicy", {}).get("whenScaled") == "Retain",
           "cpu-stateful: stable pod names through the headless service; volumes kept on scale-in")
    dep = by_kind(cpu_docs, "Deployment")[0]
    dep_c = dict(dep["spec"]["template"]["spec"]["containers"][0])
    sts_c = dict(c)
    sts_c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] != "state"]
    cm = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("rwkv-server-config")][0]
    expect(c["envFrom"][0]["configMapRef"]["name"] == cm["metadata"]["name"],
           f"cpu-stateful: the container reads the generated ConfigMap ({cm['metadata']['name']})")
    sts_c["envFrom"] = dep_c["envFrom"]  # Its own ConfigMap (with RWKV_STATE_DIR), checked above.
    expect(sts_c == dep_c and pod["volumes"] == dep["spec"]["template"]["spec"]["volumes"],
           "cpu-stateful: the pod template is the cpu Deployment's, plus the state volume")
    sleep = int(c["lifecycle"]["preStop"]["exec"]["command"][-1])
    expect(pod["terminationGracePeriodSeconds"] >= sleep + float(env["RWKV_GRACE"]) + 30,
           f"cpu-stateful: terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} leaves 30 s to write sessions")
    hpa = by_kind(docs, "HorizontalPodAutoscaler")[0]["spec"]
    expect(hpa["scaleTargetRef"]["kind"] == "StatefulSet" and hpa["scaleTargetRef"]["name"] == sts["metadata"]["name"],
           "cpu-stateful: the HPA scales the StatefulSet")
    envoy = yaml.safe_load(open(os.path.join(DEPLOY, "envoy", "envoy-stateful.yaml")))
    cluster = envoy["static_resources"]["clusters"][0]
    hosts = [e["endpoint"]["hostname"] for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]
    expect(cluster["common_lb_config"]["consistent_hashing_lb_config"]["use_hostname_for_hashing"] is True and
           hosts == [f"rwkv-serve-{i}.rwkv-serve-headless" for i in range(hpa["maxReplicas"])],
           f"envoy-stateful: the ring hashes the {len(hosts)} stable pod names up to maxReplicas, not IPs")


def lint(a):
    hadolint = os.path.join(ROOT, ".tools", "venv", "bin", "hadolint")
    if not os.access(hadolint, os.X_OK):
        hadolint = shutil.which("hadolint")
    if not hadolint:
        print("SKIP hadolint is not installed (scripts/install-deps.sh installs it from PyPI when it can)")
        return 77
    r = run([hadolint, "-c", os.path.join(ROOT, "docker", ".hadolint.yaml"),
             os.path.join(ROOT, "docker", "Dockerfile.cpu"), os.path.join(ROOT, "docker", "Dockerfile.cuda")])
    expect(r.returncode == 0, "hadolint docker/Dockerfile.cpu docker/Dockerfile.cuda" + ("" if r.returncode == 0 else ":\n" + r.stdout))
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port, path, **params):
    url = f"http://127.0.0.1:{port}/api/v1/{path}?" + urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def scrape(a):
    from e2e_test import Checker, Server  # noqa: E402
    docs = render("cpu")
    tmp = tempfile.mkdtemp(prefix="rwkv-prometheus-")
    groups = rules_file(docs, os.path.join(tmp, "rules.yaml"))
    srv = Server(a.server, a.model, a.vocab)
    prom = None
    try:
        port = free_port()
        with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
            yaml.safe_dump({
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "rule_files": ["rules.yaml"],
                "scrape_configs": [{"job_name": "rwkv-serve", "static_configs": [{
                    "targets": [f"127.0.0.1:{srv.metrics_port}"],
                    "labels": {"namespace": "test", "pod": "rwkv-serve-0"}}]}],
            }, f)
        log = open(os.path.join(tmp, "prometheus.log"), "w")
        prom = subprocess.Popen(["prometheus", f"--config.file={tmp}/prometheus.yml", f"--storage.tsdb.path={tmp}/data",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
        ready = False
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as r:
                    ready = r.status == 200
            except OSError:
                pass
            if ready or prom.poll() is not None:
                break
            time.sleep(0.1)
        if not ready:
            raise RuntimeError("prometheus did not start:\n" + open(log.name).read()[-3000:])
        # A first scrape before the requests, so that rates see the counters rise.
        for _ in range(150):
            if api(port, "query", query="rwkv_generated_tokens_total")["data"]["result"]:
                break
            time.sleep(0.1)
        c = Checker(a.client, srv)
        for i in range(3):
            c.generate("--tokens", f"{5 + i},6,7", "--max-tokens", "7")
        total = None
        for _ in range(150):
            res = api(port, "query", query="sum(rwkv_generated_tokens_total)")["data"]["result"]
            total = float(res[0]["value"][1]) if res else None
            if total == 21:
                break
            time.sleep(0.2)
        expect(total == 21, f"Prometheus scraped rwkv_generated_tokens_total = 21 after 3 x 7 tokens (got {total})")
        time.sleep(2.5)  # More scrapes after the requests, for the rates below.

        names = set()
        for line in srv.metrics().splitlines():
            if line and not line.startswith("#"):
                names.add(re.split(r"[{ ]", line, 1)[0])
        used = {}
        dash = json.load(open(os.path.join(DEPLOY, "grafana", "rwkv-serve.json")))
        exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
        for e in exprs:
            used.setdefault("dashboard", set()).update(re.findall(r"\brwkv_[a-z0-9_]+", e))
        for g in groups:
            for r in g["rules"]:
                used.setdefault("alerts", set()).update(re.findall(r"\brwkv_[a-z0-9_]+", r["expr"]))
        cm = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rwkv-serve-adapter-rules"][0]
        adapter = yaml.safe_load(cm["data"]["config.yaml"])["rules"]
        hpa = by_kind(docs, "HorizontalPodAutoscaler")[0]
        for r in adapter:
            used.setdefault("autoscaler", set()).update(re.findall(r"\brwkv_[a-z0-9_]+", r["seriesQuery"]))
        used["autoscaler"].update(m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"])
        for where, ns in sorted(used.items()):
            missing = sorted(ns - names)
            expect(ns and not missing, f"every metric the {where} uses is in the live scrape ({len(ns)} names)"
                   + (f"; missing: {missing}" if missing else ""))

        # Rules: every alert evaluated without error.
        health = {}
        for _ in range(100):
            rules = [r for g in api(port, "rules")["data"]["groups"] for r in g["rules"]]
            health = {r["name"]: (r["health"], r.get("lastError", "")) for r in rules}
            if rules and all(h == "ok" for h, _ in health.values()):
                break
            time.sleep(0.1)
        bad = {k: v for k, v in health.items() if v[0] != "ok"}
        expect(len(health) == sum(len(g["rules"]) for g in groups) and not bad,
               f"Prometheus evaluates all {len(health)} alert rules without error" + (f": {bad}" if bad else ""))

        # Dashboard queries with Grafana's variables filled in.
        errors, empty = [], []
        for e in exprs:
            q = e.replace("$__rate_interval", "1m").replace("$namespace", ".*").replace("$pod", ".*")
            try:
                res = api(port, "query", query=q)
                if not res["data"]["result"]:
                    empty.append(q)
            except urllib.error.HTTPError as err:
                errors.append(f"{q}: {err.read().decode()[:200]}")
        expect(not errors, f"all {len(exprs)} dashboard queries are valid PromQL" + (f": {errors}" if errors else ""))
        fill = lambda e: e.replace("$__rate_interval", "1m").replace("$namespace", ".*").replace("$pod", ".*")  # noqa: E731
        tp = [fill(e) for e in exprs if "rwkv_generated_tokens_total" in e]
        tp_ok = bool(tp) and not set(tp) & set(empty)
        expect(tp_ok, "the dashboard's throughput queries return data" + ("" if tp_ok else f" (empty: {empty})"))

        # The adapter rule as prometheus-adapter would run it for the pod.
        r = adapter[0]
        series = api(port, "series", **{"match[]": r["seriesQuery"]})["data"]
        q = (r["metricsQuery"].replace("<<.Series>>", "rwkv_requests_waiting")
             .replace("<<.LabelMatchers>>", 'namespace="test",pod="rwkv-serve-0"').replace("<<.GroupBy>>", "pod"))
        res = api(port, "query", query=q)["data"]["result"]
        expect(series and res and res[0]["metric"].get("pod") == "rwkv-serve-0",
               "the autoscaler's adapter rule finds the series and yields a per-pod value")
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(timeout=30)
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["manifests", "lint", "scrape"])
    for f in ("server", "client", "cli", "model", "vocab"):
        ap.add_argument("--" + f)
    a = ap.parse_args()
    rc = {"manifests": manifests, "lint": lint, "scrape": scrape}[a.mode](a)
    if rc == 77:
        return 77
    print(f"{failures} check(s) failed" if failures else f"all {a.mode} checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
