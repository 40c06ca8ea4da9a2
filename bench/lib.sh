# Set-up shared by bench/proxy-icount.sh, syscalls.sh, memory.sh, hosts-cost.sh and
# symbol-order.sh; source it
# with D (a work directory) and HERE (bench/) set.
#
# One route, bench.example.test/api/ on 127.0.0.1:18180 (HTTPS 18543), to an nginx upstream on
# 127.0.0.1:18101 that answers 256 bytes (255 and a newline): the peer harness's body. The size
# matters to HTTP/2: h2 writes a DATA frame of 256 bytes or more on its own when the I/O writes
# vectors (bench/README.md, "HTTP/2 writes"), and a 255-byte body once hid that.

# nginx's temporary directories inside $D, so that it needs no write access elsewhere.
nginx_temp_paths() {
    for k in client_body proxy fastcgi uwsgi scgi; do echo "  ${k}_temp_path $D/tmp-$k;"; done
}

# Starts the upstream; sets UP to its pid (the caller kills it).
start_upstream() {
    local body
    body=$(python3 -c 'print("x"*255)')
    cat > "$D/up.conf" <<C
worker_processes 1; daemon off; pid $D/up.pid; error_log $D/up.err warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
$(nginx_temp_paths)
 server { listen 127.0.0.1:18101; location / { default_type text/plain; return 200 "$body\\n"; } } }
C
    nginx -c "$D/up.conf" -p "$D" >/dev/null 2>&1 &
    UP=$!
}

# $D/c.pem and $D/k.pem for bench.example.test, then $D/routes.json (the harness's routes file)
# and portier's manifests for it in $D/manifests.
write_route() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$D/k.pem" -out "$D/c.pem" \
        -days 2 -subj /CN=bench.example.test -addext subjectAltName=DNS:bench.example.test 2>/dev/null
    cat > "$D/routes.json" <<C
{"listen": {"http": "127.0.0.1:18180", "https": "127.0.0.1:18543"}, "tls": {"cert": "$D/c.pem", "key": "$D/k.pem"},
 "upstreams": {"backend": ["127.0.0.1:18101"]}, "routes": [{"host": "bench.example.test", "path_prefix": "/api/", "upstream": "backend"}]}
C
    python3 - "$D" "$HERE" <<'P'
import sys
sys.path.insert(0, sys.argv[2])
import candidate
candidate.write_manifests(sys.argv[1] + "/routes.json", sys.argv[1])
P
}

# $D/px.conf: nginx as the proxy under comparison, one worker, with the route above over
# HTTP/1.1 (18180) and HTTP/2 over TLS 1.3 (18543), keep-alive to the upstream. Call after
# write_route (it names the certificate).
write_nginx_proxy() {
    cat > $D/px.conf <<C
master_process off; worker_processes 1; daemon off; pid $D/px.pid; error_log $D/px.err warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
$(nginx_temp_paths)
 proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host \$host;
 proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto \$scheme;
 upstream backend { server 127.0.0.1:18101; keepalive 1024; keepalive_requests 100000000; keepalive_timeout 300s; }
 server { listen 127.0.0.1:18180 default_server; server_name _; return 404; }
 server { listen 127.0.0.1:18180; server_name bench.example.test; location /api/ { proxy_pass http://backend; } location / { return 404; } }
 server { listen 127.0.0.1:18543 ssl http2; server_name bench.example.test; ssl_certificate $D/c.pem; ssl_certificate_key $D/k.pem;
  ssl_protocols TLSv1.3; location /api/ { proxy_pass http://backend; } location / { return 404; } } }
C
}

# Waits until the proxy on PORT (default 18180) answers for the route: at most TENTHS tenths of
# a second (default 200; a process under valgrind needs more).
wait_up() { # [TENTHS] [PORT]
    local port=${2:-18180}
    for _ in $(seq "${1:-200}"); do
        curl -s -o /dev/null -H 'host: bench.example.test' "http://127.0.0.1:$port/api/bench" && return
        sleep 0.1
    done
    echo "nothing answers on 127.0.0.1:$port; see the logs in $D" >&2
    exit 1
}

# `portier serve` on $D/manifests with the ports above, one worker, the admin listener on any
# free port, the access log as the argument says (default off): sets PORTIER_SERVE, for
# "$BIN" "${PORTIER_SERVE[@]}".
portier_serve_args() { # [off|PATH]
    PORTIER_SERVE=(serve --config "$D/manifests" --http-listen 127.0.0.1:18180
        --https-listen 127.0.0.1:18543 --admin-listen 127.0.0.1:0 --state-dir "$D/state"
        --configmap bench/portier --worker-threads 1 --access-log "${1:-off}")
}

# All of the above for a one-route comparison of nginx and portier; the upstream is killed on exit.
setup_comparison() {
    start_upstream
    trap 'kill $UP 2>/dev/null || true' EXIT
    write_route
    write_nginx_proxy
}
