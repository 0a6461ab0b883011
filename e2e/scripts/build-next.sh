#!/usr/bin/env bash
# Builds "the next release" for the upgrade test (e2e/tests/upgrade.rs): this
# tree with its version one patch release on and its state format one
# revision on, nothing else changed, staged into the directory given
# (default target/berth-next/bin). A copy of the tree is built with the
# same cargo target directory, so only berth's own crates are compiled.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
out=${1:-$target/berth-next/bin}
src=$target/next/src

rm -rf "$src"
mkdir -p "$src"
# Tracked and untracked files that are not ignored, as they are now.
git ls-files -z --cached --others --exclude-standard \
  | tar --null --files-from=- --ignore-failed-read -cf - \
  | tar -xf - -C "$src"

version=$(sed -n 's/^version = "\([0-9]*\.[0-9]*\.[0-9]*\)"$/\1/p' Cargo.toml | head -n1)
[[ -n $version ]] || { echo "build-next: no workspace version in Cargo.toml" >&2; exit 1; }
IFS=. read -r major minor patch <<<"$version"
next="$major.$minor.$((patch + 1))"
sed -i "0,/^version = \"$version\"$/s//version = \"$next\"/" "$src/Cargo.toml"

format=$(sed -n 's/^pub const FORMAT: u32 = \([0-9]*\);$/\1/p' sandbox/src/state.rs)
[[ -n $format ]] || { echo "build-next: no state FORMAT in sandbox/src/state.rs" >&2; exit 1; }
sed -i "s/^pub const FORMAT: u32 = $format;$/pub const FORMAT: u32 = $((format + 1));/" \
  "$src/sandbox/src/state.rs"
grep -q "^version = \"$next\"$" "$src/Cargo.toml"
grep -q "^pub const FORMAT: u32 = $((format + 1));$" "$src/sandbox/src/state.rs"

revision="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)+next"
echo "build-next: berth $version (format $format) -> $next (format $((format + 1))), into $out"
BERTH_REVISION=$revision make --no-print-directory -C "$src" binaries \
  TARGET_DIR="$target" BIN_DIR="$out"
"$out/containerd-shim-berth-v2" -v
