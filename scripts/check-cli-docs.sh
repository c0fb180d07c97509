#!/usr/bin/env bash
# The completions and man pages the binaries generate are valid: bash parses the bash
# completions, zsh and fish ones are non-empty and name their command, man renders both
# pages without a warning.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bins
B=${CARGO_TARGET_DIR:-target}/debug
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for tool in disklessset bootset; do
  if [ "$tool" = disklessset ]; then
    c() { "$B/disklessset" completions "$1"; }; "$B/disklessset" man > "$tmp/$tool.1"
  else
    c() { "$B/bootset" --completions "$1"; }; "$B/bootset" --man > "$tmp/$tool.1"
  fi
  c bash > "$tmp/$tool.bash"; bash -n "$tmp/$tool.bash"
  grep -q "complete .*$tool" "$tmp/$tool.bash"
  c zsh > "$tmp/$tool.zsh"; grep -q "#compdef $tool" "$tmp/$tool.zsh"
  c fish > "$tmp/$tool.fish"; grep -q "complete -c $tool" "$tmp/$tool.fish"
  MANWIDTH=80 man -l "$tmp/$tool.1" > "$tmp/$tool.txt" 2>"$tmp/err"
  if [ -s "$tmp/err" ]; then echo "man -l $tool.1 warns:"; cat "$tmp/err"; exit 1; fi
  grep -q "$tool" "$tmp/$tool.txt"
done
echo "completions (bash, zsh, fish) and man pages of disklessset and bootset: ok"
