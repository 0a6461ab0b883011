# berth: a containerd shim v2 with a built-in pod sandbox manager.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
MUSL_TARGET := x86_64-unknown-linux-musl
# Where cargo builds; the binaries are staged in BIN_DIR.
TARGET_DIR ?= $(CURDIR)/target
BIN_DIR ?= $(TARGET_DIR)/berth/bin
# The upgrade test's second build: this tree with its version and state
# format bumped (e2e/scripts/build-next.sh).
NEXT_BIN_DIR := $(TARGET_DIR)/berth-next/bin
export CARGO_TARGET_DIR := $(TARGET_DIR)
FUZZ_SECONDS ?= 60
TEST_FEATURES := berth-sandbox/root-tests,berth-pause/root-tests,berth-e2e/e2e
# make install: where the binaries and containerd's drop-in go.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
DROPIN_DIR := $(SYSCONFDIR)/containerd/conf.d
BINARIES := containerd-shim-berth-v2 berth-sandbox-helper berth-pause
export BERTH_BIN_DIR := $(BIN_DIR)
export BERTH_PAUSE := $(BIN_DIR)/berth-pause
export BERTH_NEXT_BIN_DIR := $(NEXT_BIN_DIR)

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## install what building and testing need (idempotent)
	@bash e2e/scripts/install-deps.sh

.PHONY: build
build: deps ## build the shim, its helper and berth-pause (release) into target/berth/bin
	$(CARGO) build --release -p berth-e2e --bins
	@$(MAKE) --no-print-directory binaries

.PHONY: binaries
binaries: ## (part of build) the shim, its helper and berth-pause alone, staged into BIN_DIR
	@# The helper starts for every pod and container operation: non-PIE, it
	@# has no relocations to apply first.
	$(CARGO) rustc --release -p berth-sandbox --features helper --bin berth-sandbox-helper -- -C relocation-model=static
	@# Static and non-PIE on musl: no shared libraries to map, no relocations
	@# written into private pages at start-up (see docs/design.md).
	$(CARGO) rustc --profile shim --target $(MUSL_TARGET) -p berth-shim --bin containerd-shim-berth-v2 -- -C relocation-model=static
	$(CARGO) build --profile pause --target $(MUSL_TARGET) -p berth-pause
	@mkdir -p $(BIN_DIR)
	@install -m 0755 $(TARGET_DIR)/$(MUSL_TARGET)/shim/containerd-shim-berth-v2 $(BIN_DIR)/
	@install -m 0755 $(TARGET_DIR)/release/berth-sandbox-helper $(BIN_DIR)/
	@install -m 0755 $(TARGET_DIR)/$(MUSL_TARGET)/pause/berth-pause $(BIN_DIR)/
	@ls -l $(BIN_DIR)

.PHONY: build-next
build-next: build ## the upgrade test's "next release" (version and state format bumped) into target/berth-next/bin
	@# The next release's build leaves its binaries in cargo's output
	@# paths: this tree's are put back there, also when it failed.
	@rc=0; bash e2e/scripts/build-next.sh $(NEXT_BIN_DIR) || rc=$$?; \
	  $(MAKE) --no-print-directory binaries || exit $$?; exit $$rc

.PHONY: install
install: ## install the binaries `make build` staged into BINDIR (PREFIX/bin) and containerd's drop-in (DESTDIR honoured)
	@for b in $(BINARIES); do \
	  [ -x "$(BIN_DIR)/$$b" ] || { echo "make install: $(BIN_DIR)/$$b is missing: run make build first" >&2; exit 1; }; \
	done
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(DROPIN_DIR)"
	@# install(1) replaces a file by unlinking it first: a running shim keeps
	@# the binary it was started from.
	install -m 0755 $(addprefix $(BIN_DIR)/,$(BINARIES)) "$(DESTDIR)$(BINDIR)/"
	install -m 0644 shim/dist/berth.toml "$(DESTDIR)$(DROPIN_DIR)/berth.toml"

.PHONY: uninstall
uninstall: ## remove exactly the files `make install` put there (same PREFIX, BINDIR, SYSCONFDIR, DESTDIR)
	rm -f $(addprefix "$(DESTDIR)$(BINDIR)/,$(addsuffix ",$(BINARIES))) "$(DESTDIR)$(DROPIN_DIR)/berth.toml"

.PHONY: deb
deb: build ## the Debian package of the staged binaries and the drop-in (dpkg-deb): target/deb/berth_<version>_<arch>.deb
	bash shim/dist/make-deb.sh

.PHONY: demo
demo: build ## run a pod with berth through a private containerd 2.1, print what happened, clean up (MODE=shim: berth as the pod sandbox manager)
	$(TARGET_DIR)/release/berth-demo $(if $(MODE),--mode $(MODE))

.PHONY: bench
bench: build ## benchmark berth against containerd's Go runc shim (30 runs); table, JSON, PNG in target/bench
	$(TARGET_DIR)/release/berth-bench

.PHONY: bench-smoke
bench-smoke: build ## the benchmark with 3 runs of each figure, so it never rots (CI runs it)
	$(TARGET_DIR)/release/berth-bench --smoke

.PHONY: test
test: build build-next ## run the unit, root and end-to-end tests (as root), then the VM lane
	@# The package test installs into / : the VM lane runs it, in a guest
	@# whose root disk is thrown away.
	$(CARGO) nextest run --workspace --features $(TEST_FEATURES) --no-fail-fast \
	  -E 'not (binary(deb) & test(=package_in_a_throwaway_root))'
	TEST_FEATURES=$(TEST_FEATURES) bash e2e/scripts/vm-lane.sh

.PHONY: vm-lane
vm-lane: build ## only the end-to-end scenarios in a systemd + cgroup v2 guest (qemu)
	TEST_FEATURES=$(TEST_FEATURES) bash e2e/scripts/vm-lane.sh

.PHONY: unit
unit: ## run only the unit tests (no root needed)
	$(CARGO) nextest run --workspace --features berth-sandbox/helper

.PHONY: lint
lint: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all --check
	rustfmt --edition 2021 --check e2e/fuzz/fuzz_targets/*.rs
	@# The fuzz crate's own lockfile matches its manifest.
	$(CARGO) metadata --locked --format-version 1 --manifest-path e2e/fuzz/Cargo.toml >/dev/null
	$(CARGO) clippy --workspace --all-targets --features $(TEST_FEATURES) -- -D warnings
	$(CARGO) clippy -p berth-shim -p berth-sandbox --all-targets -- -D warnings
	$(CARGO) clippy -p berth-shim -p berth-sandbox --features berth-shim/fuzz -- -D warnings

.PHONY: fuzz
fuzz: ## run each fuzz target for FUZZ_SECONDS (default 60) seconds; FUZZ_TARGETS picks some
	@bash e2e/scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

.PHONY: clean
clean: ## remove build output (keeps fetched containerd releases)
	$(CARGO) clean
