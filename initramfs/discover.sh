# disklessset discovery mode (dl.mode=discover), sourced by /init after the network is
# up: collects this machine's facts, POSTs them as JSON to dl.report=URL (the boot
# server's /discover/report), prints the server's answer, then powers off
# (dl.after=poweroff, the default) or waits (dl.after=wait). No root image is fetched.

# A JSON string value: quotes, backslashes and control characters dropped.
json_str() {
    printf '%s' "$1" | tr -d '"\\' | tr -d '\000-\037' | sed 's/[[:space:]]*$//'
}

read_file() {
    [ -r "$1" ] && json_str "$(cat "$1" 2>/dev/null)"
}

discover_facts() {
    _boot=
    [ -n "$BOOTIF" ] && _boot=$(echo "${BOOTIF#01-}" | tr 'A-F-' 'a-f:')
    _macs=
    [ -n "$_boot" ] && _macs="\"$_boot\""
    for _i in $(list_ifaces); do
        _m=$(cat "/sys/class/net/$_i/address" 2>/dev/null)
        case "$_m" in ''|00:00:00:00:00:00) continue ;; esac
        [ "$_m" = "$_boot" ] && continue
        _macs="${_macs:+$_macs,}\"$_m\""
    done
    _cpus=$(grep -c '^processor' /proc/cpuinfo)
    _model=$(grep -m 1 -E '^(model name|Model|cpu model)' /proc/cpuinfo | sed 's/^[^:]*:[[:space:]]*//')
    _mem=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 }' /proc/meminfo)
    _disks=
    for _d in /sys/block/*; do
        _n=${_d##*/}
        case "$_n" in loop*|ram*|zram*|sr*|fd*|dm-*|md*|nbd*) continue ;; esac
        [ -r "$_d/size" ] || continue
        _sectors=$(cat "$_d/size")
        _model_d=$(read_file "$_d/device/model")
        _disks="${_disks:+$_disks,}{\"name\":\"$(json_str "$_n")\",\"size_bytes\":$((_sectors * 512)),\"model\":\"$_model_d\"}"
    done
    printf '{"macs":[%s],"arch":"%s","cpu_model":"%s","cpus":%s,"memory_mib":%s,"disks":[%s],"vendor":"%s","product":"%s","serial":"%s","uuid":"%s"}\n' \
        "$_macs" "$(json_str "$(uname -m)")" "$(json_str "$_model")" "${_cpus:-0}" "${_mem:-0}" "$_disks" \
        "$(read_file /sys/class/dmi/id/sys_vendor)" "$(read_file /sys/class/dmi/id/product_name)" \
        "$(read_file /sys/class/dmi/id/product_serial)" "$(read_file /sys/class/dmi/id/product_uuid)"
}

discover() {
    D=disklessset
    [ -n "$DL_REPORT" ] || die "dl.mode=discover needs dl.report=URL (the boot server's /discover/report)"
    net_up
    discover_facts > /tmp/facts.json
    echo "$D: discovery: facts: $(cat /tmp/facts.json)"
    _n=1 _wait=2 _ok=
    while [ "$_n" -le "$DL_RETRIES" ]; do
        # (busybox 1.35 wget crashes with -T and a POST: bounded by timeout instead)
        if timeout 30 wget -q -O /tmp/answer --header 'Content-Type: application/json' \
            --post-file /tmp/facts.json "$DL_REPORT" 2>/tmp/wget.err; then
            _ok=1
            break
        fi
        msg "discovery report attempt $_n/$DL_RETRIES to $DL_REPORT failed: $(grep -v '^$' /tmp/wget.err | tail -n 1)"
        sleep "$_wait"
        _n=$((_n + 1)) _wait=$((_wait * 2))
    done
    _answer=$(head -n 1 /tmp/answer 2>/dev/null)
    if [ -z "$_ok" ]; then
        echo "$D: discovery: report to $DL_REPORT FAILED: $(grep -v '^$' /tmp/wget.err | tail -n 1)"
    else
        case "$_answer" in
            pending*) echo "$D: discovery: reported, $_answer" ;;
            *) echo "$D: discovery: reported as $_answer" ;;
        esac
    fi
    case "$DL_AFTER" in
        wait)
            echo "$D: discovery: waiting (dl.after=wait): power the machine off or reboot it"
            while :; do sleep 3600; done
            ;;
        *)
            echo "$D: discovery: powering off"
            sync
            poweroff -f
            while :; do sleep 3600; done
            ;;
    esac
}
