//! Readiness for systemd (`Type=notify`, see systemd/shoal.service).
//!
//! systemd hands a service the path of a unix datagram socket in
//! `$NOTIFY_SOCKET`; the service sends `READY=1` there once it serves, and
//! `STOPPING=1` when it begins to shut down. Without `$NOTIFY_SOCKET` (run
//! by hand, in tests, under another supervisor) every call is a no-op.
//!
//! The `sd-notify` crate does the sending. We call its plain `notify`, which
//! leaves `$NOTIFY_SOCKET` set: unsetting it would need `std::env::remove_var`,
//! which is unsound once the runtime's threads exist, and `STOPPING=1` needs
//! the variable later anyway. The daemon starts no children of its own that
//! could misuse it (containerd's shim starts the log driver, not us).
//!
//! Failures are logged, never returned: a missed notification makes systemd
//! time the start out and say so, which is the right place to see it.

use sd_notify::NotifyState;
use tracing::{debug, warn};

/// Tell systemd the daemon is up: the control socket accepts requests.
/// Call it once, after the socket is bound and the server is spawned.
pub fn ready() {
    send(&[NotifyState::Ready], "READY=1");
}

/// Tell systemd the daemon is shutting down, so `systemctl status` shows
/// "deactivating" while containers are left running and tasks stop.
pub fn stopping() {
    send(&[NotifyState::Stopping], "STOPPING=1");
}

fn send(states: &[NotifyState], what: &str) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    match sd_notify::notify(states) {
        Ok(()) => debug!(state = what, "notified systemd"),
        Err(e) => warn!(state = what, error = %e, "cannot notify systemd"),
    }
}

#[cfg(test)]
mod tests {
    // The environment is process-wide, so only the no-socket case is tested
    // here; tests/systemd.rs checks READY=1 against a real daemon.
    #[test]
    fn without_notify_socket_nothing_happens() {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            super::ready();
            super::stopping();
        }
    }
}
