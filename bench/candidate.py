#!/usr/bin/env python3
"""portier as a candidate of the peer benchmark harness (peers.sh, "Candidate contract").

Turns the harness's routes.json into real Kubernetes manifests -- per route an Ingress, a Service
and an EndpointSlice, plus a TLS Secret and an ingress-nginx-style ConfigMap with the same
keep-alive settings the peers get -- then execs `portier serve` on them with one worker thread.

    peers.sh --candidate-name portier \
        --candidate 'python3 bench/candidate.py {routes} {workdir} {http_port} {https_port}'

PORTIER_BIN overrides the binary (default: target/release/portier next to this script).
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def write_manifests(routes_file: str, workdir: str) -> str:
    """Writes {workdir}/manifests/bench.yaml for the routes file; returns the manifests dir."""
    cfg = json.load(open(routes_file))
    manifests = os.path.join(workdir, "manifests")
    os.makedirs(manifests, exist_ok=True)

    docs = [
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
         "metadata": {"name": "portier",
                      "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
         "spec": {"controller": "portier.dev/ingress-controller"}},
        # The peers keep client and upstream connections open indefinitely; so does portier here.
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "portier", "namespace": "bench"},
         "data": {"keep-alive": "300", "keep-alive-requests": "100000000",
                  "upstream-keepalive-timeout": "300"}},
    ]
    by_host: dict[str, list[dict]] = {}
    for r in cfg["routes"]:
        by_host.setdefault(r["host"], []).append(r)
    tls = len(by_host) == 1  # the route-scale scenario is plain HTTP only
    if tls:
        docs.append({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                     "metadata": {"name": "bench-tls", "namespace": "bench"},
                     "stringData": {"tls.crt": open(cfg["tls"]["cert"]).read(),
                                    "tls.key": open(cfg["tls"]["key"]).read()}})
    # JSON is YAML: one document per line keeps the generator trivial and the files fast to read.
    # The per-host documents are written from templates: the harness counts this script's time
    # in portier's start-up, and json.dumps of 30,000 objects took 0.4 s of it.
    q = json.encoder.encode_basestring_ascii  # a JSON string literal, quotes included
    out = ["---\n" + json.dumps(d) + "\n" for d in docs]
    services = set()
    for i, (host, rs) in enumerate(sorted(by_host.items())):
        paths = []
        for r in rs:
            svc = f"{r['upstream']}-{i}"
            if svc not in services:
                services.add(svc)
                addrs = cfg["upstreams"][r["upstream"]]
                port = int(addrs[0].rsplit(":", 1)[1])
                endpoints = ", ".join('{"addresses": [%s]}' % q(a.rsplit(":", 1)[0]) for a in addrs)
                out.append(
                    '---\n{"apiVersion": "v1", "kind": "Service", '
                    f'"metadata": {{"name": {q(svc)}, "namespace": "bench"}}, '
                    f'"spec": {{"ports": [{{"name": "http", "port": 80, "targetPort": {port}}}]}}}}\n'
                    '---\n{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", '
                    f'"metadata": {{"name": {q(svc + "-1")}, "namespace": "bench", '
                    f'"labels": {{"kubernetes.io/service-name": {q(svc)}}}}}, '
                    f'"addressType": "IPv4", "ports": [{{"name": "http", "port": {port}}}], '
                    f'"endpoints": [{endpoints}]}}\n')
            paths.append(f'{{"path": {q(r["path_prefix"])}, "pathType": "Prefix", '
                         f'"backend": {{"service": {{"name": {q(svc)}, "port": {{"name": "http"}}}}}}}}')
        tls_spec = f', "tls": [{{"hosts": [{q(host)}], "secretName": "bench-tls"}}]' if tls else ""
        out.append(
            '---\n{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", '
            f'"metadata": {{"name": "route-{i}", "namespace": "bench", '
            # The harness sends plain HTTP to a TLS host too.
            '"annotations": {"nginx.ingress.kubernetes.io/ssl-redirect": "false"}}, '
            f'"spec": {{"rules": [{{"host": {q(host)}, "http": {{"paths": [{", ".join(paths)}]}}}}]{tls_spec}}}}}\n')
    with open(os.path.join(manifests, "bench.yaml"), "w") as f:
        f.write("".join(out))

    return manifests


def main() -> None:
    routes_file, workdir = sys.argv[1], sys.argv[2]
    listen = json.load(open(routes_file))["listen"]
    http, https = listen["http"], listen["https"]
    manifests = write_manifests(routes_file, workdir)
    binary = os.environ.get("PORTIER_BIN", os.path.join(HERE, "..", "target", "release", "portier"))
    os.execv(binary, [binary, "serve", "--config", manifests,
                      "--http-listen", http, "--https-listen", https,
                      "--admin-listen", "127.0.0.1:0", "--access-log", "off",
                      "--configmap", "bench/portier", "--worker-threads", "1",
                      "--state-dir", os.path.join(workdir, "state")])


if __name__ == "__main__":
    main()
