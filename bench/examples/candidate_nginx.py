#!/usr/bin/env python3
"""Example candidate: turns the harness's routes.json into an nginx config and execs nginx.

It exists to smoke-test the --candidate path, to show what a candidate must do, and
for an A/A noise check (bench/README.md).  Usage, from the repository root:

    bench/peers.sh --candidate-name nginx-as-candidate \
        --candidate 'python3 bench/examples/candidate_nginx.py {routes} {workdir}'

It must end up as the process the harness started (hence exec), stay in the
foreground, and exit on SIGTERM.
"""
import json
import os
import sys


def main() -> None:
    routes_file, workdir = sys.argv[1], sys.argv[2]
    cfg = json.load(open(routes_file))
    http, https = cfg["listen"]["http"], cfg["listen"]["https"]
    ups = "\n".join(
        f"  upstream {name} {{\n"
        + "".join(f"    server {addr};\n" for addr in addrs)
        + "    keepalive 1024;\n    keepalive_requests 100000000;\n    keepalive_timeout 300s;\n  }"
        for name, addrs in cfg["upstreams"].items())
    by_host: dict[str, list[dict]] = {}
    for r in cfg["routes"]:
        by_host.setdefault(r["host"], []).append(r)
    tls = len(by_host) == 1  # the route-scale scenario is plain HTTP only
    servers = []
    for host, rs in by_host.items():
        locs = " ".join(f"location {r['path_prefix']} {{ proxy_pass http://{r['upstream']}; }}"
                        for r in rs)
        listen = f"listen {http}; " + (f"listen {https} ssl http2; " if tls else "")
        servers.append(f"  server {{ {listen}server_name {host}; {locs} }}")
    temp = "\n".join(f"  {k}_temp_path {workdir}/tmp-{k};"
                     for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = f"""worker_processes 1;
daemon off;
pid {workdir}/cand.pid;
error_log {workdir}/cand-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server_names_hash_max_size 65536;
  server_names_hash_bucket_size 128;
{temp}
  ssl_certificate {cfg['tls']['cert']};
  ssl_certificate_key {cfg['tls']['key']};
  ssl_protocols TLSv1.2 TLSv1.3;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $host;
  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
  proxy_set_header X-Forwarded-Proto $scheme;
{ups}
  server {{ listen {http} default_server; listen {https} ssl http2 default_server; return 404; }}
{chr(10).join(servers)}
}}
"""
    path = os.path.join(workdir, "candidate-nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    os.execvp("nginx", ["nginx", "-p", workdir, "-c", path])


if __name__ == "__main__":
    main()
