//! The seccomp filter of a task that is not privileged: the system calls
//! docker's default profile leaves out are refused here too (EPERM), with
//! the same exceptions for a task given the capability that makes one
//! legitimate (`mount` with SYS_ADMIN, `kcmp` with SYS_PTRACE, …); clone
//! with a namespace flag and clone3 as docker's, and AF_VSOCK sockets.
//!
//! It is written as a deny list over an allowing default rather than
//! docker's allow list: a call docker allows is never refused here, so no
//! image that runs under docker fails here, while every call docker keeps
//! from a container is refused. What differs: a system call newer than
//! this list is allowed, and `personality` is not narrowed to docker's
//! five values. runc skips a name the node's libseccomp does not know for
//! its architecture (`vm86` on arm64).

use serde_json::{json, Value};

/// Refused unless the task has one of the capabilities (none listed:
/// always refused).
const DENIED: &[(&[&str], &[&str])] = &[
    (
        &[],
        &[
            "add_key",
            "keyctl",
            "request_key",
            "kexec_load",
            "kexec_file_load",
            "pivot_root",
            "swapon",
            "swapoff",
            "userfaultfd",
            "move_pages",
            "get_kernel_syms",
            "create_module",
            "query_module",
            "nfsservctl",
            "uselib",
            "ustat",
            "sysfs",
            "_sysctl",
            "vm86",
            "vm86old",
        ],
    ),
    (
        &["CAP_SYS_ADMIN"],
        &[
            "mount",
            "umount",
            "umount2",
            "setns",
            "unshare",
            "quotactl",
            "quotactl_fd",
            "lookup_dcookie",
            "fanotify_init",
            "open_tree",
            "move_mount",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "mount_setattr",
            "sethostname",
            "setdomainname",
        ],
    ),
    (&["CAP_SYS_BOOT"], &["reboot"]),
    (
        &["CAP_SYS_MODULE"],
        &["init_module", "finit_module", "delete_module"],
    ),
    (
        &["CAP_SYS_PTRACE"],
        &["kcmp", "pidfd_getfd", "process_madvise"],
    ),
    (
        &["CAP_SYS_TIME"],
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    (&["CAP_SYS_RAWIO"], &["iopl", "ioperm"]),
    (&["CAP_SYS_PACCT"], &["acct"]),
    (
        &["CAP_SYS_NICE"],
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    (&["CAP_SYS_ADMIN", "CAP_SYSLOG"], &["syslog"]),
    (&["CAP_DAC_READ_SEARCH"], &["open_by_handle_at"]),
    (&["CAP_SYS_ADMIN", "CAP_BPF"], &["bpf"]),
    (&["CAP_SYS_ADMIN", "CAP_PERFMON"], &["perf_event_open"]),
    (&["CAP_SYS_CHROOT"], &["chroot"]),
    (&["CAP_SYS_TTY_CONFIG"], &["vhangup"]),
];

/// `socket(AF_VSOCK, …)`: talks to the hypervisor, never allowed.
const AF_VSOCK: u64 = 40;

/// The namespace flags of clone(2): a task without SYS_ADMIN makes no
/// namespace (docker's rule; the capability check alone would allow a
/// user namespace).
const CLONE_NEW: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The architectures a process of this node may call in: the native one
/// and those its kernel runs as well (32-bit x86 on x86_64, 32-bit ARM on
/// arm64), so that a 32-bit binary cannot go around the filter.
fn architectures() -> &'static [&'static str] {
    match std::env::consts::ARCH {
        "x86_64" => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "aarch64" => &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "arm" => &["SCMP_ARCH_ARM"],
        "x86" => &["SCMP_ARCH_X86"],
        _ => &[],
    }
}

/// The runtime spec's `linux.seccomp` for a task with capabilities `caps`.
pub(super) fn profile(caps: &[String]) -> Value {
    let has = |c: &str| caps.iter().any(|x| x == c);
    let mut denied: Vec<&str> = Vec::new();
    for (cap, names) in DENIED {
        if !cap.iter().any(|c| has(c)) {
            denied.extend(names.iter().copied());
        }
    }
    denied.sort_unstable();
    denied.dedup();
    let mut syscalls = vec![
        json!({"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}),
        json!({
            "names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
            "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_EQ"}],
        }),
    ];
    if !has("CAP_SYS_ADMIN") {
        for flag in CLONE_NEW {
            syscalls.push(json!({
                "names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            }));
        }
        // Its flags are in memory, out of the filter's sight: ENOSYS makes
        // the C library fall back to clone(2), which is checked.
        syscalls.push(json!({
            "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS,
        }));
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(),
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(p: &Value) -> Vec<String> {
        p["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn capabilities_lift_the_calls_they_make_legitimate() {
        let default: Vec<String> = crate::types::DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .collect();
        let p = profile(&default);
        let d = denied(&p);
        for call in ["mount", "kcmp", "keyctl", "reboot", "unshare", "bpf"] {
            assert!(
                d.contains(&call.to_string()),
                "{call} is refused by default"
            );
        }
        for call in ["read", "ptrace", "chroot", "adjtimex"] {
            assert!(!d.contains(&call.to_string()), "docker allows {call}");
        }
        // clone with a namespace flag, and clone3, are refused.
        assert!(p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["names"][0] == "clone3"));

        let mut more = default.clone();
        more.push("CAP_SYS_PTRACE".into());
        more.push("CAP_SYS_ADMIN".into());
        let p = profile(&more);
        let d = denied(&p);
        assert!(!d.contains(&"kcmp".to_string()) && !d.contains(&"mount".to_string()));
        assert!(d.contains(&"keyctl".to_string()), "never lifted");
        assert_eq!(p["syscalls"].as_array().unwrap().len(), 2, "clone is free");
    }
}
