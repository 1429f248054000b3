//! Devices of the node given to a task (`--device HOST[:CONTAINER][:rwm]`),
//! and the devices a node reports so that the scheduler places such a task
//! only where its device is.

use serde::{Deserialize, Serialize};

use super::mount::clean_path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The node's path: a character or block device, or a directory of
    /// them (`/dev/bus/usb`).
    pub host: String,
    /// Where it is in the container; the host path unless given.
    pub container: String,
    /// What the cgroup device rule lets the task do: a subset of `rwm`
    /// (read, write, mknod).
    pub perms: String,
}

/// The most devices a node reports: a /dev with more is cut (sorted, so
/// the same ones are kept every time) and said so in its log.
pub const MAX_REPORTED_DEVICES: usize = 4096;

fn is_perms(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 3
        && s.chars().all(|c| "rwm".contains(c))
        && s.chars().enumerate().all(|(i, c)| !s[..i].contains(c))
}

impl std::str::FromStr for Device {
    type Err = String;

    /// Docker's forms: `HOST`, `HOST:CONTAINER`, `HOST:PERMS`,
    /// `HOST:CONTAINER:PERMS`.
    fn from_str(s: &str) -> Result<Device, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (host, container, perms) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, p] if is_perms(p) => (*h, *h, *p),
            [h, c] => (*h, *c, "rwm"),
            [h, c, p] => (*h, *c, *p),
            _ => {
                return Err(format!(
                    "invalid device {s:?}: expected HOST[:CONTAINER][:rwm]"
                ))
            }
        };
        if !is_perms(perms) {
            return Err(format!(
                "invalid device permissions {perms:?} in {s:?}: a mix of r, w and m"
            ));
        }
        let host = clean_path(host).map_err(|e| format!("invalid device {s:?}: {e}"))?;
        let container = clean_path(container).map_err(|e| format!("invalid device {s:?}: {e}"))?;
        if container == "/dev" || host == "/" {
            return Err(format!("invalid device {s:?}: a device, not {host}"));
        }
        Ok(Device {
            host,
            container,
            perms: perms.to_string(),
        })
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.host, self.container, self.perms)
    }
}

/// Whether a node that reported `devices` has `host`: the device itself,
/// or a directory that holds some.
pub fn node_has_device(devices: &[String], host: &str) -> bool {
    devices.iter().any(|d| super::mount::path_under(d, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_s_forms() {
        let d: Device = "/dev/ttyUSB0".parse().unwrap();
        assert_eq!(d.to_string(), "/dev/ttyUSB0:/dev/ttyUSB0:rwm");
        let d: Device = "/dev/ttyUSB0:r".parse().unwrap();
        assert_eq!(d.to_string(), "/dev/ttyUSB0:/dev/ttyUSB0:r");
        let d: Device = "/dev/ttyUSB0:/dev/serial".parse().unwrap();
        assert_eq!(d.to_string(), "/dev/ttyUSB0:/dev/serial:rwm");
        let d: Device = "/dev/gpiochip0:/dev/gpio:rw".parse().unwrap();
        assert_eq!(
            (d.container.as_str(), d.perms.as_str()),
            ("/dev/gpio", "rw")
        );
        for bad in [
            "",
            "dev/x",
            "/dev/x:/y:rwx",
            "/dev/x:/y:rr",
            "/dev/../etc/x",
            "/a:/b:r:w",
            "/",
        ] {
            assert!(bad.parse::<Device>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn a_node_has_a_device_or_the_directory_of_it() {
        let on_node = vec!["/dev/bus/usb/001/002".to_string(), "/dev/ttyUSB0".into()];
        assert!(node_has_device(&on_node, "/dev/ttyUSB0"));
        assert!(node_has_device(&on_node, "/dev/bus/usb"));
        assert!(!node_has_device(&on_node, "/dev/ttyUSB1"));
        assert!(!node_has_device(&on_node, "/dev/ttyUSB"));
    }
}
