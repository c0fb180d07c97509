#!/usr/bin/env bash
# Is the declared rust-version true? It must be at least every resolved dependency's own
# rust-version and at least what the code uses of std (File::lock: 1.89). When a
# toolchain of exactly that version is installed (`rustup toolchain list`), the crate is
# also checked with it; this machine has one toolchain only, so the comparison is what
# CI can prove.
set -euo pipefail
cd "$(dirname "$0")/.."
STD_NEEDS=1.89   # std::fs::File::lock / try_lock (stable in 1.89)
cargo metadata --format-version 1 --locked 2>/dev/null | python3 -c '
import json, sys
std_needs = tuple(int(x) for x in sys.argv[1].split("."))
m = json.load(sys.stdin)
ids = {n["id"] for n in m["resolve"]["nodes"]}
me = [p for p in m["packages"] if p["id"] == m["resolve"]["root"]][0]
declared = tuple(int(x) for x in (me.get("rust_version") or "0").split(".")[:2])
def v(s): return tuple(int(x) for x in s.split(".")[:2])
need = max([(v(p["rust_version"]), p["name"] + " " + p["version"]) for p in m["packages"]
            if p["id"] in ids and p.get("rust_version") and p["id"] != me["id"]]
           + [(std_needs, "std File::lock")])
if declared < need[0]:
    print(f"rust-version {declared} is false: {need[1]} needs {need[0]}")
    sys.exit(1)
print("rust-version %s.%s holds (the highest need: %s, %s.%s)" % (declared + (need[1],) + need[0]))
' "$STD_NEEDS"
declared=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
if rustup toolchain list 2>/dev/null | grep -q "^$declared"; then
  cargo "+$declared" check --all-targets --quiet
  echo "cargo +$declared check: ok"
fi
