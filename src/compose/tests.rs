//! The compose reader as a whole: the files under tests/compose loaded
//! through `load_files`, errors compared whole (file, line, key, message).
//! `stack_tests` has stacks written in the tests, by key family.

use std::collections::BTreeMap;

use crate::api::spec::{DependsOnBody, FileRefBody, MountBody, PolicyBody, PortBody};
use crate::types::{HealthCheck, Resources};

use super::load_files;

fn fixture(rel: &str) -> String {
    format!("{}/tests/compose/{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// Each invalid file (or files, merged) and its whole error; `{}` is the
/// path of the file the error names.
const INVALID: &[(&[&str], &str)] = &[
    (
        &["syntax.yml"],
        "{}:6: did not find expected ',' or ']', while parsing a flow sequence at line 5 column 14",
    ),
    (
        &["unknown-key.yml"],
        "{}:4: services.web.imagee: unknown key (did you mean image?)",
    ),
    (
        &["deploy-type.yml"],
        "{}:8: services.web.deploy.update_config.parallelism: invalid type: string \"two\", expected u64",
    ),
    (
        &["undeclared-network.yml"],
        "{}:7: services.web.networks.front: network front is not declared in the top-level networks",
    ),
    (
        &["required-variable.yml"],
        "{}:7: services.db.environment.PASSWORD: required variable SHOAL_COMPOSE_TEST_UNSET_PASSWORD is missing a value: set it in the environment",
    ),
    (
        &["depends-unknown.yml"],
        "{}:8: services.web.depends_on.cache: service web depends on service cache, which the files do not define",
    ),
    (
        &["anonymous-volume.yml"],
        "{}:6: services.db.volumes[0]: anonymous volume /var/lib/postgresql/data: name it (NAME:/var/lib/postgresql/data) and declare NAME in the top-level volumes, so its data is found again",
    ),
    (
        &["bad-interpolation.yml"],
        "{}:6: services.web.labels.com.example.url: invalid interpolation format in \"http://${HOST NAME}/\": variables are $VAR or ${VAR} (with :-, -, :?, ?, :+ or +), and $$ is a literal $",
    ),
    (
        &["build-only.yml"],
        "{}:3: services.api: service api has no image (shoal does not build images)",
    ),
    (
        &["unpublished-port.yml"],
        "{}:7: services.web.ports[1]: port \"443\" has no published port: give one, as \"PUBLISHED:443\" (shoal does not pick one)",
    ),
    (
        &["bare-duration.yml"],
        "{}:5: services.web.stop_grace_period: invalid duration 30: a number needs a unit (s, ms, m, h), as 30s",
    ),
    (
        &["undeclared-secret.yml"],
        "{}:6: services.web.secrets[0]: secret tls_key is not declared in the top-level secrets",
    ),
    (
        &["cycle.yml"],
        "{}:5: services.a.depends_on: dependency cycle: a -> b -> c -> a",
    ),
    (
        &["network-mode.yml"],
        "{}:5: services.web.network_mode: network_mode service:db: shoal supports only host; put the service on the stack's networks with networks:",
    ),
    (
        &["bad-condition.yml"],
        "{}:7: services.web.depends_on.db.condition: invalid condition \"service_ready\": expected service_started, service_healthy, service_completed_successfully",
    ),
    (
        &["pair-base.yml", "pair-override.yml"],
        "{}:7: services.web.deploy.resources.limits.memory: invalid size \"lots\": expected a number of bytes, or with a unit, as 512M, 1.5G or 100k",
    ),
];

#[test]
fn invalid_files_fail_with_their_file_line_and_key() {
    for (files, want) in INVALID {
        let paths: Vec<String> = files
            .iter()
            .map(|f| fixture(&format!("invalid/{f}")))
            .collect();
        let err = match load_files(&paths, "shop") {
            Ok(_) => panic!("{files:?} loaded"),
            Err(e) => e,
        };
        let last = paths.last().map(String::as_str).unwrap_or_default();
        assert_eq!(err, want.replace("{}", last), "{files:?}");
    }
}

#[test]
fn every_invalid_file_is_tested() {
    let dir = fixture("invalid");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            INVALID
                .iter()
                .any(|(files, _)| files.contains(&name.as_str())),
            "{name} is not in INVALID"
        );
    }
}

#[test]
fn files_are_read_with_their_limits() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yml");
    std::fs::write(&big, format!("# {}\n", "x".repeat(1 << 20))).unwrap();
    let big = big.to_str().unwrap().to_string();
    assert_eq!(
        load_files(std::slice::from_ref(&big), "s").unwrap_err(),
        format!("{big}: larger than 1 MiB")
    );
    let none = format!("{}/none.yml", dir.path().display());
    assert_eq!(
        load_files(std::slice::from_ref(&none), "s").unwrap_err(),
        format!("{none}: No such file or directory (os error 2)")
    );
    let many: Vec<String> = (0..17).map(|_| none.clone()).collect();
    assert_eq!(
        load_files(&many, "s").unwrap_err(),
        "at most 16 compose files can be merged"
    );
}

pub(super) fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn merged_files_with_dot_env() {
    let base = fixture("merge/base.yml");
    let over = fixture("merge/override.yml");
    let loaded = load_files(&[base, over], "shop").unwrap();
    let d = &loaded.deploy;
    let names: Vec<&str> = d.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["shop_db", "shop_web"]);
    let (db, web) = (&d.services[0], &d.services[1]);

    assert_eq!(web.image, "example/web:1.2.3");
    // A command is replaced, a string split as a shell would.
    assert_eq!(web.args, strings(&["serve", "--port", "8080"]));
    // environment: mappings merged, the later value winning; the merge
    // key's content is there; MERGE_EXTRA is unset, so left out.
    assert_eq!(web.env, strings(&["LOG_LEVEL=debug", "REGION=eu-west"]));
    assert_eq!(
        web.container_labels,
        map(&[
            ("com.docker.stack.namespace", "shop"),
            ("com.example.team", "web")
        ])
    );
    // Ports appended, each once.
    let port = |published, target| PortBody {
        published,
        target,
        protocol: "tcp".into(),
        mode: "ingress".into(),
    };
    assert_eq!(web.ports, vec![port(8080, 80), port(8443, 443)]);
    // Networks merged as mappings; each service answers to its name.
    assert_eq!(web.networks, strings(&["shop_back", "shop_front"]));
    assert_eq!(
        web.network_aliases,
        BTreeMap::from([
            ("shop_back".to_string(), strings(&["web", "www"])),
            ("shop_front".to_string(), strings(&["web"])),
        ])
    );
    // Volumes merged by target: the later one replaces; a bind is made
    // absolute from the file's directory.
    let mount = |kind: &str, source: &str, target: &str, readonly| MountBody {
        kind: kind.into(),
        source: source.into(),
        target: target.into(),
        readonly,
        tmpfs_size: 0,
        tmpfs_mode: None,
        volume_driver: None,
    };
    assert_eq!(
        web.mounts,
        vec![
            mount("volume", "shared-cache", "/srv/static", false),
            mount("bind", &fixture("merge/conf"), "/etc/web", true),
        ]
    );
    assert_eq!(web.replicas, Some(3));
    assert_eq!(
        web.constraints,
        strings(&["node.role == worker", "node.labels.zone == a"])
    );
    assert_eq!(
        web.depends_on,
        vec![DependsOnBody {
            service: "shop_db".into(),
            condition: "service_healthy".into()
        }]
    );
    assert_eq!(
        web.secrets,
        vec![FileRefBody {
            source: "shop_api_key".into(),
            target: "api_key".into(),
            uid: 0,
            gid: 0,
            mode: 0o444,
            id: String::new(),
        }]
    );

    assert_eq!(
        db.env,
        strings(&["POSTGRES_DB=app", "POSTGRES_PASSWORD=s3cret"])
    );
    assert_eq!(
        db.healthcheck,
        Some(HealthCheck {
            test: strings(&["CMD-SHELL", "pg_isready -U postgres"]),
            interval_ms: 5_000,
            retries: 10,
            ..HealthCheck::default()
        })
    );
    assert_eq!(db.networks, strings(&["shop_back"]));

    let nets: Vec<(&str, bool)> = d
        .networks
        .iter()
        .map(|n| (n.spec.name.as_str(), n.external))
        .collect();
    assert_eq!(nets, [("shop_back", false), ("shop_front", false)]);
    assert_eq!(d.networks[0].spec.options, map(&[("encrypted", "true")]));
    assert_eq!(d.secrets.len(), 1);
    assert_eq!(d.secrets[0].name, "shop_api_key");
    assert_eq!(d.secrets[0].data, "YWJjMTIz"); // abc123
    assert!(d.configs.is_empty());
    assert!(!d.prune && !d.dry_run);
    // `- MERGE_EXTRA` is a name, not a variable reference: no warning.
    assert_eq!(loaded.warnings, Vec::<String>::new());
}

#[test]
fn every_deploy_key() {
    let loaded = load_files(&[fixture("deploy-all.yml")], "all").unwrap();
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let [s] = loaded.deploy.services.as_slice() else {
        panic!("one service")
    };
    assert_eq!(s.name, "all_worker");
    assert_eq!(s.image, "shoal-test/busybox:latest");
    assert_eq!(s.args, strings(&["sleep", "3600"]));
    assert_eq!(s.mode, "replicated");
    assert_eq!(s.replicas, Some(2));
    assert_eq!(s.endpoint_mode, "dnsrr");
    assert_eq!(
        s.labels,
        map(&[
            ("com.docker.stack.image", "shoal-test/busybox:latest"),
            ("com.docker.stack.namespace", "all"),
            ("com.example.owner", "ops"),
            ("com.example.tier", "backend"),
        ])
    );
    assert_eq!(
        s.constraints,
        strings(&["node.platform.os == linux", "node.labels.zone != c"])
    );
    assert_eq!(s.placement_prefs, strings(&["spread=node.labels.zone"]));
    assert_eq!(s.max_replicas_per_node, 2);
    assert_eq!(
        s.resources,
        Resources {
            limit_nano_cpus: 500_000_000,
            limit_memory_bytes: 64 << 20,
            limit_pids: 100,
            reserve_nano_cpus: 250_000_000,
            reserve_memory_bytes: 32 << 20,
        }
    );
    assert_eq!(s.restart_condition, "on-failure");
    assert_eq!(s.restart_delay_ms, 2_000);
    assert_eq!(s.restart_max_attempts, Some(4));
    assert_eq!(
        s.update,
        PolicyBody {
            parallelism: 2,
            delay_ms: 1_000,
            order: "start-first".into(),
            failure_action: "rollback".into(),
            monitor_ms: 15_000,
            max_failure_ratio: 0.25,
        }
    );
    assert_eq!(
        s.rollback,
        PolicyBody {
            parallelism: 3,
            delay_ms: 500,
            order: "stop-first".into(),
            failure_action: "continue".into(),
            monitor_ms: 5_000,
            max_failure_ratio: 0.5,
        }
    );
    // Each deploy value differs from the default `service create` gives.
    let default: crate::api::spec::ServiceSpecBody =
        serde_json::from_value(serde_json::json!({"name": "x", "image": "x"})).unwrap();
    assert_ne!(s.update, default.update);
    assert_ne!(s.rollback, default.rollback);
    assert_ne!(s.endpoint_mode, default.endpoint_mode);
    assert_ne!(s.restart_delay_ms, default.restart_delay_ms);
    // No ports, volumes or secrets; the default network, created.
    assert!(s.ports.is_empty() && s.mounts.is_empty() && s.secrets.is_empty());
    assert_eq!(s.networks, strings(&["all_default"]));
    let [n] = loaded.deploy.networks.as_slice() else {
        panic!("one network")
    };
    assert_eq!(n.spec.name, "all_default");
    assert_eq!(n.spec.driver, "overlay");
    assert_eq!(n.spec.labels, map(&[("com.docker.stack.namespace", "all")]));
}
