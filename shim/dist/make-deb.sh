#!/usr/bin/env bash
# Builds berth's Debian package from the binaries `make build` staged:
# target/deb/berth_<version>_<arch>.deb. The tree is what `make install`
# puts into DESTDIR with PREFIX=/usr, plus the package's documentation; the
# drop-in is a conffile. Depends is what dpkg-shlibdeps finds the one
# dynamically linked binary (the helper) needs; the shim and berth-pause
# are static. Packaged with dpkg-deb alone: nothing to fetch or compile.
set -euo pipefail
# dpkg-deb refuses a control directory a tighter umask would make.
umask 022
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
for tool in dpkg-deb dpkg-shlibdeps; do
  command -v "$tool" >/dev/null || { echo "make-deb: no $tool (install dpkg-dev: make deps)" >&2; exit 1; }
done
target=${CARGO_TARGET_DIR:-$PWD/target}
bin_dir=${BIN_DIR:-$target/berth/bin}

version=$(sed -n 's/^version = "\([^"]*\)"$/\1/p' Cargo.toml | head -n1)
[[ -n $version ]] || { echo "make-deb: no workspace version in Cargo.toml" >&2; exit 1; }
arch=$(dpkg --print-architecture)
name="berth_${version}_${arch}"
work=$target/deb
root=$work/$name
rm -rf "$root" "$work/$name.deb"
mkdir -p "$root/DEBIAN"

make --no-print-directory install DESTDIR="$root" PREFIX=/usr BIN_DIR="$bin_dir"
dropin=etc/containerd/conf.d/berth.toml
# The commented-out paths name where this package puts the binaries.
sed -i 's#/usr/local/bin/#/usr/bin/#g' "$root/$dropin"

doc=$root/usr/share/doc/berth
install -d "$doc"
install -m 0644 README.md "$doc/README.md"
cat >"$doc/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: berth

Files: *
Copyright: the berth authors
License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
chmod 0644 "$doc/copyright"

# dpkg-shlibdeps reads the package's name from a debian/control.
shl=$work/shlibdeps
rm -rf "$shl"
mkdir -p "$shl/debian"
printf 'Source: berth\n\nPackage: berth\nArchitecture: any\n' >"$shl/debian/control"
shlibs=$(cd "$shl" && dpkg-shlibdeps -O "$root/usr/bin/berth-sandbox-helper" 2>"$shl/err") \
  || { echo "make-deb: dpkg-shlibdeps failed:" >&2; cat "$shl/err" >&2; exit 1; }
depends=$(sed -n 's/^shlibs:Depends=//p' <<<"$shlibs")
[[ $depends == *libseccomp* ]] || { echo "make-deb: dpkg-shlibdeps found no libseccomp: $shlibs" >&2; exit 1; }

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: berth
Version: $version
Architecture: $arch
Maintainer: berth developers <berth@berth.invalid>
Installed-Size: $size
Depends: $depends
Section: admin
Priority: optional
Description: containerd shim v2 with a built-in pod sandbox manager
 containerd-shim-berth-v2 is a containerd runtime (io.containerd.berth.v2)
 that runs each Kubernetes pod around berth-pause, a tiny static PID 1
 holding the pod's namespaces, instead of a pause image, and starts the
 pod's containers through libcontainer. The package installs the shim, its
 helper and berth-pause in /usr/bin and a containerd drop-in registering
 the "berth" runtime in /etc/containerd/conf.d/berth.toml.
EOF
echo "/$dropin" >"$root/DEBIAN/conffiles"

dpkg-deb --root-owner-group -Zxz --build "$root" "$work/$name.deb" >/dev/null
rm -rf "$shl"
ls -l "$work/$name.deb"
dpkg-deb --contents "$work/$name.deb"
