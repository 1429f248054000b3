//! A task's options beyond its image and command, as the API takes them:
//! `--device`, `--privileged`, `--group-add`, `--sysctl`, `--ulimit`,
//! `--init`, `--hostname` on create (`OptionsBody`, part of the service
//! spec's body) and their `-add`/`-rm` on update (`OptionsPatch`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::types::{ContainerSpec, Device, Ulimit};

/// The most devices, groups, sysctls or ulimits a service may list.
const MAX_EACH: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OptionsBody {
    /// `HOST[:CONTAINER][:rwm]`, as docker's `--device`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// Group names (from the image's /etc/group) or ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// `NAME=SOFT[:HARD]`, as docker's `--ulimit`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    /// A hostname, or a template (`{{.Node.Hostname}}-{{.Task.Slot}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

fn bad(m: String) -> ApiError {
    ApiError::BadRequest(m)
}

fn device(s: &str) -> Result<Device, ApiError> {
    s.parse().map_err(bad)
}

fn ulimit(s: &str) -> Result<Ulimit, ApiError> {
    s.parse().map_err(bad)
}

fn group(g: &str) -> Result<String, ApiError> {
    let ok = !g.is_empty()
        && g.len() <= 32
        && g.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if ok {
        Ok(g.to_string())
    } else {
        Err(bad(format!("invalid group {g:?}: a name or an id")))
    }
}

fn hostname(h: Option<String>) -> Result<Option<String>, ApiError> {
    match h.filter(|h| !h.is_empty()) {
        Some(h) => {
            crate::types::check_hostname(&h).map_err(bad)?;
            Ok(Some(h))
        }
        None => Ok(None),
    }
}

/// One device per container path, one ulimit per name: a later one
/// replaces an earlier.
fn add_device(list: &mut Vec<Device>, d: Device) {
    list.retain(|o| o.container != d.container);
    list.push(d);
}

fn add_ulimit(list: &mut Vec<Ulimit>, u: Ulimit) {
    list.retain(|o| o.name != u.name);
    list.push(u);
}

impl OptionsBody {
    /// Sets the options of `c` (checked one by one; `validate` checks them
    /// with the rest of the spec).
    pub fn apply(self, c: &mut ContainerSpec) -> Result<(), ApiError> {
        for d in &self.devices {
            add_device(&mut c.devices, device(d)?);
        }
        c.privileged = self.privileged;
        for g in &self.group_add {
            let g = group(g)?;
            if !c.group_add.contains(&g) {
                c.group_add.push(g);
            }
        }
        c.sysctls = self.sysctls;
        for u in &self.ulimits {
            add_ulimit(&mut c.ulimits, ulimit(u)?);
        }
        c.init = self.init;
        c.hostname = hostname(self.hostname)?;
        Ok(())
    }
}

impl From<&ContainerSpec> for OptionsBody {
    fn from(c: &ContainerSpec) -> Self {
        OptionsBody {
            devices: c.devices.iter().map(|d| d.to_string()).collect(),
            privileged: c.privileged,
            group_add: c.group_add.clone(),
            sysctls: c.sysctls.clone(),
            ulimits: c.ulimits.iter().map(|u| u.to_string()).collect(),
            init: c.init,
            hostname: c.hostname.clone(),
        }
    }
}

/// Changes to the options (`service update`): what to add and to remove,
/// and the flags to set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OptionsPatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_add: Vec<String>,
    /// By container path (or the host path it was given as).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_rm: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_rm: Vec<String>,
    /// `KEY=VALUE`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sysctl_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sysctl_rm: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimit_add: Vec<String>,
    /// By name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimit_rm: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// Empty: back to the task id's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

impl OptionsPatch {
    /// Edits `c`; removing what is not there is refused, with the reason.
    pub fn apply(&self, service: &str, c: &mut ContainerSpec) -> Result<(), ApiError> {
        let missing = |what: &str, x: &str| bad(format!("service {service} has no {what} {x}"));
        for d in &self.device_rm {
            let before = c.devices.len();
            c.devices.retain(|o| o.container != *d && o.host != *d);
            if c.devices.len() == before {
                return Err(missing("device", d));
            }
        }
        for d in &self.device_add {
            add_device(&mut c.devices, device(d)?);
        }
        if let Some(p) = self.privileged {
            c.privileged = p;
        }
        for g in &self.group_rm {
            if !c.group_add.contains(g) {
                return Err(missing("group", g));
            }
            c.group_add.retain(|o| o != g);
        }
        for g in &self.group_add {
            let g = group(g)?;
            if !c.group_add.contains(&g) {
                c.group_add.push(g);
            }
        }
        for k in &self.sysctl_rm {
            if c.sysctls.remove(k).is_none() {
                return Err(missing("sysctl", k));
            }
        }
        for kv in &self.sysctl_add {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| bad(format!("invalid sysctl {kv:?}: expected KEY=VALUE")))?;
            c.sysctls.insert(k.to_string(), v.to_string());
        }
        for name in &self.ulimit_rm {
            let before = c.ulimits.len();
            c.ulimits.retain(|u| u.name != name.to_ascii_lowercase());
            if c.ulimits.len() == before {
                return Err(missing("ulimit", name));
            }
        }
        for u in &self.ulimit_add {
            add_ulimit(&mut c.ulimits, ulimit(u)?);
        }
        if let Some(i) = self.init {
            c.init = i;
        }
        if let Some(h) = &self.hostname {
            c.hostname = hostname(Some(h.clone()))?;
        }
        Ok(())
    }
}

/// The options of `c` taken together: bounds, and sysctls that suit the
/// task's network (`own_network`: a namespace of its own).
pub fn check(c: &ContainerSpec, own_network: bool) -> Result<(), ApiError> {
    let counts = [
        ("devices", c.devices.len()),
        ("groups", c.group_add.len()),
        ("sysctls", c.sysctls.len()),
        ("ulimits", c.ulimits.len()),
    ];
    for (what, n) in counts {
        if n > MAX_EACH {
            return Err(bad(format!("{n} {what} are too many (at most {MAX_EACH})")));
        }
    }
    for (k, v) in &c.sysctls {
        crate::types::check_sysctl(k, v, own_network).map_err(bad)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_adds_and_removes_and_refuses_what_is_not_there() {
        let mut c = ContainerSpec::default();
        OptionsBody {
            devices: vec!["/dev/ttyUSB0".into()],
            ulimits: vec!["nofile=10:20".into()],
            sysctls: [("kernel.shmmax".to_string(), "1".to_string())].into(),
            hostname: Some("{{.Node.Hostname}}".into()),
            ..Default::default()
        }
        .apply(&mut c)
        .unwrap();
        let patch = OptionsPatch {
            device_rm: vec!["/dev/ttyUSB0".into()],
            device_add: vec!["/dev/gpiochip0:r".into()],
            ulimit_add: vec!["nofile=30".into()],
            sysctl_rm: vec!["kernel.shmmax".into()],
            group_add: vec!["dialout".into()],
            hostname: Some(String::new()),
            ..Default::default()
        };
        patch.apply("s", &mut c).unwrap();
        assert_eq!(c.devices.len(), 1);
        assert_eq!(c.devices[0].perms, "r");
        assert_eq!(c.ulimits.len(), 1);
        assert_eq!(c.ulimits[0].soft, 30);
        assert!(c.sysctls.is_empty() && c.hostname.is_none());
        assert_eq!(OptionsBody::from(&c).group_add, vec!["dialout"]);
        let gone = OptionsPatch {
            ulimit_rm: vec!["core".into()],
            ..Default::default()
        };
        let e = gone.apply("s", &mut c).unwrap_err().to_string();
        assert!(e.contains("has no ulimit core"), "{e}");
        let net = ContainerSpec {
            sysctls: [("net.core.somaxconn".to_string(), "1024".to_string())].into(),
            ..Default::default()
        };
        assert!(check(&net, true).is_ok() && check(&net, false).is_err());
    }
}
