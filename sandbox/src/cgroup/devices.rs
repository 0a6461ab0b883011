//! The device allow-list of a container on cgroup v2: an eBPF program of
//! type `BPF_PROG_TYPE_CGROUP_DEVICE` attached to its cgroup, as runc
//! installs (v1 has the `devices` controller, which libcontainer writes).
//!
//! The kernel runs the program on every open and mknod of a device node
//! in the cgroup, with the device's type, major, minor and the access
//! asked for; 1 allows, 0 refuses with EPERM. The last matching rule
//! decides, which is how v1 reads a list that starts by denying every
//! device (the engine puts "deny all" first unless a list starts with an
//! all-devices rule). After an allow-all, v1 (and runc's emulation of it)
//! lets a later allow undo only a denial of exactly the same devices,
//! where here it undoes a broader one too. One more difference, on the
//! safe side: a deny rule matches when it covers any of the access bits
//! asked for, and an allow rule only when it covers all of them, so an
//! access whose bits are granted by different allow rules is refused.
//! Anything no rule matches is refused.

#[cfg(feature = "helper")]
use std::io;
#[cfg(feature = "helper")]
use std::os::fd::AsRawFd;
#[cfg(feature = "helper")]
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::{Error, Result};
use crate::sys::BpfInsn as Insn;

// Opcodes the program uses.
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU64_AND_K: u8 = 0x57; // dst &= imm
const ALU64_RSH_K: u8 = 0x77; // dst >>= imm
const ALU64_MOV_K: u8 = 0xb7; // dst = imm
const ALU64_MOV_X: u8 = 0xbf; // dst = src
const JMP_JNE_K: u8 = 0x55; // if dst != imm: pc += off
const JMP_JNE_X: u8 = 0x5d; // if dst != src: pc += off
const JMP_JEQ_K: u8 = 0x15; // if dst == imm: pc += off
const JMP_EXIT: u8 = 0x95;

// `struct bpf_cgroup_dev_ctx`: access_type (type | access << 16), major, minor.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
/// Minors have 20 bits (and majors 12): no larger number names a device.
const MAX_DEVICE_NUMBER: u32 = (1 << 20) - 1;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The access bits of an OCI access string (`"rwm"`); all three for none.
fn access_bits(access: Option<&str>) -> Result<i32> {
    let Some(access) = access.filter(|a| !a.is_empty()) else {
        return Ok(ACC_MKNOD | ACC_READ | ACC_WRITE);
    };
    access.chars().try_fold(0, |bits, c| match c {
        'r' => Ok(bits | ACC_READ),
        'w' => Ok(bits | ACC_WRITE),
        'm' => Ok(bits | ACC_MKNOD),
        other => Err(Error::invalid(
            "linux.resources.devices.access",
            format!("{access:?}: {other:?} is not r, w or m"),
        )),
    })
}

/// The program for `rules` (the spec's `linux.resources.devices`).
pub fn program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>> {
    // r2 = type, r3 = access, r4 = major, r5 = minor.
    let mut prog = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU64_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU64_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    // The last rule that matches decides: test them from the last back.
    for rule in rules.iter().rev() {
        let mut block = Vec::new();
        match rule.typ() {
            // "a" is every device and every access, whatever else the rule
            // says, as the kernel reads it on v1: this rule decides alone.
            None | Some(LinuxDeviceType::A) => {
                prog.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow())));
                prog.push(insn(JMP_EXIT, 0, 0, 0, 0));
                return Ok(prog);
            }
            Some(LinuxDeviceType::B) => block.push(insn(JMP_JNE_K, 2, 0, 0, DEV_BLOCK)),
            Some(LinuxDeviceType::C | LinuxDeviceType::U) => {
                block.push(insn(JMP_JNE_K, 2, 0, 0, DEV_CHAR))
            }
            Some(other) => {
                return Err(Error::invalid(
                    "linux.resources.devices.type",
                    format!("{other:?} is not a, b or c"),
                ))
            }
        }
        let bits = access_bits(rule.access().as_deref())?;
        if bits != ACC_MKNOD | ACC_READ | ACC_WRITE {
            block.push(insn(ALU64_MOV_X, 1, 3, 0, 0));
            block.push(insn(ALU64_AND_K, 1, 0, 0, bits));
            if rule.allow() {
                // Every bit asked for is in the rule's.
                block.push(insn(JMP_JNE_X, 1, 3, 0, 0));
            } else {
                // Any bit asked for is.
                block.push(insn(JMP_JEQ_K, 1, 0, 0, 0));
            }
        }
        for (reg, number) in [(4, rule.major()), (5, rule.minor())] {
            // None and -1 are any number.
            match number {
                None | Some(-1) => {}
                Some(n) => {
                    let n = u32::try_from(n)
                        .ok()
                        .filter(|&n| n <= MAX_DEVICE_NUMBER)
                        .ok_or_else(|| {
                            Error::invalid(
                                "linux.resources.devices",
                                format!("{n} is not a device number"),
                            )
                        })?;
                    block.push(insn(JMP_JNE_K, reg, 0, 0, n as i32));
                }
            }
        }
        block.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow())));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        // Each test jumps past the block's end when the rule does not match.
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if matches!(ins.code, JMP_JNE_K | JMP_JNE_X | JMP_JEQ_K) {
                ins.off = (len - i - 1) as i16;
            }
        }
        prog.extend(block);
    }
    prog.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    prog.push(insn(JMP_EXIT, 0, 0, 0, 0));
    Ok(prog)
}

/// One device rule; a `None` major or minor is every number (`*`).
pub fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut b = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access(access);
    if let Some(major) = major {
        b = b.major(major);
    }
    if let Some(minor) = minor {
        b = b.minor(minor);
    }
    b.build()
        .expect("every field of a device rule is set or optional")
}

/// The spec's rules followed by the devices every container may use, as
/// runc appends them (containerd's CRI sends only "deny all" and the pod's
/// own devices, and relies on that): making any node, /dev/null, zero,
/// full, random, urandom, tty, ptmx and the pty slaves.
pub fn with_defaults(rules: &[LinuxDeviceCgroup]) -> Vec<LinuxDeviceCgroup> {
    let allow = |typ, major, minor, access| rule(true, typ, major, minor, access);
    let c = LinuxDeviceType::C;
    let mut all = rules.to_vec();
    all.extend([
        allow(c, None, None, "m"),
        allow(LinuxDeviceType::B, None, None, "m"),
        allow(c, Some(1), Some(3), "rwm"),
        allow(c, Some(1), Some(5), "rwm"),
        allow(c, Some(1), Some(7), "rwm"),
        allow(c, Some(1), Some(8), "rwm"),
        allow(c, Some(1), Some(9), "rwm"),
        allow(c, Some(5), Some(0), "rwm"),
        allow(c, Some(5), Some(2), "rwm"),
        allow(c, Some(136), None, "rwm"),
    ]);
    all
}

/// Loads the program for `rules` followed by [`with_defaults`]'s and
/// attaches it to the v2 cgroup `dir`. No rules at all allow only the
/// defaults, as in runc.
#[cfg(feature = "helper")]
pub fn install(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let prog = program(&with_defaults(rules))?;
    let cgroup = std::fs::File::open(dir).map_err(Error::io("open cgroup", dir))?;
    let loaded = match crate::sys::bpf_load_device_program(&prog, None) {
        Ok(fd) => fd,
        Err(e) => {
            // Again with the verifier's log, to say why; a log too small
            // for a long program is no reason to hide the first error.
            // (A second load that works is as good as a first.)
            let mut log = vec![0u8; 256 * 1024];
            match crate::sys::bpf_load_device_program(&prog, Some(&mut log)) {
                Ok(fd) => fd,
                Err(_) => {
                    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                    let why = String::from_utf8_lossy(&log[..end]).into_owned();
                    return Err(bpf_error("load the device filter", dir, e, &why));
                }
            }
        }
    };
    crate::sys::bpf_attach_device_program(cgroup.as_raw_fd(), loaded.as_raw_fd())
        .map_err(|e| bpf_error("attach the device filter", dir, e, ""))
}

#[cfg(feature = "helper")]
fn bpf_error(op: &str, dir: &Path, e: io::Error, log: &str) -> Error {
    // The verifier's conclusion is at the end of its log.
    let log = log.trim();
    let tail: String = {
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("; ")
    };
    let what = if tail.is_empty() {
        format!("{op} to cgroup {}", dir.display())
    } else {
        format!("{op} to cgroup {} (verifier: {tail})", dir.display())
    };
    Error::sys(what)(e)
}

/// Runs `prog` on one device access, as the kernel would: for tests, and
/// for the fuzz target's invariant that a program always decides.
pub fn evaluate(prog: &[Insn], typ: i32, access: i32, major: u32, minor: u32) -> Option<u64> {
    let ctx = [(typ | (access << 16)) as u32, major, minor];
    let mut regs = [0u64; 11];
    let mut pc = 0usize;
    for _ in 0..=prog.len() {
        let ins = prog.get(pc)?;
        let dst = usize::from(ins.regs & 0xf);
        let src = usize::from(ins.regs >> 4);
        let imm = ins.imm as i64 as u64;
        let mut jump = false;
        match ins.code {
            LDX_MEM_W => regs[dst] = u64::from(*ctx.get(ins.off as usize / 4)?),
            ALU64_AND_K => regs[dst] &= imm,
            ALU64_RSH_K => regs[dst] >>= imm,
            ALU64_MOV_K => regs[dst] = imm,
            ALU64_MOV_X => regs[dst] = regs[src],
            JMP_JNE_K => jump = regs[dst] != imm,
            JMP_JNE_X => jump = regs[dst] != regs[src],
            JMP_JEQ_K => jump = regs[dst] == imm,
            JMP_EXIT => return Some(regs[0]),
            _ => return None,
        }
        pc += 1;
        if jump {
            pc = pc.checked_add_signed(isize::from(ins.off))?;
        }
    }
    None
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A rule with both numbers given (-1 is how some clients say `*`).
    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: i64,
        minor: i64,
        access: &str,
    ) -> LinuxDeviceCgroup {
        super::rule(allow, typ, Some(major), Some(minor), access)
    }

    /// What CRI sends for an unprivileged container: deny everything (the
    /// rest comes from [`with_defaults`], as runc adds it).
    pub(super) fn cri_rules() -> Vec<LinuxDeviceCgroup> {
        vec![rule(false, LinuxDeviceType::A, -1, -1, "rwm")]
    }

    /// The first instruction no path from the start reaches, which the
    /// kernel's verifier refuses.
    fn unreachable(prog: &[Insn]) -> Option<usize> {
        let mut seen = vec![false; prog.len()];
        let mut todo = vec![0usize];
        while let Some(pc) = todo.pop() {
            if pc >= prog.len() || std::mem::replace(&mut seen[pc], true) {
                continue;
            }
            match prog[pc].code {
                JMP_EXIT => {}
                JMP_JNE_K | JMP_JNE_X | JMP_JEQ_K => {
                    todo.push(pc + 1);
                    todo.push(pc + 1 + prog[pc].off as usize);
                }
                _ => todo.push(pc + 1),
            }
        }
        seen.iter().position(|s| !s)
    }

    #[test]
    fn every_instruction_is_reachable() {
        let all = rule(true, LinuxDeviceType::A, -1, -1, "rwm");
        let deny = rule(false, LinuxDeviceType::A, -1, -1, "rwm");
        for rules in [
            with_defaults(&cri_rules()),
            vec![all.clone()],
            vec![deny.clone()],
            vec![deny.clone(), all.clone(), deny],
            vec![rule(true, LinuxDeviceType::C, 1, 3, "r"), all],
        ] {
            let prog = program(&rules).unwrap();
            assert_eq!(unreachable(&prog), None, "{rules:?}");
            let last = prog.last().unwrap();
            assert_eq!(last.code, JMP_EXIT, "the program ends in an exit");
        }
    }

    #[test]
    fn the_last_matching_rule_decides_and_nothing_else_passes() {
        let prog = program(&with_defaults(&cri_rules())).unwrap();
        let rw = ACC_READ | ACC_WRITE;
        let cases = [
            (DEV_CHAR, rw, 1, 3, 1, "/dev/null"),
            (DEV_CHAR, ACC_READ, 136, 7, 1, "a pty, any minor"),
            (DEV_CHAR, ACC_MKNOD, 1, 11, 1, "mknod of any char node"),
            (DEV_BLOCK, ACC_MKNOD, 8, 0, 1, "mknod of any block node"),
            (DEV_CHAR, ACC_WRITE, 1, 11, 0, "/dev/kmsg"),
            (DEV_BLOCK, ACC_READ, 8, 0, 0, "a disk"),
            (
                DEV_BLOCK,
                rw,
                1,
                3,
                0,
                "a block device with /dev/null's numbers",
            ),
            (
                DEV_CHAR,
                ACC_READ | ACC_MKNOD,
                10,
                200,
                0,
                "read and mknod of /dev/net/tun",
            ),
        ];
        for (typ, access, major, minor, want, what) in cases {
            assert_eq!(
                evaluate(&prog, typ, access, major, minor),
                Some(want),
                "{what}"
            );
        }
    }

    #[test]
    fn allow_all_and_later_denials() {
        let all = program(&[rule(true, LinuxDeviceType::A, -1, -1, "rwm")]).unwrap();
        assert_eq!(evaluate(&all, DEV_BLOCK, ACC_READ, 8, 0), Some(1));
        let mut rules = vec![rule(true, LinuxDeviceType::A, -1, -1, "rwm")];
        rules.push(rule(false, LinuxDeviceType::C, 1, 3, "w"));
        let prog = program(&rules).unwrap();
        assert_eq!(
            evaluate(&prog, DEV_CHAR, ACC_READ, 1, 3),
            Some(1),
            "read is still allowed"
        );
        assert_eq!(
            evaluate(&prog, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3),
            Some(0),
            "rw has a denied bit"
        );
        assert_eq!(
            evaluate(&prog, DEV_CHAR, ACC_WRITE, 1, 5),
            Some(1),
            "another device"
        );
    }

    #[test]
    fn an_all_devices_rule_ignores_its_numbers_and_access() {
        // The kernel reads "a 1:3 r" as "a": every device, every access.
        let deny = program(&with_defaults(&[rule(
            false,
            LinuxDeviceType::A,
            1,
            3,
            "r",
        )]))
        .unwrap();
        assert_eq!(evaluate(&deny, DEV_BLOCK, ACC_READ, 8, 0), Some(0));
        assert_eq!(
            evaluate(&deny, DEV_CHAR, ACC_READ, 1, 3),
            Some(1),
            "a default"
        );
        let allow = program(&[
            rule(false, LinuxDeviceType::C, 1, 3, "w"),
            rule(true, LinuxDeviceType::A, 4, 4, "m"),
        ])
        .unwrap();
        assert_eq!(
            evaluate(&allow, DEV_CHAR, ACC_WRITE, 1, 3),
            Some(1),
            "the later allow-all overrides the earlier denial"
        );
        assert_eq!(unreachable(&allow), None);
    }

    #[test]
    fn no_rules_allow_only_the_defaults() {
        let prog = program(&with_defaults(&[])).unwrap();
        assert_eq!(evaluate(&prog, DEV_CHAR, ACC_WRITE, 1, 3), Some(1));
        assert_eq!(evaluate(&prog, DEV_CHAR, ACC_WRITE, 1, 11), Some(0));
        assert_eq!(evaluate(&prog, DEV_BLOCK, ACC_READ, 8, 0), Some(0));
    }

    #[test]
    fn a_number_that_names_no_device_is_refused() {
        for n in [-2, 1 << 20, i64::MAX] {
            let err = program(&[rule(true, LinuxDeviceType::C, n, 0, "r")]).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{n}: {err}");
            assert!(err.to_string().contains(&n.to_string()), "{err}");
        }
        let any = program(&[rule(true, LinuxDeviceType::C, -1, -1, "r")]).unwrap();
        assert_eq!(
            evaluate(&any, DEV_CHAR, ACC_READ, 4095, (1 << 20) - 1),
            Some(1)
        );
    }

    #[test]
    fn a_bad_access_string_is_refused_by_field() {
        let err = program(&[rule(true, LinuxDeviceType::C, 1, 3, "rx")]).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{err}");
    }
}

/// The program in a real cgroup: the unified hierarchy (a v2 one or a
/// hybrid host's `unified` mount) runs device programs either way.
#[cfg(all(test, feature = "root-tests"))]
mod root_tests {
    use super::tests::cri_rules;
    use super::*;

    #[test]
    fn an_attached_filter_refuses_what_the_rules_do_not_allow() {
        let base = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            Path::new("/sys/fs/cgroup")
        } else {
            Path::new("/sys/fs/cgroup/unified")
        };
        let dir = base.join(format!("berth-devices-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        install(&dir, &cri_rules()).unwrap();
        // The nodes are made under /dev, which (unlike a nodev /tmp) allows
        // devices: the /dev/null node made beside the kmsg one shows it.
        let nodes = format!("/dev/berth-devices-{}", std::process::id());
        std::fs::create_dir(&nodes).unwrap();
        let script = format!(
            "echo $$ > {cgroup}/cgroup.procs || exit 9; cd {nodes} || exit 9; \
             mknod kmsg c 1 11 && mknod null c 1 3 && echo made; \
             (echo x > kmsg) 2>/dev/null && echo written || echo refused; \
             echo x > null && echo null",
            cgroup = dir.display()
        );
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        let _ = std::fs::remove_dir(&dir);
        let _ = std::fs::remove_dir_all(&nodes);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout.lines().collect::<Vec<_>>(),
            ["made", "refused", "null"],
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
