//! Linux capabilities by name, and a task's set: docker's default set,
//! less what `--cap-drop` takes, plus what `--cap-add` gives.

/// Docker's default set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability of Linux 5.9 and later, in number order.
pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// `net_admin`, `NET_ADMIN` or `CAP_NET_ADMIN` as `CAP_NET_ADMIN`, `all`
/// as `ALL`; or why it is no capability.
pub fn normalize_cap(name: &str) -> Result<String, String> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPS.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(format!("unknown capability {name:?}"))
    }
}

/// The task's capabilities: the default set without `drop` (`ALL`: none
/// of it), then with `add` (`ALL`: every one), as docker computes them.
/// Both normalized.
pub fn task_caps(add: &[String], drop: &[String]) -> Vec<&'static str> {
    let mut caps: Vec<&'static str> = if drop.iter().any(|d| d == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS
            .iter()
            .copied()
            .filter(|c| !drop.iter().any(|d| d == c))
            .collect()
    };
    if add.iter().any(|a| a == "ALL") {
        return ALL_CAPS.to_vec();
    }
    for a in add {
        if let Some(c) = ALL_CAPS.iter().find(|c| **c == a.as_str()) {
            if !caps.contains(c) {
                caps.push(c);
            }
        }
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_the_default_less_drops_plus_adds() {
        assert_eq!(normalize_cap("net_admin").unwrap(), "CAP_NET_ADMIN");
        assert_eq!(normalize_cap("CAP_SYS_RAWIO").unwrap(), "CAP_SYS_RAWIO");
        assert!(normalize_cap("flying").is_err());
        assert_eq!(task_caps(&[], &[]).len(), DEFAULT_CAPS.len());
        let none = task_caps(&[], &["ALL".into()]);
        assert!(none.is_empty());
        let one = task_caps(&["CAP_SYS_RAWIO".into()], &["ALL".into()]);
        assert_eq!(one, vec!["CAP_SYS_RAWIO"]);
        let less = task_caps(&[], &["CAP_CHOWN".into()]);
        assert!(!less.contains(&"CAP_CHOWN") && less.len() == DEFAULT_CAPS.len() - 1);
        assert_eq!(task_caps(&["ALL".into()], &[]).len(), ALL_CAPS.len());
    }
}
