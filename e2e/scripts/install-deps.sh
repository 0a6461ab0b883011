#!/usr/bin/env bash
# Installs what berth needs to build and test, and fetches the containerd
# releases the end-to-end tests run against into a project-local directory.
#
# Idempotent: a second run with everything present does no network work.
# Never changes the system's apt configuration: containerd is fetched with a
# private sources list and lists directory, then unpacked with dpkg-deb.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
deps=${BERTH_DEPS_DIR:-$top/.deps}

# Debian packages the build and the tests use.
# (g++ builds libFuzzer for `make fuzz`; dpkg-dev has dpkg-shlibdeps for `make deb`.)
packages=(busybox-static containernetworking-plugins protobuf-compiler libseccomp-dev
          runc pkg-config iproute2 iptables fonts-dejavu-core g++ dpkg-dev)
# containerd releases under test: name, suite, pinned package version.
containerds=(
  "2.1 sid 2.1.9+ds1-5"
  "1.7 trixie 1.7.24~ds1-6+deb13u1"
)
musl_target=x86_64-unknown-linux-musl
cargo_fuzz_version=0.13.1

log() { printf 'install-deps: %s\n' "$*"; }

# shellcheck source=e2e/scripts/apt-private.sh
. "$top/e2e/scripts/apt-private.sh"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

install_rust_target() {
  command -v rustup >/dev/null || { log "rustup not found: cannot add $musl_target"; return 1; }
  rustup target list --installed | grep -qx "$musl_target" && return
  log "adding rust target $musl_target"
  rustup target add "$musl_target"
}

fetch_containerd() {
  local name=$1 suite=$2 pinned=$3
  local dest=$deps/containerd-$name
  if [ -x "$dest/usr/bin/containerd" ] && [ -x "$dest/usr/bin/containerd-shim-runc-v2" ]; then
    return
  fi
  apt_setup "$suite" "$suite"
  local opts=("${apt_opts[@]}" -o "Debug::NoLocking=1")
  local version=$pinned
  if ! apt-cache "${opts[@]}" show "containerd=$pinned" >/dev/null 2>&1; then
    version=$(apt-cache "${opts[@]}" policy containerd | awk '/Candidate:/ {print $2}')
    [ -n "$version" ] && [ "$version" != "(none)" ] \
      || { log "containerd is not in $suite"; return 1; }
    log "containerd $pinned has left $suite; taking $suite's current $version"
  fi
  (cd "$apt_dir/debs" && rm -f containerd_*.deb && apt-get "${opts[@]}" download "containerd=$version")
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  dpkg-deb -x "$apt_dir/debs"/containerd_*.deb "$dest.tmp"
  printf '%s\n' "$version" >"$dest.tmp/VERSION"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
  log "containerd $version unpacked into $dest"
}

# cargo-fuzz, for `make fuzz` only: the machine's one toolchain runs it
# with RUSTC_BOOTSTRAP=1 (see CONTRIBUTING.md).
install_cargo_fuzz() {
  local bin=$deps/cargo-fuzz/bin/cargo-fuzz
  [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$cargo_fuzz_version" && return
  log "installing cargo-fuzz $cargo_fuzz_version into $deps/cargo-fuzz"
  cargo install --quiet --locked --root "$deps/cargo-fuzz" --version "$cargo_fuzz_version" cargo-fuzz
}

if [ "${1:-}" = fuzz ]; then
  install_cargo_fuzz
  exit 0
fi

install_packages
install_rust_target
for c in "${containerds[@]}"; do
  # shellcheck disable=SC2086
  fetch_containerd $c
done
log "ready (containerd: $(cat "$deps"/containerd-*/VERSION | tr '\n' ' '))"
