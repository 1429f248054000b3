//! The control API's own shape of a service: what `POST /v1/services` takes
//! and what `service inspect` and `service update` answer. It is apart from
//! the stored `ServiceSpec`, so the JSON contract does not move when the
//! stored types do (a stored field appears here only when it is added
//! here), and it speaks as `service ls` does: lowercase words, durations
//! in milliseconds, omitted fields taking the CLI's defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::types::*;

/// A service spec, flat: one key per `service create` flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpecBody {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `replicated` (the default) or `global`.
    #[serde(default = "replicated")]
    pub mode: String,
    /// Replicated services only: how many tasks (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u64>,
    /// An image reference; normalized as docker does.
    pub image: String,
    /// Command and arguments. Empty: the image's entrypoint and cmd.
    #[serde(default)]
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs, in order.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub workdir: Option<String>,
    /// A user name or `uid[:gid]`.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default = "default_stop_grace_ms")]
    pub stop_grace_period_ms: u64,
    /// `any` (the default), `on-failure` or `none`.
    #[serde(default = "any")]
    pub restart_condition: String,
    #[serde(default = "default_restart_delay_ms")]
    pub restart_delay_ms: u64,
    /// Absent: unlimited.
    #[serde(default)]
    pub restart_max_attempts: Option<u64>,
    /// Placement constraints such as `node.labels.zone==a`.
    #[serde(default)]
    pub constraints: Vec<String>,
    /// `missing` (the default), `always` or `never`: when a node pulls the
    /// image.
    #[serde(default = "missing")]
    pub pull: String,
    /// The digest the tag was pinned to (answers only: a create or update
    /// resolves it, unless `no_resolve_image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The image's platforms as the registry listed them (answers only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_platforms: Vec<String>,
    /// Requests only: keep the tag, do not ask the registry for its digest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_resolve_image: bool,
    /// The networks the tasks join, by name or id (answers: by id).
    /// Empty: a network namespace of their own on the node's bridge.
    /// `["host"]`: the node's own network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    /// Ports published on the nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortBody>,
    /// How other tasks reach the service by name: `vip` (the default: its
    /// virtual IP) or `dnsrr` (its tasks' addresses).
    #[serde(default = "vip")]
    pub endpoint_mode: String,
}

fn vip() -> String {
    EndpointMode::Vip.as_str().into()
}

/// A published port as `--publish` gives it and `service inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBody {
    pub published: u16,
    pub target: u16,
    /// `tcp` (the default) or `udp`.
    #[serde(default = "tcp")]
    pub protocol: String,
    /// `ingress` (the default) or `host`.
    #[serde(default = "ingress")]
    pub mode: String,
}

fn tcp() -> String {
    "tcp".into()
}
fn ingress() -> String {
    "ingress".into()
}

impl PortBody {
    pub fn into_config(self) -> Result<PortConfig, ApiError> {
        let bad = |m: String| Err(ApiError::BadRequest(m));
        let Some(protocol) = Protocol::parse(&self.protocol) else {
            return bad(format!(
                "invalid protocol {:?}: expected tcp or udp",
                self.protocol
            ));
        };
        let Some(mode) = PublishMode::parse(&self.mode) else {
            return bad(format!(
                "invalid publish mode {:?}: expected ingress or host",
                self.mode
            ));
        };
        if self.published == 0 || self.target == 0 {
            return bad("a published port and its target are 1 to 65535".into());
        }
        Ok(PortConfig {
            protocol,
            target: self.target,
            published: self.published,
            mode,
        })
    }
}

impl From<&PortConfig> for PortBody {
    fn from(p: &PortConfig) -> PortBody {
        PortBody {
            published: p.published,
            target: p.target,
            protocol: p.protocol.as_str().into(),
            mode: p.mode.as_str().into(),
        }
    }
}

/// The name that asks for the node's own network.
pub const HOST_NETWORK: &str = "host";

fn missing() -> String {
    "missing".into()
}

fn replicated() -> String {
    "replicated".into()
}
fn any() -> String {
    "any".into()
}
fn default_stop_grace_ms() -> u64 {
    10_000
}
fn default_restart_delay_ms() -> u64 {
    RestartPolicy::default().delay_ms
}

/// A stored service, as `service inspect` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceBody {
    pub id: String,
    /// The store's version of the last write.
    pub version: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub spec: ServiceSpecBody,
    /// Bumped when the task spec changes (scaling alone does not).
    pub spec_version: u64,
    /// The spec before the last update, for rollback.
    pub previous_spec: Option<ServiceSpecBody>,
    /// What the user should know about the write that returned this,
    /// although it succeeded (an image no node has). Never stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Its virtual IP on each of its networks (network id and address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vips: Vec<Vip>,
}

impl ServiceSpecBody {
    /// The stored spec, or why this one is not one. Further checks
    /// (names, env, constraints) are `validate::service_spec`'s.
    pub fn into_spec(self) -> Result<ServiceSpec, ApiError> {
        let bad = |m: String| Err(ApiError::BadRequest(m));
        let mode = match (self.mode.as_str(), self.replicas) {
            ("replicated", n) => ServiceMode::Replicated {
                replicas: n.unwrap_or(1),
            },
            ("global", None) => ServiceMode::Global,
            ("global", Some(_)) => {
                return bad("replicas can only be set for a replicated service".into())
            }
            (other, _) => {
                return bad(format!(
                    "invalid mode {other:?}: expected \"replicated\" or \"global\""
                ))
            }
        };
        let condition = match self.restart_condition.as_str() {
            "any" => RestartCondition::Any,
            "on-failure" => RestartCondition::OnFailure,
            "none" => RestartCondition::None,
            other => {
                return bad(format!(
                "invalid restart condition {other:?}: expected \"any\", \"on-failure\" or \"none\""
            ))
            }
        };
        let pull: PullPolicy = self.pull.parse().map_err(ApiError::BadRequest)?;
        let endpoint_mode: EndpointMode =
            self.endpoint_mode.parse().map_err(ApiError::BadRequest)?;
        Ok(ServiceSpec {
            name: self.name,
            labels: self.labels,
            mode,
            endpoint_mode,
            task: TaskSpec {
                container: ContainerSpec {
                    image: self.image,
                    // Resolved by the handler, never taken from the client.
                    image_digest: None,
                    image_platforms: Vec::new(),
                    pull,
                    args: self.args,
                    env: self.env,
                    workdir: self.workdir,
                    user: self.user,
                    labels: BTreeMap::new(),
                    stop_signal: self.stop_signal,
                    stop_grace_period_ms: self.stop_grace_period_ms,
                },
                restart: RestartPolicy {
                    condition,
                    delay_ms: self.restart_delay_ms,
                    max_attempts: self.restart_max_attempts,
                },
                placement: Placement {
                    constraints: self.constraints,
                },
                network: network_mode(self.networks)?,
                ports: ports(self.ports)?,
            },
        })
    }
}

impl From<&ServiceSpec> for ServiceSpecBody {
    fn from(s: &ServiceSpec) -> ServiceSpecBody {
        let c = &s.task.container;
        let r = &s.task.restart;
        ServiceSpecBody {
            name: s.name.clone(),
            labels: s.labels.clone(),
            mode: s.mode.name().to_string(),
            replicas: match s.mode {
                ServiceMode::Replicated { replicas } => Some(replicas),
                ServiceMode::Global => None,
            },
            image: c.image.clone(),
            args: c.args.clone(),
            env: c.env.clone(),
            workdir: c.workdir.clone(),
            user: c.user.clone(),
            stop_signal: c.stop_signal.clone(),
            stop_grace_period_ms: c.stop_grace_period_ms,
            restart_condition: r.condition.as_str().to_string(),
            restart_delay_ms: r.delay_ms,
            restart_max_attempts: r.max_attempts,
            constraints: s.task.placement.constraints.clone(),
            pull: c.pull.as_str().to_string(),
            image_digest: c.image_digest.clone(),
            image_platforms: c.image_platforms.clone(),
            no_resolve_image: false,
            networks: match &s.task.network {
                NetworkMode::Host => vec![HOST_NETWORK.to_string()],
                NetworkMode::Own(_) => s.task.network.network_ids().map(String::from).collect(),
            },
            ports: s.task.ports.iter().map(PortBody::from).collect(),
            endpoint_mode: s.endpoint_mode.as_str().into(),
        }
    }
}

/// The published ports, each (protocol, port) once.
pub fn ports(list: Vec<PortBody>) -> Result<Vec<PortConfig>, ApiError> {
    let mut out: Vec<PortConfig> = Vec::new();
    for p in list {
        let p = p.into_config()?;
        if out
            .iter()
            .any(|o| o.published == p.published && o.protocol == p.protocol)
        {
            return Err(ApiError::BadRequest(format!(
                "port {}/{} is published twice",
                p.published,
                p.protocol.as_str()
            )));
        }
        out.push(p);
    }
    Ok(out)
}

/// The tasks' network mode as the request names it. The networks are
/// still names here; the handler resolves them to ids
/// (`services::resolve_networks`).
fn network_mode(names: Vec<String>) -> Result<NetworkMode, ApiError> {
    if names.iter().any(|n| n == HOST_NETWORK) {
        if names.len() > 1 {
            return Err(ApiError::BadRequest(
                "the host network cannot be combined with other networks".into(),
            ));
        }
        return Ok(NetworkMode::Host);
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut list = Vec::new();
    for n in names {
        if n.is_empty() {
            return Err(ApiError::BadRequest("a network name is empty".into()));
        }
        if !seen.insert(n.clone()) {
            return Err(ApiError::BadRequest(format!("network {n} is given twice")));
        }
        list.push(NetworkAttachment {
            network: n,
            aliases: Vec::new(),
        });
    }
    Ok(NetworkMode::Own(list))
}

impl From<&Service> for ServiceBody {
    fn from(s: &Service) -> ServiceBody {
        ServiceBody {
            id: s.id.clone(),
            version: s.meta.version,
            created_ms: s.meta.created_ms,
            updated_ms: s.meta.updated_ms,
            spec: (&s.spec).into(),
            spec_version: s.spec_version,
            previous_spec: s.previous_spec.as_ref().map(Into::into),
            warnings: Vec::new(),
            vips: s.vips.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(json: &str) -> Result<ServiceSpec, ApiError> {
        serde_json::from_str::<ServiceSpecBody>(json)
            .unwrap()
            .into_spec()
    }

    #[test]
    fn omitted_fields_take_the_cli_defaults() {
        let spec = minimal(r#"{"name":"web","image":"busybox"}"#).unwrap();
        assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 1 });
        assert_eq!(spec.task.restart, RestartPolicy::default());
        assert_eq!(spec.task.container.stop_grace_period_ms, 10_000);
    }

    #[test]
    fn a_spec_shows_as_it_was_given() {
        let body = ServiceSpecBody {
            name: "edge".into(),
            labels: BTreeMap::from([("team".into(), "a".into())]),
            mode: "global".into(),
            replicas: None,
            image: "docker.io/library/busybox:latest".into(),
            args: vec!["sleep".into(), "1".into()],
            env: vec!["A=1".into()],
            workdir: Some("/tmp".into()),
            user: Some("app".into()),
            stop_signal: Some("SIGINT".into()),
            stop_grace_period_ms: 2_000,
            restart_condition: "on-failure".into(),
            restart_delay_ms: 1_000,
            restart_max_attempts: Some(3),
            constraints: vec!["node.role==manager".into()],
            pull: "always".into(),
            image_digest: None,
            image_platforms: vec![],
            no_resolve_image: false,
            endpoint_mode: "dnsrr".into(),
            networks: vec!["host".into()],
            ports: vec![],
        };
        let spec = body.clone().into_spec().unwrap();
        assert_eq!(ServiceSpecBody::from(&spec), body);
        // The same words as `service ls`.
        let json = serde_json::to_string(&body).unwrap();
        assert!(json.contains(r#""mode":"global""#), "{json}");
        assert!(
            json.contains(r#""restart_condition":"on-failure""#),
            "{json}"
        );
    }

    #[test]
    fn bad_words_are_refused_without_naming_cli_flags() {
        for (json, want) in [
            (r#"{"name":"w","image":"b","mode":"both"}"#, "invalid mode"),
            (
                r#"{"name":"w","image":"b","mode":"global","replicas":2}"#,
                "replicated service",
            ),
            (
                r#"{"name":"w","image":"b","restart_condition":"sometimes"}"#,
                "invalid restart condition",
            ),
        ] {
            let err = minimal(json).unwrap_err().to_string();
            assert!(err.contains(want), "{json}: {err}");
            assert!(!err.contains("--"), "{json}: {err}");
        }
    }
}
