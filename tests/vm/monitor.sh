#!/bin/sh
# Guest-side monitor of the test VM: a shell on the virtio-serial port
# org.qga-bc.monitor.0. The host sends "SEQ COMMAND" lines; each COMMAND runs in a
# subshell and its output is followed by "\n@@vm-monitor SEQ RC". The host keeps this
# port attached for the whole run, so read() blocks instead of returning EOF.

# Context switches (voluntary + nonvoluntary) of every thread of process $1.
ctxt() {
    cat /proc/"$1"/task/*/status 2>/dev/null |
        awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}

# The agent's wake-ups over $1 seconds: "ctxt BEFORE AFTER SECONDS".
idle() {
    pid=$(cat /run/qga.pid)
    a=$(ctxt "$pid")
    t0=$(cut -d' ' -f1 /proc/uptime)
    sleep "$1"
    b=$(ctxt "$pid")
    t1=$(cut -d' ' -f1 /proc/uptime)
    echo "ctxt $a $b $(awk "BEGIN { print $t1 - $t0 }")"
}

port=
for d in /sys/class/virtio-ports/*; do
    [ "$(cat "$d/name")" = org.qga-bc.monitor.0 ] && port=/dev/${d##*/}
done
[ -n "$port" ] || { echo "vm-monitor: no port org.qga-bc.monitor.0" > /dev/console; exec sleep 100000; }
echo "vm-monitor: on $port" > /dev/console
while true; do
    exec 3<>"$port"
    while IFS= read -r line <&3; do
        seq=${line%% *}
        cmd=${line#* }
        (eval "$cmd") >&3 2>&1 </dev/null
        printf '\n@@vm-monitor %s %s\n' "$seq" "$?" >&3
    done
    exec 3>&-
    # EOF: no host attached to the monitor port; do not spin.
    sleep 0.5
done
