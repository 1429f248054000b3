//! Kernel parameters a task may set for itself (`--sysctl`): only those
//! the kernel keeps per namespace, as docker allows, so that a task never
//! changes its node.

/// Whether `key=value` may be set in a task's namespaces; `own_network`:
/// the task has a network namespace of its own (the `net.*` keys are
/// then its own, and not the node's).
pub fn check_sysctl(key: &str, value: &str, own_network: bool) -> Result<(), String> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let key_ok = !key.is_empty()
        && key.len() <= 128
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !key_ok {
        return Err(format!("invalid sysctl {key:?}"));
    }
    if value.len() > 256 || value.contains(['\0', '\n']) {
        return Err(format!(
            "invalid value for sysctl {key}: at most 256 bytes on one line"
        ));
    }
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        return Ok(());
    }
    if key.starts_with("net.") {
        return if own_network {
            Ok(())
        } else {
            Err(format!(
                "sysctl {key} would change the node's own network: net.* needs a network of the task's own (not host)"
            ))
        };
    }
    Err(format!(
        "sysctl {key} is not kept per container: only kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.* and net.* may be set"
    ))
}

#[cfg(test)]
mod tests {
    use super::check_sysctl;

    #[test]
    fn only_namespaced_sysctls_pass() {
        assert!(check_sysctl("kernel.shmmax", "4096", false).is_ok());
        assert!(check_sysctl("fs.mqueue.msg_max", "20", false).is_ok());
        assert!(check_sysctl("net.ipv4.ip_forward", "1", true).is_ok());
        let e = check_sysctl("net.ipv4.ip_forward", "1", false).unwrap_err();
        assert!(e.contains("node's own network"), "{e}");
        let e = check_sysctl("vm.swappiness", "1", true).unwrap_err();
        assert!(e.contains("not kept per container"), "{e}");
        assert!(check_sysctl("kernel.shmmax", "1\n2", false).is_err());
        assert!(check_sysctl("../x", "1", false).is_err());
    }
}
