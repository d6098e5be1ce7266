#!/bin/bash
# `make pkgtest` (part of `make test` as root): the packages of `make rpm deb`, read and
# installed as a user would, never on this machine itself.
#   deb  members and compression, files and modes, conffiles, control fields; then for real
#        in a throwaway Debian 12 root (debootstrap minbase with Debian's qemu-guest-agent,
#        cached in target/pkgtest/bookworm) in a private mount namespace: install over
#        Debian's package, the SysV script's LSB exit codes against the installed agent on a
#        unix socket, upgrade (the agent is restarted), remove, purge, Debian's package back.
#   rpm  file list and modes, scripts, provides/obsoletes/conflicts/requires; the SysV
#        script run against the agent with a stand-in for /etc/rc.d/init.d/functions.
#   units  systemd-analyze verify; the upstart job's stanzas and shell parts.
# Prints one "ok"/"FAIL" line per check; exits 1 if any failed.
set -u
SELF=$(readlink -f "$0")
cd "$(dirname "$SELF")/.."
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
DEB=target/deb/qga-bc_${VERSION}_amd64.deb
RPM=target/rpmbuild/RPMS/x86_64/qga-bc-${VERSION}-1.x86_64.rpm
WORK=target/pkgtest
MIRROR=$(sed -n 's/^URIs: *//p; s/^deb \(\[[^]]*\] \)\?\(http[^ ]*\) .*/\2/p' \
    /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | grep -v security | head -n 1)
fails=0
if [ "$(id -u)" != 0 ]; then
    echo "tests/packages.sh: needs root (chroot, rpm --root, a private mount namespace)" >&2
    exit 1
fi

ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
# check NAME COMMAND...: ok when the command succeeds.
check() { local name=$1; shift; if "$@"; then ok "$name"; else fail "$name"; fi; }
# expect_rc NAME WANT COMMAND...: ok when the command exits WANT.
expect_rc() {
    local name=$1 want=$2; shift 2
    "$@" >"$WORK/out" 2>&1
    local rc=$?
    if [ "$rc" = "$want" ]; then ok "$name (exit $rc)"; else fail "$name: exit $rc, want $want: $(head -c 400 "$WORK/out")"; fi
}
same() { # same NAME WANT_FILE GOT_FILE
    if diff -u "$2" "$3" >"$WORK/diff"; then ok "$1"; else fail "$1:"; cat "$WORK/diff"; fi
}
mkdir -p "$WORK"
if [ "${1:-}" != --deb-root ]; then exec > >(tee "$WORK/pkgtest.log") 2>&1; fi

# The deb installed in the root $1, as root in a private mount namespace (see below).
deb_root() {
    R=$1
    mount -t proc proc "$R/proc" || { fail "mount /proc in the test root"; return; }
    inroot() { chroot "$R" "$@"; }
    init() { inroot /etc/init.d/qemu-guest-agent "$@"; }
    pid() { cat "$R/run/qemu-ga.pid" 2>/dev/null; }
    alive() { [ -n "$1" ] && [ -d "/proc/$1" ]; }
    mode() { stat -c %a "$R$1"; }
    links_ok() { # every rc link of the script exists and resolves
        local n=0 l
        for l in "$R"/etc/rc[0-6S].d/[SK][0-9][0-9]qemu-guest-agent; do
            [ -L "$l" ] || return 1
            [ -e "$R/etc/init.d/$(basename "$(readlink "$l")")" ] || return 1
            n=$((n + 1))
        done
        [ $n -ge 5 ]
    }
    no_links() { ! ls "$R"/etc/rc[0-6S].d/ 2>/dev/null | grep -q qemu-guest-agent; }

    check "Debian's qemu-guest-agent is installed in the root, its links too" links_ok
    expect_rc "dpkg -i over Debian's qemu-guest-agent, no init running, no port" 0 inroot dpkg -i /tmp/new.deb
    check "init script mode 755 after Debian's postrm ran chmod -x" test "$(mode /etc/init.d/qemu-guest-agent)" = 755
    check "rc links present and resolving" links_ok
    check "Debian's package is removed, its conffiles left" \
        sh -c "chroot '$R' dpkg -s qemu-guest-agent | grep -qx 'Status: .* config-files'"
    check "the postinst was refused the start (chroot: no init, no policy-rc.d)" \
        grep -q "Defaulting to block" "$WORK/out"
    check "the installed agent is ours (-V)" sh -c "chroot '$R' /usr/sbin/qemu-ga -V | grep -q qga-bc"
    check "-D names the shipped config file" \
        sh -c "chroot '$R' /usr/sbin/qemu-ga -D | head -n 1 | grep -qxF \"# config file '/etc/qemu/qemu-ga.conf'\""
    check "no agent started without a port" test -z "$(pid)"
    expect_rc "status without a port: not running" 3 init status

    # From here on the root behaves as a booted sysvinit machine: policy-rc.d allows the
    # maintainer scripts' invoke-rc.d, and the agent gets a channel (a unix socket).
    printf '#!/bin/sh\nexit 0\n' >"$R/usr/sbin/policy-rc.d" && chmod 755 "$R/usr/sbin/policy-rc.d"
    echo 'TRANSPORT=unix-listen:/run/qga-test.sock' >>"$R/etc/default/qemu-guest-agent"
    expect_rc "start (unix socket)" 0 init start
    local first; first=$(pid)
    check "agent running after start" alive "$first"
    check "start printed what it did" grep -q "Starting QEMU guest agent" "$WORK/out"
    expect_rc "start when running" 0 init start
    check "still the same agent" test "$(pid)" = "$first"
    expect_rc "status when running" 0 init status
    check "the agent answers on the socket" \
        sh -c "chroot '$R' qemu-ga-client --socket /run/qga-test.sock guest-ping | grep -qx '{}'"
    check "the agent logs to /var/log/qemu-ga.log" test -e "$R/var/log/qemu-ga.log"

    expect_rc "dpkg -i of a newer version (upgrade)" 0 inroot dpkg -i --force-confold /tmp/newer.deb
    local second; second=$(pid)
    check "upgrade restarted the agent (new pid)" sh -c "[ -n '$second' ] && [ '$second' != '$first' ] && [ -d /proc/$second ]"
    check "the old agent is gone" sh -c "! [ -d /proc/$first ]"
    check "the running agent is the new binary, not (deleted)" \
        sh -c "! readlink /proc/$second/exe | grep -q deleted"
    check "init script still mode 755 after the upgrade" test "$(mode /etc/init.d/qemu-guest-agent)" = 755

    expect_rc "reload: not supported (LSB 3)" 3 init reload
    expect_rc "stop" 0 init stop
    check "agent stopped" sh -c "! [ -d /proc/$second ]"
    expect_rc "stop when stopped" 0 init stop
    expect_rc "status when stopped" 3 init status
    expect_rc "try-restart when stopped starts nothing" 0 init try-restart
    check "try-restart left it stopped" test -z "$(pid)"
    # A pidfile naming no qemu-ga process (pid 1 is this namespace's init or shell).
    echo 1 >"$R/run/qemu-ga.pid"
    expect_rc "status with a stale pidfile (LSB 1)" 1 init status
    rm -f "$R/run/qemu-ga.pid"
    expect_rc "restart when stopped" 0 init restart
    local third; third=$(pid)
    check "restart started it" alive "$third"

    # The fsfreeze hook runs each executable of fsfreeze-hook.d; one failing fails it.
    printf '#!/bin/sh\necho "flushed for $1"\n' >"$R/etc/qemu/fsfreeze-hook.d/10-db"
    chmod 755 "$R/etc/qemu/fsfreeze-hook.d/10-db"
    printf '#!/bin/sh\nexit 9\n' >"$R/etc/qemu/fsfreeze-hook.d/20-bad.dpkg-old"
    chmod 755 "$R/etc/qemu/fsfreeze-hook.d/20-bad.dpkg-old"
    expect_rc "fsfreeze hook freeze (a .dpkg-old file is skipped)" 0 inroot /etc/qemu/fsfreeze-hook freeze
    check "the hook's script ran and logged" grep -q "flushed for freeze" "$R/var/log/qga-fsfreeze-hook.log"
    mv "$R/etc/qemu/fsfreeze-hook.d/20-bad.dpkg-old" "$R/etc/qemu/fsfreeze-hook.d/20-bad"
    expect_rc "fsfreeze hook thaw with a failing script" 1 inroot /etc/qemu/fsfreeze-hook thaw
    rm -f "$R"/etc/qemu/fsfreeze-hook.d/*
    check "man qemu-ga finds ours" sh -c "zcat '$R/usr/share/man/man8/qemu-ga.8.gz' | grep -q qga-bc"

    # Ubuntu 12.04/14.04: with upstart running, the script hands over to the job. A
    # stand-in initctl that says it is upstart and records its calls.
    init stop >/dev/null 2>&1
    printf '#!/bin/sh\necho "$*" >>/initctl.log\n[ "$1" = version ] && echo "init (upstart 1.12.1)"\n[ "$1" = status ] && echo "qemu-guest-agent start/running, process 42"\nexit 0\n' \
        >"$R/sbin/initctl" && chmod 755 "$R/sbin/initctl"
    expect_rc "under upstart: start hands over to the job" 0 init start
    expect_rc "under upstart: status from the job" 0 init status
    check "under upstart: initctl start qemu-guest-agent, no agent of the script's own" \
        sh -c "grep -qx 'start qemu-guest-agent' '$R/initctl.log' && [ -z \"\$(cat '$R/run/qemu-ga.pid' 2>/dev/null)\" ]"
    rm -f "$R/sbin/initctl" "$R/initctl.log"
    init start >/dev/null 2>&1
    third=$(pid)

    expect_rc "dpkg -r qga-bc" 0 inroot dpkg -r qga-bc
    check "remove stopped the agent" sh -c "! [ -d /proc/$third ]"
    check "remove keeps the init script (conffile), mode 755" test "$(mode /etc/init.d/qemu-guest-agent)" = 755
    check "remove keeps resolving rc links" links_ok
    check "the binary is gone" test ! -e "$R/usr/sbin/qemu-ga"
    expect_rc "init script without the binary: start does nothing" 0 init start
    expect_rc "dpkg --purge qga-bc" 0 inroot dpkg --purge qga-bc
    check "purge deletes the init script" test ! -e "$R/etc/init.d/qemu-guest-agent"
    check "purge deletes the rc links" no_links

    expect_rc "Debian's qemu-guest-agent installs again" 0 inroot dpkg -i /tmp/debian.deb
    check "Debian's init script and links are back" sh -c "[ \"\$(stat -c %a '$R/etc/init.d/qemu-guest-agent')\" = 755 ]"
    check "Debian's rc links" links_ok
    expect_rc "ours over Debian's again" 0 inroot dpkg -i /tmp/new.deb
    expect_rc "ours removed (conffiles left)" 0 inroot dpkg -r qga-bc
    expect_rc "Debian's back (over our left-over conffiles)" 0 inroot dpkg -i --force-confnew /tmp/debian.deb
    dpkg-deb --fsys-tarfile "$R/tmp/debian.deb" | tar -xO ./etc/init.d/qemu-guest-agent >"$WORK/debian.init"
    check "the init script is Debian's" cmp -s "$R/etc/init.d/qemu-guest-agent" "$WORK/debian.init"
    expect_rc "purge of our left-over conffiles" 0 inroot dpkg --purge qga-bc
    check "purging ours leaves Debian's init script" test -x "$R/etc/init.d/qemu-guest-agent"
    check "purging ours leaves Debian's rc links" links_ok

    # A systemd machine as the maintainer scripts see it: /run/systemd/system, the port's
    # device, and stand-ins for systemctl and udevadm that record their calls.
    mkdir -p "$R/run/systemd/system" "$R/dev/virtio-ports"
    : >"$R/dev/virtio-ports/org.qemu.guest_agent.0"
    for tool in systemctl udevadm; do
        printf '#!/bin/sh\necho "%s $*" >>/systemd.log\n' "$tool" >"$R/usr/local/bin/$tool"
        chmod 755 "$R/usr/local/bin/$tool"
    done
    expect_rc "systemd: dpkg -i over Debian's" 0 inroot dpkg -i /tmp/new.deb
    check "systemd: the postinst reloads, triggers the port and starts the unit" \
        sh -c "grep -qx 'systemctl daemon-reload' '$R/systemd.log' &&
               grep -qx 'udevadm trigger --subsystem-match=virtio-ports --action=add' '$R/systemd.log' &&
               grep -qx 'systemctl start qemu-guest-agent.service' '$R/systemd.log'"
    : >"$R/systemd.log"
    expect_rc "systemd: upgrade" 0 inroot dpkg -i --force-confold /tmp/newer.deb
    check "systemd: the upgrade restarts the unit" grep -qx 'systemctl restart qemu-guest-agent.service' "$R/systemd.log"
    : >"$R/systemd.log"
    expect_rc "systemd: dpkg -r" 0 inroot dpkg -r qga-bc
    check "systemd: remove stops the unit" grep -qx 'systemctl stop qemu-guest-agent.service' "$R/systemd.log"
    check "systemd: the SysV script was never run" test -z "$(pid)"
    umount "$R/proc"
}

# A stand-in for CentOS 6's /etc/rc.d/init.d/functions (initscripts 9.03): only what
# the script uses, with the same exit codes. The real file is not in this repository.
write_functions() {
    cat >"$1" <<'FUNCS'
checkpid() { [ -n "$1" ] && [ -d "/proc/$1" ]; }
pidfileof() { sed -n 1p "$1" 2>/dev/null; }
status() {
    local pidfile=; [ "$1" = -p ] && { pidfile=$2; shift 2; }
    local pid; pid=$(pidfileof "$pidfile")
    if checkpid "$pid"; then echo "$1 (pid $pid) is running..."; return 0; fi
    if [ -f "$pidfile" ]; then echo "$1 dead but pid file exists"; return 1; fi
    if [ -f "/var/lock/subsys/$1" ]; then echo "$1 dead but subsys locked"; return 2; fi
    echo "$1 is stopped"; return 3
}
daemon() {
    local pidfile=; case "$1" in --pidfile=*) pidfile=${1#--pidfile=}; shift ;; esac
    checkpid "$(pidfileof "$pidfile")" && return 0
    "$@"; local rc=$?
    [ $rc = 0 ] && echo "[  OK  ]" || echo "[FAILED]"; return $rc
}
killproc() {
    local pidfile=; [ "$1" = -p ] && { pidfile=$2; shift 2; }
    local pid; pid=$(pidfileof "$pidfile")
    checkpid "$pid" || { echo "[FAILED]"; return 7; }
    kill -TERM "$pid"
    local n=0; while checkpid "$pid" && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
    checkpid "$pid" && kill -KILL "$pid"
    rm -f "$pidfile"; echo "[  OK  ]"; return 0
}
FUNCS
}

# The rpm installed with `rpm --root $1` into a busybox root (scriptlets run there with
# busybox sh), with a stand-in chkconfig that records its calls and a service that runs
# the init script, as CentOS 6's does. As root in a private mount namespace.
rpm_root() {
    RR=$1
    mount -t proc proc "$RR/proc" || { fail "mount /proc in the rpm root"; return; }
    rpmr() { rpm --root "$(readlink -f "$RR")" --nodeps "$@"; }
    pid() { cat "$RR/var/run/qemu-ga.pid" 2>/dev/null; }
    alive() { [ -n "$1" ] && [ -d "/proc/$1" ]; }
    init() { chroot "$RR" /bin/sh /etc/rc.d/init.d/qemu-ga "$@"; }

    expect_rc "rpm -i of a stand-in for the distro's qemu-guest-agent (CentOS 6's scriptlets)" 0 rpmr -i "$RR/tmp-rpms/fake-qga.rpm"
    expect_rc "rpm -U qga-bc over it (Obsoletes), no port" 0 rpmr -U "$RR/tmp-rpms/new.rpm"
    check "the distro's package is gone" sh -c "! rpm --root '$(readlink -f "$RR")' -q qemu-guest-agent >/dev/null"
    check "the init script is ours" grep -q qga-bc "$RR/etc/rc.d/init.d/qemu-ga"
    check "chkconfig: the old %preun's --del is followed by our %posttrans --add" \
        sh -c "tail -n 1 '$RR/chkconfig.log' | grep -qx -- '--add qemu-ga'"
    check "no agent without a port" test -z "$(pid)"
    check "the installed agent is ours (-V)" sh -c "chroot '$RR' /usr/bin/qemu-ga -V | grep -q qga-bc"
    check "-D reads /etc/qemu-ga/qemu-ga.conf (RHEL's path)" \
        sh -c "chroot '$RR' /usr/bin/qemu-ga -D | head -n 1 | grep -qxF \"# config file '/etc/qemu-ga/qemu-ga.conf'\""

    printf 'TRANSPORT_METHOD=unix-listen\nDEVPATH=/var/run/qga-test.sock\n' >>"$RR/etc/sysconfig/qemu-ga"
    expect_rc "SysV start (unix socket)" 0 init start
    local first; first=$(pid)
    check "agent running" alive "$first"
    expect_rc "SysV start when running" 0 init start
    expect_rc "SysV status when running" 0 init status
    check "the agent answers" sh -c "chroot '$RR' /usr/bin/qemu-ga-client --socket /var/run/qga-test.sock guest-ping | grep -qx '{}'"
    check "the agent logs to /var/log/qemu-ga/qemu-ga.log" test -e "$RR/var/log/qemu-ga/qemu-ga.log"
    expect_rc "SysV reload (LSB 3)" 3 init reload
    expect_rc "SysV condrestart when running" 0 init condrestart
    local second; second=$(pid)
    check "condrestart restarted it" sh -c "[ -n '$second' ] && [ '$second' != '$first' ] && [ -d /proc/$second ]"

    expect_rc "rpm -U to release 2 (upgrade)" 0 rpmr -U "$RR/tmp-rpms/newer.rpm"
    local third; third=$(pid)
    check "upgrade restarted the agent (new pid)" sh -c "[ -n '$third' ] && [ '$third' != '$second' ] && [ -d /proc/$third ]"
    check "the agent runs the new binary, not (deleted)" sh -c "! readlink /proc/$third/exe | grep -q deleted"
    check "sysconfig kept (noreplace)" grep -q qga-test.sock "$RR/etc/sysconfig/qemu-ga"

    expect_rc "SysV stop" 0 init stop
    expect_rc "SysV stop when stopped" 0 init stop
    expect_rc "SysV status when stopped (LSB 3)" 3 init status
    expect_rc "SysV condrestart when stopped" 0 init condrestart
    check "condrestart left it stopped" test -z "$(pid)"
    echo 999999 >"$RR/var/run/qemu-ga.pid"
    expect_rc "SysV status with a stale pidfile (LSB 1)" 1 init status
    rm -f "$RR/var/run/qemu-ga.pid"
    expect_rc "SysV restart when stopped" 0 init restart
    local fourth; fourth=$(pid)
    check "restart started it" alive "$fourth"

    expect_rc "rpm -e" 0 rpmr -e qga-bc
    check "erase stopped the agent" sh -c "! [ -d /proc/$fourth ]"
    check "erase ran chkconfig --del" sh -c "tail -n 1 '$RR/chkconfig.log' | grep -qx -- '--del qemu-ga'"
    check "erase removed the files" test ! -e "$RR/usr/bin/qemu-ga"

    # CentOS 7+ as the scriptlets see it: /run/systemd/system, the port, stand-ins for
    # systemctl and udevadm that record their calls.
    mkdir -p "$RR/run/systemd/system" "$RR/dev/virtio-ports" "$RR/usr/bin"
    : >"$RR/dev/virtio-ports/org.qemu.guest_agent.0"
    for tool in systemctl udevadm; do
        printf '#!/bin/sh\necho "%s $*" >>/systemd.log\n' "$tool" >"$RR/usr/bin/$tool"
        chmod 755 "$RR/usr/bin/$tool"
    done
    : >"$RR/chkconfig.log"
    expect_rc "systemd: rpm -i" 0 rpmr -i "$RR/tmp-rpms/new.rpm"
    check "systemd: %post/%posttrans reload, trigger the port, start the unit" \
        sh -c "grep -qx 'systemctl daemon-reload' '$RR/systemd.log' &&
               grep -qx 'udevadm trigger --subsystem-match=virtio-ports --action=add' '$RR/systemd.log' &&
               grep -qx 'systemctl start qemu-guest-agent.service' '$RR/systemd.log'"
    : >"$RR/systemd.log"
    expect_rc "systemd: rpm -U (upgrade)" 0 rpmr -U "$RR/tmp-rpms/newer.rpm"
    check "systemd: the upgrade restarts a running unit" grep -qx 'systemctl try-restart qemu-guest-agent.service' "$RR/systemd.log"
    : >"$RR/systemd.log"
    expect_rc "systemd: rpm -e" 0 rpmr -e qga-bc
    check "systemd: erase stops the unit" grep -qx 'systemctl stop qemu-guest-agent.service' "$RR/systemd.log"
    check "systemd: chkconfig never ran (no SysV service next to the unit)" test ! -s "$RR/chkconfig.log"
    check "systemd: the SysV script never started an agent" test -z "$(pid)"
    umount "$RR/proc"
}

if [ "${1:-}" = --rpm-root ]; then
    WORK=$3
    rpm_root "$2"
    ok "rpm root: ran to the end"
    exit 0
fi

if [ "${1:-}" = --deb-root ]; then
    WORK=$3
    deb_root "$2"
    ok "deb root: ran to the end"
    exit 0
fi

# ---------------------------------------------------------------------------- deb, read
# ---------------------------------------------------------------------------- rpm, read
echo "== rpm: $RPM ($(stat -c %s "$RPM") bytes)"
rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}/%{FILEGROUPNAME} %{FILEFLAGS:fflags}: %{FILENAMES}\n]' "$RPM" \
    | sort -k4 >"$WORK/rpm.files"
cat >"$WORK/rpm.want" <<'WANT'
drwxr-xr-x root/root : /etc/qemu-ga
-rwxr-xr-x root/root cn: /etc/qemu-ga/fsfreeze-hook
drwxr-xr-x root/root : /etc/qemu-ga/fsfreeze-hook.d
-rw-r--r-- root/root cn: /etc/qemu-ga/qemu-ga.conf
-rwxr-xr-x root/root : /etc/rc.d/init.d/qemu-ga
-rw-r--r-- root/root cn: /etc/sysconfig/qemu-ga
-rwxr-xr-x root/root : /usr/bin/qemu-ga
-rwxr-xr-x root/root : /usr/bin/qemu-ga-client
lrwxrwxrwx root/root : /usr/lib/systemd/system/qemu-ga.service
-rw-r--r-- root/root : /usr/lib/systemd/system/qemu-guest-agent.service
-rw-r--r-- root/root : /usr/lib/udev/rules.d/99-qemu-guest-agent.rules
-rw-r--r-- root/root d: /usr/share/doc/qga-bc/copyright
-rw-r--r-- root/root d: /usr/share/man/man1/qemu-ga-client.1.gz
-rw-r--r-- root/root d: /usr/share/man/man8/qemu-ga.8.gz
drwxr-xr-x root/root : /var/log/qemu-ga
WANT
sort -k4 "$WORK/rpm.want" -o "$WORK/rpm.want"
same "rpm files, modes, owners, %config(noreplace)" "$WORK/rpm.want" "$WORK/rpm.files"
check "rpm alias qemu-ga.service -> qemu-guest-agent.service (no SysV twin under systemd)" \
    test "$(rpm -qp --qf '[%{FILENAMES} %{FILELINKTOS}\n]' "$RPM" | grep 'qemu-ga.service ')" \
    = "/usr/lib/systemd/system/qemu-ga.service qemu-guest-agent.service"
check "rpm provides a versioned qemu-guest-agent" sh -c "rpm -qp --provides '$RPM' | grep -qx 'qemu-guest-agent = 99:7.2.0'"
check "rpm obsoletes the distro's qemu-guest-agent" sh -c "rpm -qp --obsoletes '$RPM' | grep -qx 'qemu-guest-agent < 99:7.2.0'"
check "rpm has no Conflicts (Obsoletes swaps in one step)" test -z "$(rpm -qp --conflicts "$RPM")"
check "rpm requires chkconfig for its scriptlets" sh -c "rpm -qp --requires '$RPM' | grep -qx chkconfig"
check "rpm requires nothing else but /bin/sh and rpmlib" \
    test -z "$(rpm -qp --requires "$RPM" | grep -vxE 'chkconfig|/bin/sh|rpmlib\(.*')"
check "rpm payload gzip, md5 digests (CentOS 6's rpm 4.8)" \
    test "$(rpm -qp --qf '%{PAYLOADCOMPRESSOR} %{FILEDIGESTALGO}' "$RPM")" = "gzip (none)"
rpm -qp --scripts "$RPM" >"$WORK/rpm.scripts"
for s in postinstall preuninstall posttrans; do
    check "rpm has a %$s scriptlet" grep -q "^$s scriptlet" "$WORK/rpm.scripts"
done
check "SELinux: %post restores qemu-ga's own label, never sets another" \
    sh -c "grep -q 'restorecon /usr/bin/qemu-ga' '$WORK/rpm.scripts' && ! grep -qE 'chcon|semanage' '$WORK/rpm.scripts'"
check "rpm has a %changelog" sh -c "rpm -qp --changelog '$RPM' | grep -q '^\* '"

# ----------------------------------------------------------------------- rpm, installed
if command -v busybox >/dev/null; then
    RR=$WORK/rpmroot
    rm -rf "$RR" && mkdir -p "$RR"/{bin,sbin,dev,proc,tmp,tmp-rpms,etc/rc.d/init.d,var/run,var/lock/subsys,run}
    cp "$(command -v busybox)" "$RR/bin/busybox"
    for t in $("$RR/bin/busybox" --list); do [ -e "$RR/bin/$t" ] || ln -s busybox "$RR/bin/$t"; done
    mknod -m 666 "$RR/dev/null" c 1 3
    write_functions "$RR/etc/rc.d/init.d/functions"
    printf '#!/bin/sh\necho "$*" >>/chkconfig.log\n' >"$RR/sbin/chkconfig"
    printf '#!/bin/sh\ns=$1; shift; exec /bin/sh /etc/rc.d/init.d/$s "$@"\n' >"$RR/sbin/service"
    chmod 755 "$RR/sbin/chkconfig" "$RR/sbin/service"
    cp "$RPM" "$RR/tmp-rpms/new.rpm"
    top=$PWD/$WORK/rpmbuild
    rm -rf "$top"
    if rpmbuild -bb --quiet --target x86_64 --define "_topdir $top" --define "_qga_version $VERSION" \
        --define "_qga_release 2" --define "_qga_srcdir $PWD" \
        --define "_qga_bindir $PWD/target/x86_64-unknown-linux-musl/release" rpm/qga-bc.spec >"$WORK/out" 2>&1; then
        cp "$top/RPMS/x86_64/qga-bc-$VERSION-2.x86_64.rpm" "$RR/tmp-rpms/newer.rpm"
    else
        fail "rpmbuild of release 2: $(tail -n 5 "$WORK/out")"
    fi
    # The distro's package as far as a swap sees it: CentOS 6's scriptlets (stop and
    # chkconfig --del on erase), its init script's path, epoch 2.
    mkdir -p "$top/fake"
    cat >"$top/fake/fake.spec" <<'SPEC'
Name: qemu-guest-agent
Epoch: 2
Version: 0.12.1.2
Release: 2.el6
Summary: stand-in for CentOS 6's qemu-guest-agent
License: GPL-2.0-or-later
BuildArch: noarch
AutoReqProv: no
%description
stand-in
%install
mkdir -p %{buildroot}/etc/rc.d/init.d
printf '#!/bin/sh\nexit 0\n' > %{buildroot}/etc/rc.d/init.d/qemu-ga
%post
/sbin/chkconfig --add qemu-ga
%preun
if [ $1 = 0 ]; then /sbin/service qemu-ga stop >/dev/null 2>&1; /sbin/chkconfig --del qemu-ga; fi
%files
%attr(0755,root,root) /etc/rc.d/init.d/qemu-ga
SPEC
    if rpmbuild -bb --quiet --define "_topdir $top" "$top/fake/fake.spec" >"$WORK/out" 2>&1; then
        cp "$top"/RPMS/noarch/qemu-guest-agent-*.rpm "$RR/tmp-rpms/fake-qga.rpm"
    else
        fail "rpmbuild of the stand-in qemu-guest-agent: $(tail -n 5 "$WORK/out")"
    fi
    unshare --mount --fork -- bash "$SELF" --rpm-root "$RR" "$WORK" >"$WORK/rpm-root.log" 2>&1
    cat "$WORK/rpm-root.log"
    fails=$((fails + $(grep -c '^FAIL' "$WORK/rpm-root.log")))
    grep -q '^ok   rpm root: ran to the end' "$WORK/rpm-root.log" ||
        fail "the rpm root test did not run to its end (a private mount namespace needs CAP_SYS_ADMIN)"
else
    fail "busybox missing: the rpm install test needs busybox-static (make deps)"
fi

echo "== deb: $DEB ($(stat -c %s "$DEB") bytes)"
check "deb members are gzip (dpkg < 1.17.6 reads no xz control member)" \
    test "$(ar t "$DEB" | tr '\n' ' ')" = "debian-binary control.tar.gz data.tar.gz "
dpkg-deb -c "$DEB" | awk '{print $1, $2, $6}' | sed 's|^\([^ ]*\) \([^ ]*\) \./|\1 \2 /|' | sort -k3 >"$WORK/deb.files"
cat >"$WORK/deb.want" <<'EOF'
drwxr-xr-x root/root /
drwxr-xr-x root/root /etc/
drwxr-xr-x root/root /etc/default/
-rw-r--r-- root/root /etc/default/qemu-guest-agent
drwxr-xr-x root/root /etc/init.d/
-rwxr-xr-x root/root /etc/init.d/qemu-guest-agent
drwxr-xr-x root/root /etc/init/
-rw-r--r-- root/root /etc/init/qemu-guest-agent.conf
drwxr-xr-x root/root /etc/qemu/
-rwxr-xr-x root/root /etc/qemu/fsfreeze-hook
drwxr-xr-x root/root /etc/qemu/fsfreeze-hook.d/
-rw-r--r-- root/root /etc/qemu/qemu-ga.conf
drwxr-xr-x root/root /lib/
drwxr-xr-x root/root /lib/systemd/
drwxr-xr-x root/root /lib/systemd/system/
-rw-r--r-- root/root /lib/systemd/system/qemu-guest-agent.service
drwxr-xr-x root/root /lib/udev/
drwxr-xr-x root/root /lib/udev/rules.d/
-rw-r--r-- root/root /lib/udev/rules.d/60-qemu-guest-agent.rules
drwxr-xr-x root/root /usr/
drwxr-xr-x root/root /usr/bin/
-rwxr-xr-x root/root /usr/bin/qemu-ga-client
drwxr-xr-x root/root /usr/sbin/
-rwxr-xr-x root/root /usr/sbin/qemu-ga
drwxr-xr-x root/root /usr/share/
drwxr-xr-x root/root /usr/share/doc/
drwxr-xr-x root/root /usr/share/doc/qga-bc/
-rw-r--r-- root/root /usr/share/doc/qga-bc/copyright
drwxr-xr-x root/root /usr/share/man/
drwxr-xr-x root/root /usr/share/man/man1/
-rw-r--r-- root/root /usr/share/man/man1/qemu-ga-client.1.gz
drwxr-xr-x root/root /usr/share/man/man8/
-rw-r--r-- root/root /usr/share/man/man8/qemu-ga.8.gz
EOF
sort -k3 "$WORK/deb.want" -o "$WORK/deb.want"
same "deb files, modes and owners" "$WORK/deb.want" "$WORK/deb.files"
rm -rf "$WORK/debctl" && mkdir -p "$WORK/debctl" && dpkg-deb -e "$DEB" "$WORK/debctl"
printf '%s\n' /etc/default/qemu-guest-agent /etc/init.d/qemu-guest-agent \
    /etc/init/qemu-guest-agent.conf /etc/qemu/qemu-ga.conf /etc/qemu/fsfreeze-hook >"$WORK/conffiles.want"
same "deb conffiles (the init script is one)" "$WORK/conffiles.want" "$WORK/debctl/conffiles"
for field in "Provides: qemu-guest-agent" "Conflicts: qemu-guest-agent" "Replaces: qemu-guest-agent"; do
    check "deb control has '$field'" grep -qx "$field" "$WORK/debctl/control"
done
check "deb control has Installed-Size" grep -qE '^Installed-Size: [0-9]+$' "$WORK/debctl/control"
check "deb md5sums cover every non-conffile" test "$(wc -l <"$WORK/debctl/md5sums")" = 7
for s in postinst prerm postrm; do check "deb $s parses" sh -n "$WORK/debctl/$s"; done
I386=target/deb/qga-bc_${VERSION}_i386.deb
check "i386 deb: the same files" \
    test "$(dpkg-deb -c "$I386" | awk '{print $1, $6}' | sort | md5sum)" = "$(dpkg-deb -c "$DEB" | awk '{print $1, $6}' | sort | md5sum)"
check "i386 deb: a 32-bit static agent" \
    sh -c "dpkg-deb --fsys-tarfile '$I386' | tar -xO ./usr/sbin/qemu-ga | file - | grep -q 'ELF 32-bit.*statically linked'"
I686=target/rpmbuild/RPMS/i686/qga-bc-${VERSION}-1.i686.rpm
check "i686 rpm: the same files" test "$(rpm -qlp "$I686" | md5sum)" = "$(rpm -qlp "$RPM" | md5sum)"
if command -v man >/dev/null; then
    for page in rpm/qemu-ga.8 rpm/qemu-ga-client.1; do
        check "$page renders without groff warnings" \
            sh -c "MANWIDTH=80 man --warnings -l '$page' 2>&1 >/dev/null | { ! grep .; }"
    done
fi

# ------------------------------------------------------------------------ service files
echo "== service files"
U=$WORK/units
rm -rf "$U" && mkdir -p "$U/deb" "$U/rpm"
cp deb/qemu-guest-agent.service "$U/deb/"
cp rpm/qemu-guest-agent.service "$U/rpm/" && ln -s qemu-guest-agent.service "$U/rpm/qemu-ga.service"
if command -v systemd-analyze >/dev/null; then
    expect_rc "systemd-analyze verify (deb unit)" 0 systemd-analyze verify "$U/deb/qemu-guest-agent.service"
    expect_rc "systemd-analyze verify (rpm unit and its alias)" 0 \
        systemd-analyze verify "$U/rpm/qemu-guest-agent.service" "$U/rpm/qemu-ga.service"
else
    fail "systemd-analyze missing (make deps installs systemd)"
fi
check "both units read the settings file the package installs" \
    sh -c "grep -qx 'EnvironmentFile=-/etc/default/qemu-guest-agent' deb/qemu-guest-agent.service &&
           grep -qx 'EnvironmentFile=-/etc/sysconfig/qemu-ga' rpm/qemu-guest-agent.service"
# The rpm unit's command line as systemd hands it to sh ($$ -> $), with echo for the agent:
# a missing sysconfig gives no empty -b; RHEL's variables each become their option.
cmdline() {
    local line; line=$(sed -n "s/^ExecStart=\/bin\/sh -c '\(.*\)'$/\1/p" rpm/qemu-guest-agent.service)
    env -i "$@" sh -c "$(printf '%s' "$line" | sed 's/\$\$/$/g; s|exec /usr/bin/qemu-ga|echo|')"
}
check "rpm unit without sysconfig: no empty options" \
    test "$(cmdline)" = "--method=virtio-serial --path=/dev/virtio-ports/org.qemu.guest_agent.0"
check "rpm unit with RHEL 7's BLACKLIST_RPC and the hook" \
    test "$(cmdline BLACKLIST_RPC=guest-exec,guest-file-open FSFREEZE_HOOK_PATHNAME=/etc/qemu-ga/fsfreeze-hook)" \
    = "--method=virtio-serial --path=/dev/virtio-ports/org.qemu.guest_agent.0 --block-rpcs=guest-exec,guest-file-open -F/etc/qemu-ga/fsfreeze-hook"
check "rpm unit with RHEL 9's FILTER_RPC_ARGS and QEMU_GA_ARGS" \
    test "$(cmdline FILTER_RPC_ARGS=--allow-rpcs=guest-ping QEMU_GA_ARGS=-v)" \
    = "--method=virtio-serial --path=/dev/virtio-ports/org.qemu.guest_agent.0 --allow-rpcs=guest-ping -v"
check "the agent accepts the rpm unit's options" \
    sh -c "target/x86_64-unknown-linux-musl/release/qemu-ga $(cmdline BLACKLIST_RPC=guest-exec QEMU_GA_ARGS=-v) -D >/dev/null"
# upstart is not on this machine (init-checkconf needs a running upstart): the job is read
# here, each line a known stanza or inside a script block, each block valid sh.
J=deb/qemu-guest-agent.upstart
check "upstart job: only known stanzas" test -z "$(awk '
    /^[ \t]*(#|$)/ { next }
    /^(pre-start|post-start|pre-stop|post-stop)? ?script$/ { inside = 1; next }
    /^end script$/ { inside = 0; next }
    inside { next }
    $1 !~ /^(description|start|stop|respawn|expect|exec|env|console|author|umask|nice|kill|normal|instance|task|limit|oom|chdir|chroot|setuid|setgid|emits|manual)$/ { print }
' "$J")"
check "upstart job: starts on the runlevel and on the port's device, respawns" \
    sh -c "grep -qx 'start on runlevel \[2345\] or virtio-ports-device-added' '$J' &&
           grep -qx 'stop on runlevel \[016\]' '$J' && grep -qx respawn '$J'"
awk '/^pre-start script$/ { on = 1; next } /^end script$/ { on = 0 } on' "$J" >"$U/pre-start.sh"
awk '/^script$/ { on = 1; next } /^end script$/ { on = 0 } on' "$J" >"$U/script.sh"
check "upstart job: script blocks are valid sh" sh -c "sh -n '$U/pre-start.sh' && sh -n '$U/script.sh'"
check "upstart job: the agent runs in the foreground (no -d: upstart tracks the pid)" \
    sh -c "grep -q 'exec /usr/sbin/qemu-ga ' '$U/script.sh' && ! grep -q -- ' -d' '$U/script.sh'"

# ------------------------------------------------------------------------- deb, installed
# A throwaway Debian 12 root; dpkg runs inside it (chroot) in a private mount namespace,
# so /proc there vanishes with the test and this machine's dpkg database is never touched.
BASE=$WORK/bookworm
if [ ! -x "$BASE/usr/sbin/qemu-ga" ]; then
    echo "== debootstrap bookworm minbase + qemu-guest-agent from $MIRROR into $BASE (cached)"
    rm -rf "$BASE.tmp"
    if debootstrap --variant=minbase --include=qemu-guest-agent bookworm "$BASE.tmp" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
        find "$BASE.tmp/var/cache/apt/archives" -name '*.deb' ! -name 'qemu-guest-agent_*' -delete
        mv "$BASE.tmp" "$BASE"
    else
        fail "debootstrap (see $WORK/debootstrap.log)"
    fi
fi
if [ -x "$BASE/usr/sbin/qemu-ga" ]; then
    R=$WORK/root
    rm -rf "$R" && cp -a "$BASE" "$R"
    cp "$DEB" "$R/tmp/new.deb"
    # The upgrade: the same package, one version up.
    rm -rf "$WORK/up" && dpkg-deb -R "$DEB" "$WORK/up"
    sed -i "s/^Version: .*/Version: ${VERSION}+1/" "$WORK/up/DEBIAN/control"
    dpkg-deb -Zgzip --root-owner-group -b "$WORK/up" "$R/tmp/newer.deb" >/dev/null
    cp "$R"/var/cache/apt/archives/qemu-guest-agent_*.deb "$R/tmp/debian.deb"
    unshare --mount --fork -- bash "$SELF" --deb-root "$R" "$WORK" >"$WORK/deb-root.log" 2>&1
    cat "$WORK/deb-root.log"
    fails=$((fails + $(grep -c '^FAIL' "$WORK/deb-root.log")))
    grep -q '^ok   deb root: ran to the end' "$WORK/deb-root.log" ||
        fail "the deb root test did not run to its end (a private mount namespace needs CAP_SYS_ADMIN)"
    rm -rf "$R"
fi

passed=$(grep -c '^ok' "$WORK/pkgtest.log" 2>/dev/null || echo 0)
# The line `make test` adds up.
if [ "$fails" = 0 ]; then r=ok; else r=FAILED; fi
echo "test result: $r. $passed passed; $fails failed; 0 ignored; 0 measured; 0 filtered out"
[ "$fails" = 0 ]
