#!/usr/bin/env bash
# Storm benchmark (issue 11): C simultaneous keep-alive clients (wrk) download the same
# image from `disklessset serve` and from nginx serving the same tree, one run each.
# Prints requests, errors, throughput, the ratio serve/nginx and the server's peak RSS.
# Usage: scripts/bench-storm.sh [C] [SECONDS] [SIZE_MIB]   (as root; wrk and nginx from
# scripts/install-deps.sh; DISKLESSSET=path/to/binary, default target/release then debug)
set -euo pipefail
C=${1:-2000}; DUR=${2:-15}; SIZE=${3:-64}
BIN=${DISKLESSSET:-}
if [ -z "$BIN" ]; then
  for b in "${CARGO_TARGET_DIR:-target}/release/disklessset" "${CARGO_TARGET_DIR:-target}/debug/disklessset"; do
    [ -x "$b" ] && BIN=$b && break
  done
fi
[ -x "$BIN" ] || { echo "no disklessset binary: cargo build --release, or set DISKLESSSET" >&2; exit 1; }
command -v wrk >/dev/null && command -v nginx >/dev/null || { echo "wrk and nginx needed: scripts/install-deps.sh" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
W=$(mktemp -d /var/tmp/bench-storm.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
chmod 755 "$W"   # nginx workers (www-data) read the tree
mkdir -p "$W/www/diskless/images/bench"
head -c "$((SIZE * 1024 * 1024))" /dev/urandom > "$W/www/diskless/images/bench/squashfs.img"
chmod -R a+rX "$W/www"
URLPATH=/diskless/images/bench/squashfs.img
THREADS=$(nproc)

"$BIN" --root "$W" serve --listen 127.0.0.1:18480 > "$W/serve.out" 2>&1 &
SPID=$!; PIDS+=("$SPID")
cat > "$W/nginx.conf" <<NGX
worker_processes auto;
worker_rlimit_nofile 65536;
pid $W/nginx.pid;
error_log $W/nginx-error.log;
events { worker_connections 16384; }
http {
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  client_body_temp_path $W/ngx-body; proxy_temp_path $W/ngx-proxy;
  fastcgi_temp_path $W/ngx-fcgi; uwsgi_temp_path $W/ngx-uwsgi; scgi_temp_path $W/ngx-scgi;
  server { listen 127.0.0.1:18481; root $W/www; }
}
NGX
nginx -c "$W/nginx.conf" -g 'daemon off;' &
PIDS+=("$!")
sleep 1
curl -fsS http://127.0.0.1:18480/health >/dev/null
curl -fsS -o /dev/null http://127.0.0.1:18481$URLPATH

run() { # name url -> "requests errors bytes_per_sec"
  local out
  out=$(wrk -t "$THREADS" -c "$C" -d "${DUR}s" --timeout 30s "$2" 2>&1) || true
  echo "$out" > "$W/wrk-$1.txt"
  local req err bps
  req=$(awk '/requests in/ {print $1}' <<<"$out")
  err=$(awk '/Socket errors/ {gsub(",",""); s=$4+$6+$8+$10} /Non-2xx/ {n=$NF} END {print s+n+0}' <<<"$out")
  bps=$(awk '/Transfer\/sec/ {v=$2; u=substr(v,length(v)-1); x=v+0;
        if (u=="GB") x*=1024^3; else if (u=="MB") x*=1024^2; else if (u=="KB") x*=1024; print int(x)}' <<<"$out")
  echo "${req:-0} ${err:-0} ${bps:-0}"
}
read -r SREQ SERR SBPS < <(run serve "http://127.0.0.1:18480$URLPATH")
ALIVE=yes; kill -0 "$SPID" 2>/dev/null || ALIVE=no
HWM=$(awk '/VmHWM/ {print $2, $3}' "/proc/$SPID/status" 2>/dev/null || echo "?")
read -r NREQ NERR NBPS < <(run nginx "http://127.0.0.1:18481$URLPATH")
RATIO=$(awk -v a="$SBPS" -v b="$NBPS" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
mib() { awk -v x="$1" 'BEGIN { printf "%.0f MiB/s", x / 1048576 }'; }
printf '%-20s %10s %8s %14s\n' "server (C=$C, ${DUR}s)" requests errors throughput
printf '%-20s %10s %8s %14s\n' "disklessset serve" "$SREQ" "$SERR" "$(mib "$SBPS")"
printf '%-20s %10s %8s %14s\n' "nginx" "$NREQ" "$NERR" "$(mib "$NBPS")"
echo "ratio serve/nginx: $RATIO; serve peak RSS (VmHWM): $HWM; serve alive after the storm: $ALIVE"
grep -h "Socket errors\|Non-2xx" "$W"/wrk-*.txt || true
