//! What `stack deploy` sends and what the managers answer. The CLI turns
//! compose files into this (`crate::compose`): every object already named
//! `STACK_NAME` and labelled `com.docker.stack.namespace=STACK`, so the
//! managers deal in plain services, networks, secrets and configs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::networks::NetworkCreate;
use super::spec::ServiceSpecBody;

/// The label that marks an object as a stack's, as docker's tools read it.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

/// A whole stack: what it should be after the deploy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StackDeploy {
    #[serde(default)]
    pub services: Vec<ServiceSpecBody>,
    #[serde(default)]
    pub networks: Vec<StackNetwork>,
    #[serde(default)]
    pub secrets: Vec<StackFile>,
    #[serde(default)]
    pub configs: Vec<StackFile>,
    /// Remove the stack's services that are not in `services`.
    #[serde(default)]
    pub prune: bool,
    /// Answer the plan, write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// When image tags are asked of their registries.
    #[serde(default)]
    pub resolve_image: ResolveImage,
}

/// When a deploy asks the registries what the files' image tags name
/// (docker's `stack deploy --resolve-image`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResolveImage {
    /// Every service's tag, each deploy: a tag pushed again since the
    /// last deploy rolls its services onto what it names now.
    #[default]
    Always,
    /// Only the tags of images that changed in the files.
    Changed,
    /// None: services run their tags as each node finds them.
    Never,
}

impl std::str::FromStr for ResolveImage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(ResolveImage::Always),
            "changed" => Ok(ResolveImage::Changed),
            "never" => Ok(ResolveImage::Never),
            _ => Err(format!("{s:?}: expected always, changed or never")),
        }
    }
}

/// A network the stack's services use: one it creates, or (`external`)
/// one that must exist already, of which only `name` counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackNetwork {
    #[serde(default)]
    pub external: bool,
    #[serde(flatten)]
    pub spec: NetworkCreate,
}

/// A secret or config: one the stack creates from `data` (base64), or
/// (`external`) one that must exist already.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackFile {
    pub name: String,
    #[serde(default)]
    pub external: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data: String,
}

/// The change set of a deploy, in the order it is applied.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StackPlan {
    pub changes: Vec<PlanChange>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanChange {
    /// `create`, `update`, `remove` or `unchanged`.
    pub action: String,
    /// `service`, `network`, `secret` or `config`.
    pub kind: String,
    pub name: String,
    /// Updates: the fields of the spec that differ (`image`, `replicas`,
    /// `env`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// A stack as `stack ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackRow {
    pub name: String,
    pub services: usize,
    /// `swarm`, as docker says of a stack of services.
    pub orchestrator: String,
}
