#!/usr/bin/env bash
# Boots the systemd + cgroup v2 guest (e2e/scripts/vm-image.sh builds it) with
# this workspace shared in at the same path, runs target/vm-lane/job inside as
# root, and exits with the job's status. The job's output is in
# target/vm-lane/job.log; the guest's console in target/vm-lane/console.log.
#
# The root disk is opened with snapshot=on: every run starts from the same
# image and nothing it writes outlives the run.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
deps=${BERTH_DEPS_DIR:-$top/.deps}
vm=$deps/vm
lane=$top/target/vm-lane
minutes=${BERTH_VM_MINUTES:-45}

[ -x "$lane/job" ] || { echo "vm-run: no $lane/job to run" >&2; exit 2; }
rm -f "$lane/rc" "$lane/job.log" "$lane/console.log"

# KVM where the CPU offers it (a /dev/kvm without vmx or svm hangs the
# guest at boot); the emulator otherwise.
accel=tcg
if grep -qw -e vmx -e svm /proc/cpuinfo && [ -w /dev/kvm ]; then
  accel=kvm
fi

# qemu's emulated MSI-X has aborted on a guest's table write at boot
# (msix_table_mmio_write): the guest uses legacy interrupts (pci=nomsi), and
# a qemu that died before the job began is given one more boot.
for attempt in 1 2; do
  rm -f "$lane/rc" "$lane/job.log"
  status=0
  timeout --foreground -k 30s "${minutes}m" \
    qemu-system-x86_64 -machine "q35,accel=$accel" -cpu max -smp 2 -m 4G \
      -nographic -no-reboot -nic none \
      -kernel "$vm/vmlinuz" -initrd "$vm/initramfs.cpio.gz" \
      -append "console=ttyS0 quiet pci=nomsi systemd.unified_cgroup_hierarchy=1 panic=-1 berth.share=$top" \
      -drive "file=$vm/root.ext4,format=raw,if=virtio,snapshot=on" \
      -virtfs "local,path=$top,mount_tag=berth,security_model=none,id=berth" \
      </dev/null >"$lane/console.log" 2>&1 || status=$?
  if [ -f "$lane/rc" ] || [ -e "$lane/job.log" ] || [ "$status" -eq 124 ] || [ "$status" -lt 128 ]; then
    break
  fi
  echo "vm-run: qemu died at boot (status $status), booting again; its console:" >&2
  tail -n 5 "$lane/console.log" >&2
done
if [ ! -f "$lane/rc" ]; then
  echo "vm-run: the guest ended (qemu status $status) without the job's status; its console:" >&2
  tail -n 40 "$lane/console.log" >&2
  exit 1
fi
exit "$(cat "$lane/rc")"
