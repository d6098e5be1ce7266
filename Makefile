# qga-bc build, test and run targets. `make` builds the static musl agents.
TARGETS   := x86_64-unknown-linux-musl i686-unknown-linux-musl
# Plain static executables (not static-pie): every kernel back to 2.6.32 loads them.
STATIC_RUSTFLAGS := -C relocation-model=static -C target-feature=+crt-static -C symbol-mangling-version=v0
SOCK      := run/qga.sock
VERSION   := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
CARGO     ?= cargo
SHELL     := /bin/bash
# Packages are installed as root, through sudo for anyone else.
SUDO      := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: all build deps test run stop bench soak fuzz clean rpm deb pkgtest hot-code

all: build

build:
	@for t in $(TARGETS); do \
	  rustup target list --installed 2>/dev/null | grep -qx $$t || rustup target add $$t || exit 1; \
	  RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build --release --locked --target $$t || exit 1; \
	done
	@for t in $(TARGETS); do for b in qemu-ga qemu-ga-client; do \
	  f=target/$$t/release/$$b; printf '%-50s %8d bytes  ' $$f $$(stat -c %s $$f); file -b $$f | cut -d, -f1-2,4-5; \
	done; done

# What a fresh Debian/Ubuntu machine needs for `make test`: the musl targets, the
# reference agent (Debian's qemu-guest-agent) the wire tests compare against, and for the
# VM test (tests/vm.rs) qemu, busybox-static, e2fsprogs and Debian's cloud kernel, unpacked
# into target/vm/kernel rather than installed on the host.
deps:
	rustup target add $(TARGETS)
	$(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq qemu-guest-agent file && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    qemu-system-x86 busybox-static e2fsprogs rpm debootstrap systemd
	rm -rf target/vm/kernel target/vm/deb && mkdir -p target/vm/deb && \
	  pkg=$$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $$2; exit}') && \
	  (cd target/vm/deb && apt-get download -q=2 "$$pkg") && \
	  dpkg-deb -x target/vm/deb/$${pkg}_*.deb target/vm/kernel && ls target/vm/kernel/boot/vmlinuz-*

# The integration tests that run or read the binary: the files that start it through the
# harness (tests/common/mod.rs) or take its path from it (agent_bin: the benches, skipped
# here as in the host pass, and the code-layout check). The in-process tests of the library
# run in the host pass only; QGA_BIN and QGA_AS2632 change nothing for them.
BIN_TESTS  = $(sort $(basename $(notdir $(shell grep -lE 'Agent::|agent_command|client_command|as_tested|agent_bin\(\)' tests/*.rs))))

# Every test in five passes (as root each with the tests marked `needs root`), and as root
# a sixth, `packages` (make pkgtest: the rpm and deb read and installed, tests/packages.sh):
#   host       cargo test: unit, integration and doc tests of the host (glibc) build;
#   <target>   the integration tests against the static musl agent and client of `make build`;
#   <target>-as2632  the same under the Linux 2.6.32 seccomp filter (tests/common/as2632.rs),
#              which must give every test the same result as the pass without it.
# Logs in target/test-<pass>.log; one line per pass, and last the sum: "N passed, N failed".
# `build` comes first: the host pass, as root, has the VM test (tests/vm.rs) boot the
# static x86_64 agent.
test: build
	@mkdir -p target; rm -f target/test*.log target/test*.secs target/test*.diff; set -o pipefail; fail=0; passes=; \
	if [ "$$(id -u)" = 0 ]; then ign=--include-ignored; else ign=; fi; \
	pass() { name=$$1; shift; t0=$$(date +%s); \
	  case " $$passes " in *" $$name "*) ;; *) passes="$$passes $$name";; esac; \
	  echo "=== pass $$name: $$*"; "$$@" 2>&1 | tee -a target/test-$$name.log || fail=1; \
	  echo $$(( $$(date +%s) - t0 )) >> target/test-$$name.secs; }; \
	pass host $(CARGO) test --locked --no-fail-fast; \
	if [ -n "$$ign" ]; then pass host $(CARGO) test --locked --no-fail-fast -- --ignored --skip bench_ --skip soak_long --skip record_hot_code; \
	else echo "not root: tests marked 'needs root' skipped"; fi; \
	$(MAKE) --no-print-directory build || fail=1; \
	for f in 0 1; do for t in $(TARGETS); do name=$$t; [ $$f = 1 ] && name=$$t-as2632; \
	  pass $$name env QGA_BIN=$(CURDIR)/target/$$t/release/qemu-ga QGA_AS2632=$$f \
	    $(CARGO) test --locked --no-fail-fast $(addprefix --test ,$(BIN_TESTS)) -- $$ign --skip bench_ --skip soak_long --skip record_hot_code; \
	done; done; \
	if [ -n "$$ign" ]; then pass packages $(MAKE) --no-print-directory pkgtest; \
	else echo "not root: package tests (make pkgtest) skipped"; fi; \
	results() { sed -n 's/^test \(.*\) \.\.\. \(ok\|FAILED\|ignored\).*/\1 \2/p' target/test-$$1.log | sort; }; \
	for t in $(TARGETS); do \
	  if ! diff <(results $$t) <(results $$t-as2632) > target/test-$$t-as2632.diff; then fail=1; \
	    echo "$$t: results differ under the 2.6.32 filter (< without, > with):"; cat target/test-$$t-as2632.diff; fi; \
	done; \
	for name in $$passes; do cat target/test-$$name.log >> target/test.log; \
	  awk -v n=$$name '/^test result:/ {p += $$4; f += $$6} FNR == 1 && FILENAME ~ /secs$$/ {s = 0} \
	    FILENAME ~ /secs$$/ {s += $$1} END {printf "pass %-36s %4d passed, %d failed, %3d s\n", n, p, f, s}' \
	    target/test-$$name.log target/test-$$name.secs; \
	done; \
	awk '/^test result:/ {p += $$4; f += $$6} END {printf "%d passed, %d failed\n", p, f}' target/test.log; \
	exit $$fail

# Builds the agent, starts it on ./run/qga.sock and asks it something.
run: stop
	$(CARGO) build --release --locked
	mkdir -p run
	./target/release/qemu-ga -d -m unix-listen -p $(SOCK) -t $(CURDIR)/run \
	  -f $(CURDIR)/run/qga.pid -l $(CURDIR)/run/qga.log
	./target/release/qemu-ga-client --socket $(SOCK) guest-info
	@echo "agent running (pid $$(cat run/qga.pid)); try: ./target/release/qemu-ga-client --socket $(SOCK) guest-ping; stop it with: make stop"

stop:
	@if [ -f run/qga.pid ]; then kill $$(cat run/qga.pid) 2>/dev/null || true; sleep 0.3; fi

clean: stop
	$(CARGO) clean
	rm -rf run

# Records src/hot_code.txt, the functions src/build.rs links together in the musl build:
# an unstripped static agent runs under valgrind's callgrind through the requests hosts
# send (tests/hot_code.rs). Run it when the code has changed much; `make test` says when
# the list has gone stale.
hot-code:
	command -v valgrind >/dev/null || \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq valgrind
	CARGO_PROFILE_RELEASE_STRIP=false RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build --release --locked \
	  --target x86_64-unknown-linux-musl --target-dir target/hot-code --bin qemu-ga
	QGA_BIN=$(CURDIR)/target/hot-code/x86_64-unknown-linux-musl/release/qemu-ga \
	  $(CARGO) test --locked --test hot_code -- --ignored --exact record_hot_code --nocapture

# Side-by-side benchmark against Debian's qemu-ga (see `make deps`), printed as ratios.
bench: build
	QGA_BIN=$(CURDIR)/target/x86_64-unknown-linux-musl/release/qemu-ga \
	  $(CARGO) test --release --locked --test bench -- --ignored --nocapture --test-threads 1

# 1,000,000 mixed requests through the static x86_64 agent (QGA_SOAK_REQUESTS to change);
# prints fds and memory at start, half way and end. The suite runs 20,000 of them.
soak: build
	QGA_BIN=$(CURDIR)/target/x86_64-unknown-linux-musl/release/qemu-ga \
	  $(CARGO) test --release --locked --test soak -- --ignored --nocapture

# The fuzzer (issue #12): tests/fuzz, its own crate, feeds libFuzzer's inputs through the
# framer and the dispatcher with only read-only commands allowed, for FUZZ_SECONDS. It
# installs cargo-fuzz when missing (it needs a C++ compiler for libFuzzer) and uses the
# stable toolchain's sanitizer support through RUSTC_BOOTSTRAP=1. Built optimized with
# coverage and no sanitizer: FUZZ_SANITIZER=address runs ASan, about 4x slower, worth a
# run after changes to src/sys (the only unsafe code). Inputs stay under FUZZ_MAX_LEN
# bytes: the seeds' 60 KB made every exec slow, and the framer's limit paths are reached
# with the small limits an input's first byte can pick. Each sanitizer builds in its own
# target dir under tests/fuzz/target, so switching does not rebuild. New inputs collect
# in target/fuzz-corpus (the seeds, tests/fuzz/corpus/dispatch, stay as they are); a
# crash lands in tests/fuzz/artifacts/dispatch and fails the target. Not part of `make
# test`: CI feeds the seeds through the binary (tests/fuzz_corpus.rs) and runs the
# seeded stream tests of tests/garbage.rs.
FUZZ_SECONDS   ?= 600
FUZZ_SANITIZER ?= none
FUZZ_MAX_LEN   ?= 4096
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz
	mkdir -p target/fuzz-corpus
	RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --fuzz-dir tests/fuzz -s $(FUZZ_SANITIZER) \
	  --target-dir tests/fuzz/target/$(FUZZ_SANITIZER) dispatch \
	  target/fuzz-corpus tests/fuzz/corpus/dispatch -- \
	  -max_len=$(FUZZ_MAX_LEN) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1

# Packages from the static binaries: rpm (x86_64, i686; SysV on CentOS 6, systemd on 7+)
# and deb (amd64, i386). Need rpmbuild (Debian package `rpm`) and dpkg-deb.
rpm: build
	@for pair in x86_64:x86_64-unknown-linux-musl i686:i686-unknown-linux-musl; do \
	  arch=$${pair%%:*}; t=$${pair#*:}; \
	  rpmbuild -bb --target $$arch --define "_topdir $(CURDIR)/target/rpmbuild" \
	    --define "_qga_version $(VERSION)" --define "_qga_srcdir $(CURDIR)" \
	    --define "_qga_bindir $(CURDIR)/target/$$t/release" rpm/qga-bc.spec >/dev/null || exit 1; \
	done
	@ls -l target/rpmbuild/RPMS/*/*.rpm

# The deb: gzip members (dpkg before 1.17.6, Ubuntu 14.04's 1.17.5, reads no xz control
# member), md5sums of the non-conffiles, Installed-Size. One deb for Ubuntu 12.04 (upstart)
# to today (systemd); each init system gets its own service file.
deb: build
	@for pair in amd64:x86_64-unknown-linux-musl i386:i686-unknown-linux-musl; do \
	  arch=$${pair%%:*}; t=$${pair#*:}; root=target/deb/$$arch; rm -rf $$root; \
	  install -D -m 0755 target/$$t/release/qemu-ga $$root/usr/sbin/qemu-ga; \
	  install -D -m 0755 target/$$t/release/qemu-ga-client $$root/usr/bin/qemu-ga-client; \
	  install -D -m 0755 deb/qemu-guest-agent.init $$root/etc/init.d/qemu-guest-agent; \
	  install -D -m 0644 deb/qemu-guest-agent.upstart $$root/etc/init/qemu-guest-agent.conf; \
	  install -D -m 0644 deb/qemu-guest-agent.default $$root/etc/default/qemu-guest-agent; \
	  install -D -m 0644 rpm/qemu-ga.conf $$root/etc/qemu/qemu-ga.conf; \
	  install -D -m 0755 rpm/fsfreeze-hook $$root/etc/qemu/fsfreeze-hook; \
	  install -d -m 0755 $$root/etc/qemu/fsfreeze-hook.d; \
	  install -D -m 0644 deb/qemu-guest-agent.service $$root/lib/systemd/system/qemu-guest-agent.service; \
	  install -D -m 0644 rpm/99-qemu-guest-agent.rules $$root/lib/udev/rules.d/60-qemu-guest-agent.rules; \
	  install -D -m 0644 deb/copyright $$root/usr/share/doc/qga-bc/copyright; \
	  install -d -m 0755 $$root/usr/share/man/man8 $$root/usr/share/man/man1; \
	  gzip -9n < rpm/qemu-ga.8 > $$root/usr/share/man/man8/qemu-ga.8.gz; \
	  gzip -9n < rpm/qemu-ga-client.1 > $$root/usr/share/man/man1/qemu-ga-client.1.gz; \
	  chmod 0644 $$root/usr/share/man/man*/*.gz; \
	  install -d -m 0755 $$root/DEBIAN; \
	  install -m 0755 deb/DEBIAN/postinst deb/DEBIAN/prerm deb/DEBIAN/postrm $$root/DEBIAN/; \
	  install -m 0644 deb/DEBIAN/conffiles $$root/DEBIAN/; \
	  (cd $$root && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | sort \
	    | grep -vxF -f <(sed 's|^/||' DEBIAN/conffiles) | xargs md5sum > DEBIAN/md5sums); \
	  chmod 0644 $$root/DEBIAN/md5sums; \
	  size=$$(du -sk --exclude=DEBIAN $$root | cut -f1); \
	  sed -e 's/@VERSION@/$(VERSION)/' -e "s/@ARCH@/$$arch/" -e "s/@SIZE@/$$size/" \
	    deb/DEBIAN/control.in > $$root/DEBIAN/control; \
	  dpkg-deb -Zgzip -z9 --root-owner-group --build $$root target/deb/qga-bc_$(VERSION)_$$arch.deb >/dev/null || exit 1; \
	done
	@ls -l target/deb/*.deb

# The package tests (tests/packages.sh): read both packages, install the deb for real in a
# throwaway Debian root (debootstrap, cached in target/pkgtest). As root.
pkgtest: rpm deb
	bash tests/packages.sh
