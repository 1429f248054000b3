//! The flags of a task's options (`--device`, `--privileged`,
//! `--group-add`, `--sysctl`, `--ulimit`, `--init`, `--hostname`) on
//! `service create`, and their `-add`/`-rm` on `service update`. Checked
//! here for a quick answer; the managers check them again.

use clap::Args;

use crate::api::options::{OptionsBody, OptionsPatch};

fn device(s: &str) -> Result<String, String> {
    s.parse::<crate::types::Device>().map(|_| s.to_string())
}

fn ulimit(s: &str) -> Result<String, String> {
    s.parse::<crate::types::Ulimit>().map(|_| s.to_string())
}

fn sysctl(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((k, _)) if !k.is_empty() => Ok(s.to_string()),
        _ => Err(format!("invalid sysctl {s:?}: expected KEY=VALUE")),
    }
}

fn hostname(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    crate::types::check_hostname(s).map(|_| s.to_string())
}

#[derive(Args)]
pub struct CreateOptionFlags {
    /// A device of the node: HOST[:CONTAINER][:rwm], e.g. /dev/ttyUSB0 or
    /// /dev/gpiochip0:/dev/gpio:rw (repeatable). Tasks go only to nodes
    /// that have it.
    #[arg(long, value_parser = device)]
    device: Vec<String>,
    /// Every capability and device of the node, no seccomp filter (only
    /// where `cluster update --allow-privileged true` allows it).
    #[arg(long)]
    privileged: bool,
    /// A supplementary group, by name (from the image's /etc/group) or id
    /// (repeatable).
    #[arg(long)]
    group_add: Vec<String>,
    /// A namespaced kernel parameter KEY=VALUE, e.g. net.core.somaxconn=1024
    /// (repeatable).
    #[arg(long, value_parser = sysctl)]
    sysctl: Vec<String>,
    /// A resource limit NAME=SOFT[:HARD], e.g. nofile=1024:2048 (repeatable).
    #[arg(long, value_parser = ulimit)]
    ulimit: Vec<String>,
    /// Run an init (the node's tini) as PID 1: it reaps zombies and passes
    /// signals on.
    #[arg(long)]
    init: bool,
    /// The container's hostname; a template may use {{.Node.Hostname}},
    /// {{.Node.ID}}, {{.Service.Name}}, {{.Service.ID}}, {{.Task.Slot}},
    /// {{.Task.Name}}, {{.Task.ID}}.
    #[arg(long, value_parser = hostname)]
    hostname: Option<String>,
}

impl CreateOptionFlags {
    pub fn body(self) -> OptionsBody {
        OptionsBody {
            devices: self.device,
            privileged: self.privileged,
            group_add: self.group_add,
            sysctls: self
                .sysctl
                .iter()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ulimits: self.ulimit,
            init: self.init,
            hostname: self.hostname.filter(|h| !h.is_empty()),
        }
    }
}

#[derive(Args)]
pub struct UpdateOptionFlags {
    /// Add a device, as `create --device` (repeatable).
    #[arg(long, value_parser = device)]
    device_add: Vec<String>,
    /// Remove a device, by its path (repeatable).
    #[arg(long)]
    device_rm: Vec<String>,
    /// Privileged or not (--privileged=false).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    privileged: Option<bool>,
    /// Add a supplementary group (repeatable).
    #[arg(long)]
    group_add: Vec<String>,
    /// Remove a supplementary group (repeatable).
    #[arg(long)]
    group_rm: Vec<String>,
    /// Add or replace a sysctl KEY=VALUE (repeatable).
    #[arg(long, value_parser = sysctl)]
    sysctl_add: Vec<String>,
    /// Remove a sysctl by KEY (repeatable).
    #[arg(long)]
    sysctl_rm: Vec<String>,
    /// Add or replace a ulimit NAME=SOFT[:HARD] (repeatable).
    #[arg(long, value_parser = ulimit)]
    ulimit_add: Vec<String>,
    /// Remove a ulimit by NAME (repeatable).
    #[arg(long)]
    ulimit_rm: Vec<String>,
    /// An init as PID 1 or not (--init=false).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    init: Option<bool>,
    /// A new hostname or template ("" for the task id's start).
    #[arg(long, value_parser = hostname)]
    hostname: Option<String>,
}

impl UpdateOptionFlags {
    pub fn patch(self) -> OptionsPatch {
        OptionsPatch {
            device_add: self.device_add,
            device_rm: self.device_rm,
            privileged: self.privileged,
            group_add: self.group_add,
            group_rm: self.group_rm,
            sysctl_add: self.sysctl_add,
            sysctl_rm: self.sysctl_rm,
            ulimit_add: self.ulimit_add,
            ulimit_rm: self.ulimit_rm,
            init: self.init,
            hostname: self.hostname,
        }
    }
}
