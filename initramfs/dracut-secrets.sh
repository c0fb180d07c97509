#!/bin/sh
# disklessset: the per-node secrets of the dracut flavour (issue 12).
#
# A dracut pre-pivot hook (kernel::dracut puts it at
# /lib/dracut/hooks/pre-pivot/90-disklessset-secrets.sh with --include; dracut
# sources it once the new root is mounted at $NEWROOT, the network still up).
# The same protocol as the own init's fetch_secrets (initramfs/init): GET
# /secrets/bundle of the first boot server (dl.bases=, else dl.base=) from a
# privileged source port, here curl's --local-port 1015-1023 (curl takes the next
# free port of the range itself). The server checks the port, the node's address
# and that this node fetched its boot script moments ago (one delivery per fetch).
# The answer is base64 text of a tar: meta/node, meta/root.hash, files.tar (over /).
# Without a bundle the node boots with host keys it makes itself (the image's
# disklessset-ssh-keygen.service) and root stays locked; every outcome is one
# line on the console (stderr of dracut-pre-pivot.service goes there).

type getarg >/dev/null 2>&1 || . /lib/dracut-lib.sh

dls_say() { echo "disklessset: secrets: $*" >&2; }
dls_no_bundle() { dls_say "no bundle ($1): booting with node-generated host keys"; }

dls_fetch_secrets() {
    local base hp d code why node hash n err root
    root=${NEWROOT:-/sysroot}
    base=$(getarg dl.bases=)
    base=${base%%,*}
    [ -n "$base" ] || base=$(getarg dl.base=)
    [ -n "$base" ] || { dls_no_bundle "no dl.base= on the kernel command line"; return 0; }
    case "$base" in
        http://*) ;;
        *) dls_no_bundle "boot server $base is not http://"; return 0 ;;
    esac
    hp=${base#http://}
    hp=${hp%%/*}
    case "$hp" in
        ''|*[!0-9A-Za-z.:-]*) dls_no_bundle "boot server $base: want http://ADDRESS[:PORT]"; return 0 ;;
    esac
    for t in curl base64 tar; do
        command -v "$t" >/dev/null 2>&1 || { dls_no_bundle "this initramfs has no $t: rebuild it with disklessset initramfs IMAGE --flavour dracut"; return 0; }
    done
    [ -d "$root/etc" ] || { dls_no_bundle "no new root at $root"; return 0; }
    d=/run/initramfs/disklessset-secrets
    rm -rf "$d"
    mkdir -m 700 "$d" || { dls_no_bundle "cannot create $d"; return 0; }
    code=$(curl -sS --local-port 1015-1023 --connect-timeout 30 -m 90 \
        -A disklessset-dracut -o "$d/resp" -w '%{http_code}' \
        "http://$hp/secrets/bundle" 2> "$d/err")
    if [ "$code" != 200 ]; then
        why=
        [ -s "$d/resp" ] && why=$(head -n 1 "$d/resp" | tr -d '\r')
        [ -n "$why" ] || why=$(tail -n 1 "$d/err")
        rm -rf "$d"
        why=${why#403 Forbidden: }
        dls_no_bundle "$hp: ${why:-HTTP $code}"
        return 0
    fi
    if ! base64 -d < "$d/resp" > "$d/bundle.tar" 2>/dev/null; then
        rm -rf "$d"
        dls_no_bundle "the answer of $base is not a base64 bundle"
        return 0
    fi
    rm -f "$d/resp"
    node=$(tar -x -O -f "$d/bundle.tar" meta/node 2>/dev/null)
    hash=$(tar -x -O -f "$d/bundle.tar" meta/root.hash 2>/dev/null | tr -d '\n')
    if ! tar -x -O -f "$d/bundle.tar" files.tar > "$d/files.tar" 2>/dev/null; then
        rm -rf "$d"
        dls_no_bundle "the bundle of $base holds no files.tar"
        return 0
    fi
    n=$(tar -t -f "$d/files.tar" | grep -c -v '/$')
    if ! tar -x -m --numeric-owner -f "$d/files.tar" -C "$root" 2> "$d/err"; then
        err=$(tail -n 1 "$d/err")
        rm -rf "$d"
        dls_no_bundle "cannot install it in the new root: $err"
        return 0
    fi
    if [ -n "$hash" ]; then
        case "$hash" in
            \$*) case "$hash" in *[!A-Za-z0-9./\$=,-]*) hash= ;; esac ;;
            *) hash= ;;
        esac
        if [ -z "$hash" ]; then
            dls_say "the root hash in the bundle is not a crypt hash: root stays locked"
        elif sed -i "s|^root:[^:]*:|root:$hash:|" "$root/etc/shadow"; then
            n=$((n + 1))
        else
            dls_say "cannot set root's password hash in /etc/shadow: root stays locked"
        fi
    fi
    rm -rf "$d"
    dls_say "bundle for ${node:-?}: $n files"
}

dls_fetch_secrets
