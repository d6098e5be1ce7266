# qga-bc build, test and run targets. `make` builds the static musl agents.
TARGETS   := x86_64-unknown-linux-musl i686-unknown-linux-musl
# Plain static executables (not static-pie): every kernel back to 2.6.32 loads them.
STATIC_RUSTFLAGS := -C relocation-model=static -C target-feature=+crt-static
SOCK      := run/qga.sock
CARGO     ?= cargo

.PHONY: all build deps test run stop bench clean

all: build

build:
	@for t in $(TARGETS); do \
	  rustup target list --installed 2>/dev/null | grep -qx $$t || rustup target add $$t || exit 1; \
	  RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build --release --locked --target $$t || exit 1; \
	done
	@for t in $(TARGETS); do for b in qemu-ga qemu-ga-client; do \
	  f=target/$$t/release/$$b; printf '%-50s %8d bytes  ' $$f $$(stat -c %s $$f); file -b $$f | cut -d, -f1-2,4-5; \
	done; done

# What a fresh Debian/Ubuntu machine needs for `make test`: the musl targets and the
# reference agent (Debian's qemu-guest-agent) the wire tests compare against.
deps:
	rustup target add $(TARGETS)
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq qemu-guest-agent file

# Unit and integration tests; as root also the tests marked `needs root`.
test:
	$(CARGO) test --locked
	@if [ "$$(id -u)" = 0 ]; then $(CARGO) test --locked -- --ignored; \
	  else echo "not root: tests marked 'needs root' skipped"; fi

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

# Side-by-side benchmark against Debian's qemu-ga (see `make deps`), printed as ratios.
bench:
	$(CARGO) test --release --locked --test bench -- --ignored --nocapture
