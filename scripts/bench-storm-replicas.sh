#!/usr/bin/env bash
# Storm over replicas (issue 17): the store's boot tree pushed by `disklessset replicate`
# to two replicas (local rsync targets), each served by its own nginx; C keep-alive
# clients (wrk) split over the two download the image at once. Printed beside the same
# C clients on one `disklessset serve` of the store: requests, errors, throughput.
# Usage: scripts/bench-storm-replicas.sh [C] [SECONDS] [SIZE_MIB]  (as root; wrk, nginx,
# rsync from scripts/install-deps.sh; DISKLESSSET=binary, default target/release|debug)
set -euo pipefail
C=${1:-2000}; DUR=${2:-15}; SIZE=${3:-64}
BIN=${DISKLESSSET:-}
if [ -z "$BIN" ]; then
  for b in "${CARGO_TARGET_DIR:-target}/release/disklessset" "${CARGO_TARGET_DIR:-target}/debug/disklessset"; do
    [ -x "$b" ] && BIN=$b && break
  done
fi
[ -x "$BIN" ] || { echo "no disklessset binary: cargo build --release, or set DISKLESSSET" >&2; exit 1; }
for t in wrk nginx rsync; do command -v $t >/dev/null || { echo "$t needed: scripts/install-deps.sh" >&2; exit 1; }; done
ulimit -n "$(ulimit -Hn)"
W=$(mktemp -d /var/tmp/bench-replicas.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
chmod 755 "$W"
mkdir -p "$W/store/www/diskless/images/bench"
head -c "$((SIZE * 1024 * 1024))" /dev/urandom > "$W/store/www/diskless/images/bench/squashfs.img"
cat > "$W/config.yaml" <<CFG
replicas:
  - {name: ra, url: "http://127.0.0.1:18482", target: $W/ra}
  - {name: rb, url: "http://127.0.0.1:18483", target: $W/rb}
CFG
T0=$(date +%s.%N)
"$BIN" --root "$W/store" --config "$W/config.yaml" replicate
T1=$(date +%s.%N)
"$BIN" --root "$W/store" --config "$W/config.yaml" replicate --json > "$W/second.json"
T2=$(date +%s.%N)
chmod -R a+rX "$W/ra" "$W/rb"
for r in a:18482 b:18483; do
  n=${r%%:*}; port=${r##*:}
  cat > "$W/nginx-$n.conf" <<NGX
worker_processes auto;
worker_rlimit_nofile 65536;
pid $W/nginx-$n.pid;
error_log $W/nginx-$n-error.log;
events { worker_connections 16384; }
http {
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  client_body_temp_path $W/ngx-$n-body; proxy_temp_path $W/ngx-$n-proxy;
  fastcgi_temp_path $W/ngx-$n-fcgi; uwsgi_temp_path $W/ngx-$n-uwsgi; scgi_temp_path $W/ngx-$n-scgi;
  server { listen 127.0.0.1:$port; root $W/r$n/current; }
}
NGX
  nginx -c "$W/nginx-$n.conf" -g 'daemon off;' &
  PIDS+=("$!")
done
"$BIN" --root "$W/store" serve --listen 127.0.0.1:18484 > "$W/serve.out" 2>&1 &
PIDS+=("$!")
sleep 1
URLPATH=/diskless/images/bench/squashfs.img
for p in 18482 18483 18484; do curl -fsS -o /dev/null "http://127.0.0.1:$p$URLPATH"; done
THREADS=$(nproc)
wrkrun() { # name conns url
  wrk -t "$THREADS" -c "$2" -d "${DUR}s" --timeout 30s "$3" > "$W/wrk-$1.txt" 2>&1 || true
}
parse() { # file -> "requests errors bytes_per_sec"
  local out; out=$(cat "$1")
  local req err bps
  req=$(awk '/requests in/ {print $1}' <<<"$out")
  err=$(awk '/Socket errors/ {gsub(",",""); s=$4+$6+$8+$10} /Non-2xx/ {n=$NF} END {print s+n+0}' <<<"$out")
  bps=$(awk '/Transfer\/sec/ {v=$2; u=substr(v,length(v)-1); x=v+0;
        if (u=="GB") x*=1024^3; else if (u=="MB") x*=1024^2; else if (u=="KB") x*=1024; print int(x)}' <<<"$out")
  echo "${req:-0} ${err:-0} ${bps:-0}"
}
wrkrun ra $((C / 2)) "http://127.0.0.1:18482$URLPATH" &
wa=$!
wrkrun rb $((C - C / 2)) "http://127.0.0.1:18483$URLPATH" &
wb=$!
wait $wa $wb
wrkrun serve "$C" "http://127.0.0.1:18484$URLPATH"
read -r AREQ AERR ABPS < <(parse "$W/wrk-ra.txt")
read -r BREQ BERR BBPS < <(parse "$W/wrk-rb.txt")
read -r SREQ SERR SBPS < <(parse "$W/wrk-serve.txt")
mib() { awk -v x="$1" 'BEGIN { printf "%.0f MiB/s", x / 1048576 }'; }
printf 'first push %.1f s; second push (unchanged) %.2f s, %s bytes transferred\n' \
  "$(echo "$T1 - $T0" | bc)" "$(echo "$T2 - $T1" | bc)" \
  "$(python3 -c 'import json,sys; print(sum(r["bytes_transferred"] for r in json.load(open(sys.argv[1]))))' "$W/second.json")"
printf '%-28s %10s %8s %14s\n' "storm (C=$C, ${DUR}s)" requests errors throughput
printf '%-28s %10s %8s %14s\n' "replica ra (nginx, C/2)" "$AREQ" "$AERR" "$(mib "$ABPS")"
printf '%-28s %10s %8s %14s\n' "replica rb (nginx, C/2)" "$BREQ" "$BERR" "$(mib "$BBPS")"
printf '%-28s %10s %8s %14s\n' "both replicas" "$((AREQ + BREQ))" "$((AERR + BERR))" "$(mib "$((ABPS + BBPS))")"
printf '%-28s %10s %8s %14s\n' "one disklessset serve (C)" "$SREQ" "$SERR" "$(mib "$SBPS")"
echo "(on one machine the replicas share its cores and memory bandwidth: the figures show that"
echo " replication serves a storm without errors, not the scale-out a second machine gives)"
