#!/usr/bin/env bash
# The systemd + cgroup v2 lane of `make test`: builds the end-to-end test
# binaries, writes the job that runs the lane's scenarios on containerd 2.1,
# and runs it as root inside the guest (vm-image.sh builds it once, vm-run.sh
# boots it), then a short latency benchmark against the Go runc shim there,
# with the cgroupfs driver and with the systemd one (results in
# target/vm-lane/bench and bench-systemd). Prints the job's output; exits non-zero
# if any scenario (or the benchmark) failed.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
lane=$top/target/vm-lane
# test target: the scenarios (libtest names, matched exactly) the lane runs.
# The guest is emulated (12-25x slower than the host), so these are the ones
# whose outcome depends on the cgroup hierarchy.
scenarios=(
  "berth_cri: berth_cri::containerd_2_1"
  "containers: share_localhost::containerd_2_1 share_localhost::containerd_2_1_shim_mode stats_and_update::containerd_2_1_shim_mode stats_and_update::containerd_2_1 exit_codes::containerd_2_1 shared_pid::containerd_2_1 device_allow_list::containerd_2_1 unified_keys::containerd_2_1 limit_below_usage::containerd_2_1 limit_below_usage_runc::containerd_2_1"
  "container_spec: spec_reaches_the_container::containerd_2_1"
  "runtime_options: cgroup_options::containerd_2_1 slice_parent::containerd_2_1 systemd_driver::containerd_2_1 cgroup_options::containerd_2_1_shim_mode systemd_driver::containerd_2_1_shim_mode"
  "shim_killed: shim_killed::containerd_2_1 shim_killed_systemd::containerd_2_1 journaled_exit::containerd_2_1"
  "freeze: ctr_pause::containerd_2_1 pod_pause::containerd_2_1"
  "restart: containerd_crash::containerd_2_1 containerd_restart_systemd::containerd_2_1"
  "pod_remove: pod_remove::containerd_2_1 pod_remove::containerd_2_1_shim_mode"
  "mount_propagation: mount_propagation::containerd_2_1 mount_propagation_runc::containerd_2_1"
  "pause_spawn: pause_starts_in_its_cgroup_and_the_cgroup_is_removable_after"
  "deb: package_in_a_throwaway_root"
)

bash e2e/scripts/vm-image.sh
mkdir -p "$lane"
# The package the guest installs into its throwaway root (`make deb`'s).
# Built under the tree the guest sees, whatever CARGO_TARGET_DIR says.
CARGO_TARGET_DIR="$top/target" bash shim/dist/make-deb.sh >"$lane.deb.log" 2>&1 \
  || { tail -n 30 "$lane.deb.log"; exit 1; }
deb=$(sed -n 's/^-.* \(\/[^ ]*\.deb\)$/\1/p' "$lane.deb.log" | head -n1)
[[ -f $deb ]] || { echo "vm-lane: make-deb named no package:"; tail -n 30 "$lane.deb.log"; exit 1; }

# The same build as `make test`'s (TEST_FEATURES), so nothing is rebuilt.
json=$(cargo test --no-run --message-format=json --workspace \
         --features "${TEST_FEATURES:-berth-sandbox/root-tests,berth-pause/root-tests,berth-e2e/e2e}" \
         2>"$lane.build.log") \
  || { tail -n 30 "$lane.build.log"; exit 1; }

mkdir -p "$lane"
{
  echo '#!/bin/sh'
  echo '# Written by e2e/scripts/vm-lane.sh; runs inside the guest.'
  echo "cd '$top' || exit 1"
  echo "export BERTH_BIN_DIR='$top/target/berth/bin' BERTH_PAUSE='$top/target/berth/bin/berth-pause'"
  # The guest's root disk is a snapshot thrown away after the run.
  echo "export BERTH_DEB='$deb' BERTH_THROWAWAY_ROOT=1"
  echo 'rc=0'
  # The lane means nothing on another hierarchy.
  echo 'fs=$(stat -fc %T /sys/fs/cgroup)'
  echo '[ "$fs" = cgroup2fs ] || { echo "vm-lane: /sys/fs/cgroup is $fs, not cgroup2fs"; exit 1; }'
  echo '[ -d /run/systemd/system ] || { echo "vm-lane: systemd is not running"; exit 1; }'
  echo 'out=$(mktemp)'
  for s in "${scenarios[@]}"; do
    name=${s%%:*}
    set -- ${s#*:}
    count=$#
    bin=$(printf '%s\n' "$json" \
            | grep -F "\"name\":\"$name\",\"src_path\"" \
            | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | head -n1)
    [ -n "$bin" ] || { echo "vm-lane: no test binary for $name" >&2; exit 1; }
    echo "echo \"== $name:${s#*:}\"; t=\$(date +%s)"
    echo "'$bin' --test-threads=1 --exact${s#*:} >\"\$out\" 2>&1 || rc=1; cat \"\$out\""
    # A name that matches no test would pass by running nothing.
    echo "grep -q 'test result: ok. $count passed' \"\$out\" || { echo 'vm-lane: $name did not pass all $count scenarios'; rc=1; }"
    echo "echo \"== $name: \$((\$(date +%s) - t)) s\""
  done
  # Latency in the guest, berth and the Go runc shim alternating on one
  # containerd (the figures are printed, never asserted).
  echo 'echo "== bench: RunPodSandbox, create+start, stop+remove"; t=$(date +%s)'
  echo "'$top/target/release/berth-bench' --smoke --pods-only --runs 10 --out '$lane/bench' || rc=1"
  echo 'echo "== bench: $(($(date +%s) - t)) s"'
  # Again with the systemd cgroup driver for both, as on a kubeadm node.
  echo 'echo "== bench, systemd driver: RunPodSandbox, create+start, stop+remove"; t=$(date +%s)'
  echo "'$top/target/release/berth-bench' --smoke --pods-only --systemd --runs 10 --out '$lane/bench-systemd' || rc=1"
  echo 'echo "== bench, systemd driver: $(($(date +%s) - t)) s"'
  echo 'exit $rc'
} >"$lane/job"
chmod 0755 "$lane/job"

start=$(date +%s)
status=0
bash e2e/scripts/vm-run.sh || status=$?
cat "$lane/job.log" 2>/dev/null || true
echo "vm-lane: systemd + cgroup v2 guest, $(( $(date +%s) - start )) s, status $status"
exit "$status"
