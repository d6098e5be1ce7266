#!/bin/sh
# shutdown(8) shim for the busybox test VM (busybox has no shutdown): the agent runs
# `shutdown -P|-H|-r +0 MESSAGE`; there is no init to ask, so power off or reboot at once.
mode=-P
for a in "$@"; do
    case $a in -P | -H | -h | -r) mode=$a ;; esac
done
echo "shutdown shim: $*" > /dev/console
sync
case $mode in
    -r) reboot -f ;;
    *) poweroff -f ;;
esac
