//! The compose file's keys that shoal reads, as types: the merged, tidied
//! value is read into these with serde, so a wrong type or an unknown key
//! is refused with its key path. Keys read only to be warned about are
//! `IgnoredAny`. List-or-mapping keys are mappings already (`merge`).

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::scalar::{Bytes, External, FileMode, Flag, Int, Millis, Num, StrOr, StrOrList, Text};

/// A mapping of names to values written `KEY: VALUE` or `KEY=VALUE`,
/// where a `KEY` alone is null.
pub type Assigns = BTreeMap<String, Option<Text>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compose {
    pub services: Option<BTreeMap<String, Option<Service>>>,
    pub networks: Option<BTreeMap<String, Option<Network>>>,
    pub volumes: Option<BTreeMap<String, Option<Volume>>>,
    pub secrets: Option<BTreeMap<String, Option<FileDecl>>>,
    pub configs: Option<BTreeMap<String, Option<FileDecl>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub image: Option<String>,
    pub command: Option<StrOrList>,
    pub entrypoint: Option<StrOrList>,
    pub environment: Option<Assigns>,
    pub env_file: Option<Vec<StrOr<EnvFile>>>,
    pub labels: Option<Assigns>,
    pub healthcheck: Option<Healthcheck>,
    pub user: Option<Text>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub init: Option<Flag>,
    pub read_only: Option<Flag>,
    pub privileged: Option<Flag>,
    pub devices: Option<Vec<String>>,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    pub sysctls: Option<Assigns>,
    pub ulimits: Option<BTreeMap<String, StrOr<Ulimit>>>,
    pub group_add: Option<Vec<Text>>,
    pub stop_grace_period: Option<Millis>,
    pub stop_signal: Option<String>,
    pub pull_policy: Option<String>,
    pub tmpfs: Option<Vec<String>>,
    pub network_mode: Option<String>,
    pub networks: Option<BTreeMap<String, Option<ServiceNetwork>>>,
    pub ports: Option<Vec<StrOr<Port>>>,
    pub volumes: Option<Vec<StrOr<Mount>>>,
    pub secrets: Option<Vec<StrOr<FileRef>>>,
    pub configs: Option<Vec<StrOr<FileRef>>>,
    pub depends_on: Option<BTreeMap<String, Option<DependsOn>>>,
    pub deploy: Option<Deploy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvFile {
    pub path: String,
    pub required: Option<Flag>,
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    pub test: Option<StrOrList>,
    pub interval: Option<Millis>,
    pub timeout: Option<Millis>,
    pub start_period: Option<Millis>,
    pub start_interval: Option<IgnoredAny>,
    pub retries: Option<Int>,
    pub disable: Option<Flag>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ulimit {
    pub soft: Int,
    pub hard: Int,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetwork {
    pub aliases: Option<Vec<String>>,
    pub ipv4_address: Option<IgnoredAny>,
    pub ipv6_address: Option<IgnoredAny>,
    pub link_local_ips: Option<IgnoredAny>,
    pub mac_address: Option<IgnoredAny>,
    pub driver_opts: Option<IgnoredAny>,
    pub priority: Option<IgnoredAny>,
    pub gw_priority: Option<IgnoredAny>,
    pub interface_name: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub target: Int,
    /// A port (`8080`, `"8080"`) or a range (`"8080-8081"`).
    pub published: Option<Text>,
    pub protocol: Option<String>,
    pub mode: Option<String>,
    pub host_ip: Option<String>,
    pub name: Option<IgnoredAny>,
    pub app_protocol: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: String,
    pub source: Option<String>,
    pub target: String,
    pub read_only: Option<Flag>,
    pub tmpfs: Option<TmpfsOptions>,
    pub bind: Option<IgnoredAny>,
    pub volume: Option<IgnoredAny>,
    pub consistency: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmpfsOptions {
    pub size: Option<Bytes>,
    pub mode: Option<FileMode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    pub source: String,
    pub target: Option<String>,
    pub uid: Option<Text>,
    pub gid: Option<Text>,
    pub mode: Option<FileMode>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DependsOn {
    pub condition: Option<String>,
    pub restart: Option<IgnoredAny>,
    pub required: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    pub mode: Option<String>,
    pub replicas: Option<Int>,
    pub placement: Option<Placement>,
    pub resources: Option<Resources>,
    pub restart_policy: Option<RestartPolicy>,
    pub update_config: Option<Policy>,
    pub rollback_config: Option<Policy>,
    pub endpoint_mode: Option<String>,
    pub labels: Option<Assigns>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    pub constraints: Option<Vec<String>>,
    pub preferences: Option<Vec<Preference>>,
    pub max_replicas_per_node: Option<Int>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preference {
    pub spread: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub limits: Option<Limits>,
    pub reservations: Option<Reservations>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub cpus: Option<Num>,
    pub memory: Option<Bytes>,
    pub pids: Option<Int>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reservations {
    pub cpus: Option<Num>,
    pub memory: Option<Bytes>,
    pub devices: Option<IgnoredAny>,
    pub generic_resources: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    pub condition: Option<String>,
    pub delay: Option<Millis>,
    pub max_attempts: Option<Int>,
    pub window: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub parallelism: Option<Int>,
    pub delay: Option<Millis>,
    pub failure_action: Option<String>,
    pub monitor: Option<Millis>,
    pub max_failure_ratio: Option<Num>,
    pub order: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub driver: Option<String>,
    pub driver_opts: Option<BTreeMap<String, Text>>,
    pub attachable: Option<Flag>,
    pub labels: Option<Assigns>,
    pub ipam: Option<Ipam>,
    pub external: Option<External>,
    pub name: Option<String>,
    pub internal: Option<IgnoredAny>,
    pub enable_ipv6: Option<IgnoredAny>,
    pub enable_ipv4: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ipam {
    pub driver: Option<String>,
    pub config: Option<Vec<IpamConfig>>,
    pub options: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpamConfig {
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<IgnoredAny>,
    pub aux_addresses: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub driver: Option<String>,
    pub driver_opts: Option<IgnoredAny>,
    pub labels: Option<IgnoredAny>,
    pub external: Option<External>,
    pub name: Option<String>,
}

/// A top-level secret or config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDecl {
    pub file: Option<String>,
    pub environment: Option<String>,
    pub content: Option<String>,
    pub external: Option<External>,
    pub name: Option<String>,
    pub labels: Option<Assigns>,
    pub driver: Option<IgnoredAny>,
    pub driver_opts: Option<IgnoredAny>,
    pub template_driver: Option<IgnoredAny>,
}

/// The names of the keys of `fields` that are set, for warnings.
pub fn set_keys(fields: &[(&'static str, bool)]) -> Vec<&'static str> {
    fields
        .iter()
        .filter(|(_, set)| *set)
        .map(|(k, _)| *k)
        .collect()
}
