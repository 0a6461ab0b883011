#!/usr/bin/env bash
# Builds the guest of the systemd + cgroup v2 test lane, once, into
# $BERTH_DEPS_DIR/vm (default .deps/vm): a Debian bookworm kernel, a busybox
# initramfs that mounts the root disk, and an ext4 root made by debootstrap
# with systemd, dbus and what containerd's CRI needs. e2e/scripts/vm-run.sh
# boots it.
#
# Idempotent: with the image present and built by this revision of the script,
# it does nothing. Installs qemu from bookworm-backports (bookworm's own qemu
# would make apt remove the newer qemu-utils a machine may have) through a
# private sources list: the system's apt configuration is not changed.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
deps=${BERTH_DEPS_DIR:-$top/.deps}
vm=$deps/vm
script=$(readlink -f "${BASH_SOURCE[0]}")

host_packages=(debootstrap cpio kmod e2fsprogs busybox-static)
# In the guest: systemd as init and its D-Bus, the tools containerd's CRI and
# the CNI plugins call, runc for the Go shim beside berth, busybox for images,
# a font for the benchmark's chart.
guest_packages=(systemd systemd-sysv dbus iproute2 iptables kmod runc
                containernetworking-plugins busybox-static libseccomp2 procps
                fonts-dejavu-core)
# Modules the initramfs loads to reach the root disk and the shared directory.
boot_modules=(virtio_pci virtio_blk ext4 9pnet_virtio 9p)

log() { printf 'vm-image: %s\n' "$*"; }

# shellcheck source=e2e/scripts/apt-private.sh
. "$top/e2e/scripts/apt-private.sh"

# What the image is made from, by contents (not by path: any checkout of the
# same scripts finds its image).
stamp() {
  cat "$script" "$top/e2e/scripts/vm-guest-init" "$top/e2e/scripts/apt-private.sh" \
    | sha256sum | cut -c1-16
}

if [ -f "$vm/STAMP" ] && [ "$(cat "$vm/STAMP")" = "$(stamp)" ] \
   && [ -f "$vm/vmlinuz" ] && [ -f "$vm/initramfs.cpio.gz" ] && [ -f "$vm/root.ext4" ] \
   && command -v qemu-system-x86_64 >/dev/null; then
  exit 0
fi

install_host_packages() {
  local missing=()
  for p in "${host_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -qq \
      --no-install-recommends "${missing[@]}" >"$deps/apt/vm/install.log" \
      || { tail -n 30 "$deps/apt/vm/install.log"; return 1; }
  fi
  if ! command -v qemu-system-x86_64 >/dev/null; then
    log "installing qemu-system-x86 from bookworm-backports"
    DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -qq \
      --no-install-recommends -t bookworm-backports qemu-system-x86 \
      >"$deps/apt/vm/install.log" || { tail -n 30 "$deps/apt/vm/install.log"; return 1; }
  fi
}

# The kernel and its modules, from bookworm's linux-image-amd64.
fetch_kernel() {
  local work=$1
  local pkg
  pkg=$(apt-cache "${apt_opts[@]}" depends linux-image-amd64/bookworm \
          | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$pkg" ] || { log "linux-image-amd64 names no kernel package"; return 1; }
  log "fetching $pkg"
  (cd "$work" && apt-get "${apt_opts[@]}" -o "Debug::NoLocking=1" download "$pkg/bookworm")
  mkdir -p "$work/kernel"
  dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
  kver=$(ls "$work/kernel/lib/modules")
  depmod -b "$work/kernel" "$kver"
}

make_initramfs() {
  local work=$1 dir=$1/initramfs
  mkdir -p "$dir/bin" "$dir/lib/modules"
  cp /bin/busybox "$dir/bin/busybox"
  : >"$dir/modules"
  local line mod
  # insmod lines in load order; builtin ones are skipped.
  while read -r line; do
    case $line in
      insmod\ *)
        mod=${line#insmod }
        mod=${mod%% *}
        if ! grep -qx "/lib/modules/$(basename "$mod")" "$dir/modules"; then
          cp "$mod" "$dir/lib/modules/"
          echo "/lib/modules/$(basename "$mod")" >>"$dir/modules"
        fi
        ;;
    esac
  done < <(for m in "${boot_modules[@]}"; do
             modprobe -d "$work/kernel" -S "$kver" --show-depends "$m"
           done)
  cat >"$dir/init" <<'EOF'
#!/bin/busybox sh
bb=/bin/busybox
$bb mkdir -p /proc /sys /dev /root
$bb mount -t proc proc /proc
$bb mount -t sysfs sys /sys
$bb mount -t devtmpfs dev /dev
for m in $($bb cat /modules); do $bb insmod "$m" || echo "initramfs: insmod $m failed"; done
n=0
while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do $bb sleep 0.1; n=$((n + 1)); done
$bb mount -t ext4 /dev/vda /root || { echo "initramfs: cannot mount /dev/vda"; $bb poweroff -f; }
$bb umount /proc /sys
$bb mount --move /dev /root/dev
exec $bb switch_root /root /sbin/init
EOF
  chmod 0755 "$dir/init"
  (cd "$dir" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initramfs.cpio.gz"
}

make_root() {
  local work=$1 root=$1/root
  local mirror
  mirror=$(debian_mirror)
  log "debootstrap bookworm (${guest_packages[*]})"
  debootstrap --variant=minbase --include="$(IFS=,; echo "${guest_packages[*]}")" \
    bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log"; return 1; }
  mkdir -p "$root/lib/modules"
  cp -a "$work/kernel/lib/modules/$kver" "$root/lib/modules/"
  printf '127.0.0.1 localhost\n::1 localhost ip6-localhost\n' >"$root/etc/hosts"
  echo berth-vm >"$root/etc/hostname"
  : >"$root/etc/machine-id"
  install -m 0755 "$top/e2e/scripts/vm-guest-init" "$root/usr/local/sbin/berth-lane"
  cat >"$root/etc/systemd/system/berth-lane.service" <<'EOF'
[Unit]
Description=berth test lane job
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/berth-lane
StandardOutput=journal+console
StandardError=journal+console
FailureAction=poweroff-force
[Install]
WantedBy=multi-user.target
EOF
  ln -sf /etc/systemd/system/berth-lane.service \
    "$root/etc/systemd/system/multi-user.target.wants/berth-lane.service"
  # Nothing but the job: no timers, no getty on the console it writes to.
  for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
              e2scrub_all.timer fstrim.timer serial-getty@ttyS0.service getty@tty1.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*
  local size_mb
  size_mb=$(( $(du -sm "$root" | cut -f1) + 3072 ))
  mke2fs -q -t ext4 -L berth-root -d "$root" "$work/root.ext4" "${size_mb}M"
}

apt_setup vm bookworm bookworm-backports
install_host_packages
work=$vm.tmp
rm -rf "$work" && mkdir -p "$work"
kver=
fetch_kernel "$work"
make_initramfs "$work"
make_root "$work"
cp "$work/kernel/boot/vmlinuz-$kver" "$work/vmlinuz"
echo "$kver" >"$work/KERNEL"
rm -rf "$work/kernel" "$work/root" "$work/initramfs" "$work"/*.deb
stamp >"$work/STAMP"
rm -rf "$vm" && mv "$work" "$vm"
log "guest ready in $vm (kernel $kver, root $(du -h --apparent-size "$vm/root.ext4" | cut -f1))"
