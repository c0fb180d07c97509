#!/usr/bin/env bash
# Installs disklessset on this machine: the binaries, the data files (module manifests,
# the own initramfs, share/), shell completions (bash, zsh, fish) and man pages, all
# generated from the clap definitions by the binaries themselves. Run as root.
# PREFIX (default /usr/local); BIN_DIR of already built binaries (default: build now).
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
if [ -z "${BIN_DIR:-}" ]; then
  cargo build --release --quiet
  BIN_DIR=$PWD/target/release
fi
install -d "$PREFIX/bin" "$PREFIX/share/disklessset" "$PREFIX/share/man/man1" \
  "$PREFIX/share/bash-completion/completions" "$PREFIX/share/zsh/site-functions" \
  "$PREFIX/share/fish/vendor_completions.d"
install -m 755 "$BIN_DIR/disklessset" "$BIN_DIR/bootset" "$PREFIX/bin/"
cp -r modules initramfs share "$PREFIX/share/disklessset/"
for tool in disklessset bootset; do
  if [ "$tool" = disklessset ]; then comp() { "$BIN_DIR/disklessset" completions "$1"; }; man() { "$BIN_DIR/disklessset" man; }
  else comp() { "$BIN_DIR/bootset" --completions "$1"; }; man() { "$BIN_DIR/bootset" --man; }; fi
  comp bash > "$PREFIX/share/bash-completion/completions/$tool"
  comp zsh > "$PREFIX/share/zsh/site-functions/_$tool"
  comp fish > "$PREFIX/share/fish/vendor_completions.d/$tool.fish"
  man > "$PREFIX/share/man/man1/$tool.1"
done
echo "installed disklessset and bootset in $PREFIX/bin (data, completions, man pages under $PREFIX/share)"
