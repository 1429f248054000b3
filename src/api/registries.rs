//! `registry login|logout|add|rm|ls`: how the cluster reaches registries,
//! kept in the cluster object (`Cluster.registries`, one entry per host,
//! sorted by host). The dispatcher sends each node the entries its tasks'
//! images need; listings never show a password or a CA.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ApiError, Ctx};
use crate::store::{Change, Object, StoreError};
use crate::types::RegistryAccess;

/// The most registries a cluster keeps (the cluster object is sent to
/// every manager, and read for every session message).
pub const MAX_REGISTRIES: usize = 64;
const MAX_HOST: usize = 253;
const MAX_USERNAME: usize = 256;
const MAX_PASSWORD: usize = 4096;
const MAX_CA_PEM: usize = 64 * 1024;
const MAX_MIRRORS: usize = 16;
/// A store write that lost a race with another is tried this many times.
const ATTEMPTS: usize = 3;

/// One registry as `registry ls` shows it: no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryRow {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub password_set: bool,
    pub insecure: bool,
    pub ca_set: bool,
    #[serde(default)]
    pub mirrors: Vec<String>,
}

impl From<&RegistryAccess> for RegistryRow {
    fn from(a: &RegistryAccess) -> Self {
        RegistryRow {
            host: a.host.clone(),
            username: a.username.clone(),
            password_set: a.password.is_some(),
            insecure: a.insecure,
            ca_set: a.ca_pem.is_some(),
            mirrors: a.mirrors.clone(),
        }
    }
}

/// `POST /v1/registries/login`.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    pub host: String,
    pub username: String,
    pub password: String,
}

/// Never prints the password.
impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("host", &self.host)
            .field("username", &self.username)
            .field("password", &"…")
            .finish()
    }
}

/// `POST /v1/registries/logout`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogoutRequest {
    pub host: String,
}

/// What `logout` left: the entry, without its credentials, when it still
/// has other settings; `None` when it was removed whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogoutReply {
    pub host: String,
    #[serde(default)]
    pub remaining: Option<RegistryRow>,
}

/// `POST /v1/registries`: add a registry or change its settings. A field
/// left out keeps its value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RegistrySettings {
    pub host: String,
    #[serde(default)]
    pub insecure: Option<bool>,
    /// PEM certificates; an empty string removes the CA.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// Replaces the mirrors; an empty list removes them.
    #[serde(default)]
    pub mirrors: Option<Vec<String>>,
}

/// Docker's names for Docker Hub, stored as the one image references use.
const DOCKER_HUB_NAMES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// A registry host as image references name it: `host[:port]`, lowercase
/// (references are), Docker Hub as `docker.io`.
pub fn normalize_host(host: &str) -> Result<String, ApiError> {
    let host = check_host(host, "registry host")?;
    if DOCKER_HUB_NAMES.contains(&host.as_str()) {
        return Ok("docker.io".into());
    }
    Ok(host)
}

/// `host[:port]`: no scheme, no path, no whitespace, at most 253 bytes;
/// returned lowercase.
fn check_host(host: &str, what: &str) -> Result<String, ApiError> {
    let bad = |why: &str| ApiError::BadRequest(format!("invalid {what} {host:?}: {why}"));
    if host.is_empty() {
        return Err(ApiError::BadRequest(format!("the {what} is empty")));
    }
    if host.len() > MAX_HOST {
        return Err(bad(&format!("longer than {MAX_HOST} characters")));
    }
    if host.contains("://") {
        return Err(bad("give host[:port] without a scheme (no https://)"));
    }
    if host.contains('/') {
        return Err(bad("give host[:port] without a path"));
    }
    if host.chars().any(char::is_whitespace) {
        return Err(bad("it contains whitespace"));
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-_:[]".contains(c))
    {
        return Err(bad(
            "a host has only letters, digits, '.', '-', '_', and ':' before a port",
        ));
    }
    if host.starts_with([':', '.', '-']) || host.ends_with([':', '.', '-']) {
        return Err(bad("give host[:port]"));
    }
    Ok(host.to_ascii_lowercase())
}

fn check_credentials(username: &str, password: &str) -> Result<(), ApiError> {
    if username.is_empty() {
        return Err(ApiError::BadRequest("the username is empty".into()));
    }
    if username.len() > MAX_USERNAME {
        return Err(ApiError::BadRequest(format!(
            "the username is longer than {MAX_USERNAME} characters"
        )));
    }
    // HTTP basic auth separates the username from the password by ':'.
    if username.contains(':') || username.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "the username must not contain ':' or control characters".into(),
        ));
    }
    if password.is_empty() {
        return Err(ApiError::BadRequest("the password is empty".into()));
    }
    if password.len() > MAX_PASSWORD {
        return Err(ApiError::BadRequest(format!(
            "the password is longer than {MAX_PASSWORD} characters"
        )));
    }
    Ok(())
}

/// One or more PEM certificates, and nothing else.
fn check_ca_pem(ca: &str) -> Result<(), ApiError> {
    if ca.len() > MAX_CA_PEM {
        return Err(ApiError::BadRequest(format!(
            "the registry CA is larger than {} KiB",
            MAX_CA_PEM / 1024
        )));
    }
    let blocks = pem::parse_many(ca)
        .map_err(|e| ApiError::BadRequest(format!("the registry CA is not valid PEM: {e}")))?;
    if blocks.is_empty() {
        return Err(ApiError::BadRequest(
            "the registry CA holds no PEM certificate".into(),
        ));
    }
    for (i, b) in blocks.iter().enumerate() {
        if b.tag() != "CERTIFICATE" {
            return Err(ApiError::BadRequest(format!(
                "the registry CA must hold only certificates, not a {:?} block",
                b.tag()
            )));
        }
        x509_parser::parse_x509_certificate(b.contents()).map_err(|e| {
            ApiError::BadRequest(format!(
                "certificate {} of the registry CA cannot be read: {e}",
                i + 1
            ))
        })?;
    }
    Ok(())
}

/// Whether an entry still says anything; an empty one is removed.
fn is_empty(a: &RegistryAccess) -> bool {
    a.username.is_none()
        && a.password.is_none()
        && !a.insecure
        && a.ca_pem.is_none()
        && a.mirrors.is_empty()
}

/// The entry for `host`, made (at its sorted place) if there is none.
fn entry<'a>(
    list: &'a mut Vec<RegistryAccess>,
    host: &str,
) -> Result<&'a mut RegistryAccess, ApiError> {
    let i = match list.binary_search_by(|a| a.host.as_str().cmp(host)) {
        Ok(i) => i,
        Err(i) => {
            if list.len() >= MAX_REGISTRIES {
                return Err(ApiError::BadRequest(format!(
                    "the cluster already has {MAX_REGISTRIES} registries, the most it keeps: remove one first (`shoal registry rm`)"
                )));
            }
            list.insert(
                i,
                RegistryAccess {
                    host: host.to_string(),
                    ..Default::default()
                },
            );
            i
        }
    };
    Ok(&mut list[i])
}

fn position(list: &[RegistryAccess], host: &str) -> Option<usize> {
    list.iter().position(|a| a.host == host)
}

/// Stores `username` and `password` for `host`, keeping its settings.
fn login(list: &mut Vec<RegistryAccess>, req: &LoginRequest) -> Result<RegistryRow, ApiError> {
    let host = normalize_host(&req.host)?;
    check_credentials(&req.username, &req.password)?;
    let a = entry(list, &host)?;
    a.username = Some(req.username.clone());
    a.password = Some(req.password.clone());
    Ok(RegistryRow::from(&*a))
}

/// Removes `host`'s credentials; the entry too if nothing else is set.
fn logout(list: &mut Vec<RegistryAccess>, host: &str) -> Result<LogoutReply, ApiError> {
    let host = normalize_host(host)?;
    let Some(i) = position(list, &host).filter(|&i| list[i].password.is_some()) else {
        return Err(ApiError::NotFound(format!(
            "no login stored for {host} (`shoal registry ls` lists them)"
        )));
    };
    let a = &mut list[i];
    a.username = None;
    a.password = None;
    let remaining = if is_empty(a) {
        list.remove(i);
        None
    } else {
        Some(RegistryRow::from(&list[i]))
    };
    Ok(LogoutReply { host, remaining })
}

/// Adds `req.host` or changes its settings.
fn set(list: &mut Vec<RegistryAccess>, req: &RegistrySettings) -> Result<RegistryRow, ApiError> {
    let host = normalize_host(&req.host)?;
    if req.insecure.is_none() && req.ca_pem.is_none() && req.mirrors.is_none() {
        return Err(ApiError::BadRequest(format!(
            "nothing to set for {host}: give insecure, a CA or mirrors"
        )));
    }
    let ca = match req.ca_pem.as_deref() {
        Some("") => Some(None),
        Some(pem) => {
            check_ca_pem(pem)?;
            Some(Some(pem.to_string()))
        }
        None => None,
    };
    let mirrors = match &req.mirrors {
        Some(ms) => {
            if ms.len() > MAX_MIRRORS {
                return Err(ApiError::BadRequest(format!(
                    "at most {MAX_MIRRORS} mirrors per registry"
                )));
            }
            let mut out: Vec<String> = Vec::new();
            for m in ms {
                let m = check_host(m, "mirror")?;
                if m == host {
                    return Err(ApiError::BadRequest(format!(
                        "{host} cannot be a mirror of itself"
                    )));
                }
                if !out.contains(&m) {
                    out.push(m);
                }
            }
            Some(out)
        }
        None => None,
    };
    let a = entry(list, &host)?;
    if let Some(on) = req.insecure {
        a.insecure = on;
    }
    if let Some(ca) = ca {
        a.ca_pem = ca;
    }
    if let Some(ms) = mirrors {
        a.mirrors = ms;
    }
    let row = RegistryRow::from(&*a);
    if is_empty(a) {
        list.retain(|a| a.host != host);
    }
    Ok(row)
}

/// Removes `host`'s entry.
fn remove(list: &mut Vec<RegistryAccess>, host: &str) -> Result<RegistryRow, ApiError> {
    let host = normalize_host(host)?;
    let i = position(list, &host).ok_or_else(|| {
        ApiError::NotFound(format!(
            "registry {host} is not known (`shoal registry ls` lists them)"
        ))
    })?;
    Ok(RegistryRow::from(&list.remove(i)))
}

/// Applies `change` to the cluster's registries and proposes the result,
/// again on a fresh read when another write got in first.
async fn modify<T>(
    ctx: &Ctx,
    change: impl Fn(&mut Vec<RegistryAccess>) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    ctx.identity()?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut cluster = ctx
            .store
            .read()?
            .cluster()?
            .ok_or_else(|| ApiError::Internal("no cluster object".into()))?;
        // Kept sorted and one per host, whatever wrote it before.
        cluster.registries.sort_by(|a, b| a.host.cmp(&b.host));
        cluster.registries.dedup_by(|a, b| a.host == b.host);
        let out = change(&mut cluster.registries)?;
        match ctx
            .proposer
            .propose(vec![Change::Update(Object::Cluster(cluster))])
            .await
        {
            Ok(_) => return Ok(out),
            Err(StoreError::Conflict { .. }) if attempt < ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `GET /v1/registries`.
pub async fn list(State(ctx): State<Arc<Ctx>>) -> Result<Json<Vec<RegistryRow>>, ApiError> {
    let cluster = ctx
        .read_current()
        .await?
        .cluster()?
        .ok_or_else(|| ApiError::Internal("no cluster object".into()))?;
    let mut rows: Vec<RegistryRow> = cluster.registries.iter().map(RegistryRow::from).collect();
    rows.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(Json(rows))
}

/// `POST /v1/registries/login`. The credentials are not tried against the
/// registry here.
pub async fn login_handler(
    State(ctx): State<Arc<Ctx>>,
    Json(req): Json<LoginRequest>,
) -> Result<Json<RegistryRow>, ApiError> {
    modify(&ctx, |list| login(list, &req)).await.map(Json)
}

/// `POST /v1/registries/logout`.
pub async fn logout_handler(
    State(ctx): State<Arc<Ctx>>,
    Json(req): Json<LogoutRequest>,
) -> Result<Json<LogoutReply>, ApiError> {
    modify(&ctx, |list| logout(list, &req.host)).await.map(Json)
}

/// `POST /v1/registries`.
pub async fn set_handler(
    State(ctx): State<Arc<Ctx>>,
    Json(req): Json<RegistrySettings>,
) -> Result<Json<RegistryRow>, ApiError> {
    modify(&ctx, |list| set(list, &req)).await.map(Json)
}

/// `DELETE /v1/registries/{host}`.
pub async fn remove_handler(
    State(ctx): State<Arc<Ctx>>,
    Path(host): Path<String>,
) -> Result<Json<RegistryRow>, ApiError> {
    modify(&ctx, |list| remove(list, &host)).await.map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login_req(host: &str) -> LoginRequest {
        LoginRequest {
            host: host.into(),
            username: "me".into(),
            password: "hunter2".into(),
        }
    }

    fn bad(r: Result<impl std::fmt::Debug, ApiError>) -> String {
        match r {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    fn ca() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["reg.example".into()]).unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn docker_hub_has_one_name_and_hosts_are_lowercase() {
        for h in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "Docker.IO",
        ] {
            assert_eq!(normalize_host(h).unwrap(), "docker.io", "{h}");
        }
        assert_eq!(
            normalize_host("Reg.Example:5000").unwrap(),
            "reg.example:5000"
        );
        assert_eq!(normalize_host("[::1]:5000").unwrap(), "[::1]:5000");
        assert_eq!(normalize_host("127.0.0.1:5000").unwrap(), "127.0.0.1:5000");
    }

    #[test]
    fn bad_hosts_are_refused_with_the_reason() {
        assert!(bad(normalize_host("")).contains("empty"));
        assert!(bad(normalize_host("https://reg.example")).contains("scheme"));
        assert!(bad(normalize_host("reg.example/team")).contains("path"));
        assert!(bad(normalize_host("reg example")).contains("whitespace"));
        assert!(bad(normalize_host("reg.example\n")).contains("whitespace"));
        assert!(bad(normalize_host(&"a".repeat(254))).contains("253"));
        assert!(normalize_host(&"a".repeat(253)).is_ok());
        bad(normalize_host("reg@example"));
        bad(normalize_host("reg.example:"));
    }

    #[test]
    fn credentials_are_checked() {
        let mut list = Vec::new();
        let mut r = login_req("reg.example");
        r.username = String::new();
        assert!(bad(login(&mut list, &r)).contains("username"));
        r.username = "u".repeat(257);
        assert!(bad(login(&mut list, &r)).contains("256"));
        r.username = "a:b".into();
        bad(login(&mut list, &r));
        r.username = "me".into();
        r.password = String::new();
        assert!(bad(login(&mut list, &r)).contains("password"));
        r.password = "p".repeat(4097);
        assert!(bad(login(&mut list, &r)).contains("4096"));
        r.password = "p".repeat(4096);
        login(&mut list, &r).unwrap();
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn login_keeps_settings_and_the_list_sorted() {
        let mut list = Vec::new();
        set(
            &mut list,
            &RegistrySettings {
                host: "reg.example:5000".into(),
                insecure: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
        login(&mut list, &login_req("zzz.example")).unwrap();
        login(&mut list, &login_req("index.docker.io")).unwrap();
        let row = login(&mut list, &login_req("reg.example:5000")).unwrap();
        assert!(row.insecure && row.password_set);
        assert_eq!(row.username.as_deref(), Some("me"));
        let hosts: Vec<&str> = list.iter().map(|a| a.host.as_str()).collect();
        assert_eq!(hosts, vec!["docker.io", "reg.example:5000", "zzz.example"]);
        assert_eq!(list[1].password.as_deref(), Some("hunter2"));
        // Logging in again replaces the credentials, in the same entry.
        let mut again = login_req("docker.io");
        again.password = "new".into();
        login(&mut list, &again).unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].password.as_deref(), Some("new"));
    }

    #[test]
    fn logout_removes_credentials_and_empty_entries() {
        let mut list = Vec::new();
        login(&mut list, &login_req("docker.io")).unwrap();
        login(&mut list, &login_req("reg.example")).unwrap();
        set(
            &mut list,
            &RegistrySettings {
                host: "reg.example".into(),
                mirrors: Some(vec!["Mirror.Example:5000".into()]),
                ..Default::default()
            },
        )
        .unwrap();
        let r = logout(&mut list, "registry-1.docker.io").unwrap();
        assert_eq!(r.host, "docker.io");
        assert!(r.remaining.is_none());
        let r = logout(&mut list, "reg.example").unwrap();
        let left = r.remaining.unwrap();
        assert!(!left.password_set && left.username.is_none());
        assert_eq!(left.mirrors, vec!["mirror.example:5000"]);
        assert_eq!(list.len(), 1);
        assert!(list[0].password.is_none());
        match logout(&mut list, "reg.example") {
            Err(ApiError::NotFound(m)) => assert!(m.contains("no login stored for reg.example")),
            other => panic!("expected not found, got {other:?}"),
        }
        assert!(matches!(
            logout(&mut list, "nowhere.example"),
            Err(ApiError::NotFound(_))
        ));
    }

    #[test]
    fn settings_are_checked_and_kept() {
        let mut list = Vec::new();
        let mut s = RegistrySettings {
            host: "reg.example".into(),
            ..Default::default()
        };
        assert!(bad(set(&mut list, &s)).contains("nothing to set"));
        s.ca_pem = Some("not pem".into());
        assert!(bad(set(&mut list, &s)).contains("PEM"));
        s.ca_pem =
            Some("-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n".into());
        assert!(bad(set(&mut list, &s)).contains("only certificates"));
        let ca = ca();
        s.ca_pem =
            Some("-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n".into());
        assert!(bad(set(&mut list, &s)).contains("cannot be read"));
        s.ca_pem = Some(format!("{ca}{}", "#".repeat(64 * 1024)));
        assert!(bad(set(&mut list, &s)).contains("64 KiB"));
        s.ca_pem = Some(format!("{ca}{ca}"));
        s.mirrors = Some(vec!["https://m.example".into()]);
        assert!(bad(set(&mut list, &s)).contains("scheme"));
        s.mirrors = Some(vec!["reg.example".into()]);
        assert!(bad(set(&mut list, &s)).contains("itself"));
        s.mirrors = Some(vec!["m.example".into(), "M.example".into()]);
        assert!(list.is_empty());
        let row = set(&mut list, &s).unwrap();
        assert!(row.ca_set && !row.insecure && !row.password_set);
        assert_eq!(row.mirrors, vec!["m.example"]);
        // A field left out keeps its value.
        let row = set(
            &mut list,
            &RegistrySettings {
                host: "reg.example".into(),
                insecure: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(row.ca_set && row.insecure);
        assert_eq!(row.mirrors, vec!["m.example"]);
        // Clearing everything removes the entry.
        set(
            &mut list,
            &RegistrySettings {
                host: "reg.example".into(),
                insecure: Some(false),
                ca_pem: Some(String::new()),
                mirrors: Some(Vec::new()),
            },
        )
        .unwrap();
        assert!(list.is_empty());
    }

    #[test]
    fn at_most_64_registries() {
        let mut list = Vec::new();
        for i in 0..MAX_REGISTRIES {
            login(&mut list, &login_req(&format!("r{i}.example"))).unwrap();
        }
        assert!(bad(login(&mut list, &login_req("one-more.example"))).contains("64"));
        // An entry that exists can still change.
        login(&mut list, &login_req("r3.example")).unwrap();
        remove(&mut list, "r3.example").unwrap();
        login(&mut list, &login_req("one-more.example")).unwrap();
        assert_eq!(list.len(), MAX_REGISTRIES);
        assert!(matches!(
            remove(&mut list, "r3.example"),
            Err(ApiError::NotFound(_))
        ));
    }

    #[test]
    fn listings_and_debug_show_no_secret() {
        let mut list = Vec::new();
        login(&mut list, &login_req("reg.example")).unwrap();
        let row = RegistryRow::from(&list[0]);
        let json = serde_json::to_string(&row).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(json.contains("\"password_set\":true"), "{json}");
        assert!(!format!("{:?}", login_req("reg.example")).contains("hunter2"));
    }
}
