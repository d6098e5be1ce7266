#!/bin/busybox sh
# PID 1 of the test VM (tests/vm.rs): mounts, loads the virtio modules, brings up the
# network and the ext4 disk, starts the agent as a distribution would (-d, pidfile, log),
# then becomes the guest-side monitor. Lines starting "vm-init:" go to the serial console.
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755 tmpfs /run
ln -s /run /var/run
: > /run/utmp
say() { echo "vm-init: [$(cut -d' ' -f1 /proc/uptime)] $*" > /dev/console; }
say "mounted"

for m in $(cat /etc/vm/modules); do
    insmod "/lib/modules/$m.ko" || say "insmod $m failed"
done
say "modules loaded: $(cat /etc/vm/modules | tr '\n' ' ')"

hostname -F /etc/hostname
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
mount -t ext4 /dev/vda /mnt/data || say "mount /dev/vda failed"

# No udev: the ports appear in sysfs (devtmpfs makes /dev/vportNpM) once the host side's
# control messages are processed, a little after virtio_console loads.
n=0
while [ "$(cat /sys/class/virtio-ports/*/name 2>/dev/null | wc -l)" -lt 2 ] && [ $n -lt 100 ]; do
    sleep 0.1
    n=$((n + 1))
done
say "ports: $(cd /sys/class/virtio-ports && for p in *; do printf '%s=%s ' "$p" "$(cat $p/name)"; done)"

# shellcheck disable=SC2046
/usr/sbin/qemu-ga -d -f /run/qga.pid -t /run -l /run/qga.log $(cat /etc/vm/agent-args)
say "agent started, pid $(cat /run/qga.pid 2>/dev/null)"
exec /bin/vm-monitor
