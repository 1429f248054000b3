//! Stacks written in the tests, loaded through `load`: the conversion of
//! each key family, warnings, and errors in their words and places.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::api::spec::{FileRefBody, MountBody, PortBody};
use crate::api::stack_types::StackDeploy;
use crate::types::HealthCheck;

use super::tests::{map, strings};
use super::{load, Loaded, Source};

/// `text` as file `compose.yml` in `/srv/app`, with variables `env`.
fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Loaded, String> {
    load_in(Path::new("/srv/app"), text, env)
}

fn load_in(dir: &Path, text: &str, env: &[(&str, &str)]) -> Result<Loaded, String> {
    let sources = [Source {
        name: "compose.yml".into(),
        dir: dir.to_path_buf(),
        text: text.into(),
    }];
    load(&sources, "s", &map(env))
}

fn one(text: &str) -> crate::api::spec::ServiceSpecBody {
    let loaded = load_text(text, &[("HOME", "/home/me")]).unwrap();
    loaded.deploy.services[0].clone()
}

#[test]
fn container_keys() {
    let s = one(r#"
services:
  app:
    image: example/app
    entrypoint: /bin/sh -c
    command: ["echo", "it's $$HOME"]
    environment: {A: 1, B: true, C: 1.5}
    labels: [a=1, b]
    user: 1000
    working_dir: /work
    hostname: app-{{.Task.Slot}}
    init: true
    read_only: "true"
    privileged: yes
    devices: [/dev/ttyUSB0]
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    sysctls: [net.core.somaxconn=1024]
    ulimits:
      nproc: 65535
      nofile: {soft: 20000, hard: 40000}
    group_add: [dialout, 44]
    stop_grace_period: 1m30s
    stop_signal: SIGINT
    pull_policy: always
    tmpfs: /run:size=64m,mode=1770
"#);
    assert_eq!(s.entrypoint, Some(strings(&["/bin/sh", "-c"])));
    assert_eq!(s.args, strings(&["echo", "it's $HOME"]));
    assert_eq!(s.env, strings(&["A=1", "B=true", "C=1.5"]));
    assert_eq!(
        s.container_labels,
        map(&[("a", "1"), ("b", ""), ("com.docker.stack.namespace", "s")])
    );
    assert_eq!(s.user.as_deref(), Some("1000"));
    assert_eq!(s.workdir.as_deref(), Some("/work"));
    assert_eq!(s.options.hostname.as_deref(), Some("app-{{.Task.Slot}}"));
    assert!(s.options.init && s.read_only && s.options.privileged);
    assert_eq!(s.options.devices, strings(&["/dev/ttyUSB0"]));
    assert_eq!(
        (s.cap_add.clone(), s.cap_drop.clone()),
        (strings(&["NET_ADMIN"]), strings(&["ALL"]))
    );
    assert_eq!(s.options.sysctls, map(&[("net.core.somaxconn", "1024")]));
    assert_eq!(
        s.options.ulimits,
        strings(&["nofile=20000:40000", "nproc=65535:65535"])
    );
    assert_eq!(s.options.group_add, strings(&["dialout", "44"]));
    assert_eq!(s.stop_grace_period_ms, 90_000);
    assert_eq!(s.stop_signal.as_deref(), Some("SIGINT"));
    assert_eq!(s.pull, "always");
    assert_eq!(
        s.mounts,
        vec![MountBody {
            kind: "tmpfs".into(),
            source: String::new(),
            target: "/run".into(),
            readonly: false,
            tmpfs_size: 64 << 20,
            tmpfs_mode: Some(0o1770),
            volume_driver: None,
        }]
    );
}

#[test]
fn healthchecks() {
    let check = |h: &str| {
        one(&format!(
            "services:\n  a:\n    image: x\n    healthcheck: {h}\n"
        ))
        .healthcheck
    };
    assert_eq!(
        check("{test: [CMD, curl, -f, http://localhost], interval: 10s, timeout: 2s, start_period: 1m, retries: 5}"),
        Some(HealthCheck {
            test: strings(&["CMD", "curl", "-f", "http://localhost"]),
            interval_ms: 10_000,
            timeout_ms: 2_000,
            retries: 5,
            start_period_ms: 60_000,
        })
    );
    assert_eq!(
        check("{disable: true}"),
        Some(HealthCheck {
            test: strings(&["NONE"]),
            ..HealthCheck::default()
        })
    );
    let err = load_text(
        "services:\n  a:\n    image: x\n    healthcheck:\n      test: [curl]\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(
        err,
        "compose.yml:5: services.a.healthcheck.test: a test list starts with CMD, CMD-SHELL or NONE"
    );
}

#[test]
fn ports() {
    let loaded = load_text(
        r#"
services:
  a:
    image: x
    ports:
      - "80:8080"
      - "127.0.0.1:53:53/udp"
      - "9000-9001:90-91"
      - target: 443
        published: "8443"
        mode: host
      - {target: 22, published: 2222, protocol: tcp, name: ssh}
"#,
        &[],
    )
    .unwrap();
    let p = |published, target, protocol: &str, mode: &str| PortBody {
        published,
        target,
        protocol: protocol.into(),
        mode: mode.into(),
    };
    assert_eq!(
        loaded.deploy.services[0].ports,
        vec![
            p(80, 8080, "tcp", "ingress"),
            p(53, 53, "udp", "ingress"),
            p(9000, 90, "tcp", "ingress"),
            p(9001, 91, "tcp", "ingress"),
            p(8443, 443, "tcp", "host"),
            p(2222, 22, "tcp", "ingress"),
        ]
    );
    assert_eq!(
        loaded.warnings,
        strings(&[
            "ignoring ports.host_ip (services a): a port is published on every address of the nodes",
            "ignoring ports.name (services a): a port is its number",
        ])
    );
    for (port, want) in [
        (
            "'8000-8002:80-81'",
            "the published ports 8000-8002 and the targets 80-81 are not ranges of one length",
        ),
        (
            "'80:80/sctp'",
            "invalid protocol \"sctp\": expected tcp or udp",
        ),
        ("'0:80'", "invalid port \"0\": expected 1 to 65535"),
        (
            "{target: 80}",
            "port 80 has no published port: give one (shoal does not pick one)",
        ),
    ] {
        let err = load_text(
            &format!("services:\n  a:\n    image: x\n    ports:\n      - {port}\n"),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            err,
            format!("compose.yml:5: services.a.ports[0]: {want}"),
            "{port}"
        );
    }
}

#[test]
fn volumes_and_mounts() {
    let s = one(r#"
services:
  a:
    image: x
    volumes:
      - data:/data
      - logs:/logs:ro
      - ./conf:/conf:ro,z
      - ../shared:/shared
      - ~/cache:/cache
      - /etc/hosts:/etc/hosts:ro
      - {type: tmpfs, target: /tmp, tmpfs: {size: 1g, mode: 01777}}
      - {type: bind, source: ., target: /app, read_only: true}
volumes:
  data:
  logs: {external: true, name: central-logs}
"#);
    let m = |kind: &str, source: &str, target: &str, readonly| MountBody {
        kind: kind.into(),
        source: source.into(),
        target: target.into(),
        readonly,
        tmpfs_size: 0,
        tmpfs_mode: None,
        volume_driver: None,
    };
    let mut tmp = m("tmpfs", "", "/tmp", false);
    tmp.tmpfs_size = 1 << 30;
    tmp.tmpfs_mode = Some(0o1777);
    assert_eq!(
        s.mounts,
        vec![
            m("volume", "s_data", "/data", false),
            m("volume", "central-logs", "/logs", true),
            m("bind", "/srv/app/conf", "/conf", true),
            m("bind", "/srv/shared", "/shared", false),
            m("bind", "/home/me/cache", "/cache", false),
            m("bind", "/etc/hosts", "/etc/hosts", true),
            tmp,
            m("bind", "/srv/app", "/app", true),
        ]
    );
    let err = load_text(
        "services:\n  a:\n    image: x\n    volumes: [data:/data]\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(
        err,
        "compose.yml:4: services.a.volumes[0]: volume data is not declared in the top-level volumes"
    );
    let err = load_text(
        "services:\n  a:\n    image: x\n    volumes: [d:/d]\nvolumes:\n  d:\n    driver: nfs\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(
        err,
        "compose.yml:7: volumes.d.driver: volume driver nfs: shoal has only the local driver"
    );
}

#[test]
fn secrets_and_configs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), "CERT").unwrap();
    let loaded = load_in(
        dir.path(),
        r#"
services:
  a:
    image: x
    secrets:
      - db_pw
      - source: tls
        target: /etc/tls/cert.pem
        uid: "101"
        gid: "102"
        mode: 0440
      - ext
    configs:
      - conf
      - {source: motd, target: /etc/motd, mode: 0o644}
secrets:
  db_pw: {environment: DB_PW, labels: [kind=db]}
  tls: {file: ./cert.pem}
  ext: {external: true, name: shared_pw}
  unused: {file: ./not-there}
configs:
  conf: {content: "a = 1\n"}
  motd: {file: cert.pem, name: motd-v1}
"#,
        &[("DB_PW", "hunter2")],
    )
    .unwrap();
    let s = &loaded.deploy.services[0];
    let r = |source: &str, target: &str, uid, gid, mode| FileRefBody {
        source: source.into(),
        target: target.into(),
        uid,
        gid,
        mode,
        id: String::new(),
    };
    assert_eq!(
        s.secrets,
        vec![
            r("s_db_pw", "db_pw", 0, 0, 0o444),
            r("s_tls", "/etc/tls/cert.pem", 101, 102, 0o440),
            r("shared_pw", "ext", 0, 0, 0o444),
        ]
    );
    assert_eq!(
        s.configs,
        vec![
            r("s_conf", "/conf", 0, 0, 0o444),
            r("motd-v1", "/etc/motd", 0, 0, 0o644)
        ]
    );
    let d = &loaded.deploy;
    let files: Vec<(&str, bool, &str)> = d
        .secrets
        .iter()
        .chain(&d.configs)
        .map(|f| (f.name.as_str(), f.external, f.data.as_str()))
        .collect();
    assert_eq!(
        files,
        [
            ("s_db_pw", false, "aHVudGVyMg=="),
            ("s_tls", false, "Q0VSVA=="),
            ("shared_pw", true, ""),
            ("motd-v1", false, "Q0VSVA=="),
            ("s_conf", false, "YSA9IDEK"),
        ]
    );
    assert_eq!(
        d.secrets[0].labels,
        map(&[("com.docker.stack.namespace", "s"), ("kind", "db")])
    );
    let err = load_in(
        dir.path(),
        "services:\n  a:\n    image: x\n    secrets: [k]\nsecrets:\n  k:\n    file: ./missing\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(
        err,
        format!(
            "compose.yml:7: secrets.k.file: {}/missing: No such file or directory (os error 2)",
            dir.path().display()
        )
    );
    std::fs::write(dir.path().join("big"), vec![b'x'; (500 << 10) + 1]).unwrap();
    let err = load_in(
        dir.path(),
        "services:\n  a:\n    image: x\n    secrets: [k]\nsecrets:\n  k:\n    file: big\n",
        &[],
    )
    .unwrap_err();
    assert!(err.ends_with("/big: larger than 500 KiB"), "{err}");
}

#[test]
fn networks() {
    let loaded = load_text(
        r#"
services:
  web:
    image: x
    networks:
      front:
        aliases: [www]
        ipv4_address: 10.0.0.5
      outside:
  worker:
    image: x
  edge:
    image: x
    network_mode: host
networks:
  front:
    driver: overlay
    attachable: true
    driver_opts: {encrypted: "true"}
    labels: {team: web}
    ipam:
      config:
        - subnet: 10.20.0.0/24
          gateway: 10.20.0.1
    internal: true
  outside:
    external: true
    name: public
  unused: {}
"#,
        &[],
    )
    .unwrap();
    let d = &loaded.deploy;
    let by_name = |n: &str| d.services.iter().find(|s| s.name == n).unwrap();
    assert_eq!(by_name("s_web").networks, strings(&["s_front", "public"]));
    assert_eq!(
        by_name("s_web").network_aliases,
        BTreeMap::from([
            ("s_front".to_string(), strings(&["web", "www"])),
            ("public".to_string(), strings(&["web"])),
        ])
    );
    assert_eq!(by_name("s_worker").networks, strings(&["s_default"]));
    assert_eq!(by_name("s_edge").networks, strings(&["host"]));
    assert!(by_name("s_edge").network_aliases.is_empty());
    let nets: Vec<(&str, bool)> = d
        .networks
        .iter()
        .map(|n| (n.spec.name.as_str(), n.external))
        .collect();
    assert_eq!(
        nets,
        [("public", true), ("s_default", false), ("s_front", false)]
    );
    let front = &d.networks[2].spec;
    assert_eq!(front.driver, "overlay");
    assert!(front.attachable);
    assert_eq!(front.subnet.as_deref(), Some("10.20.0.0/24"));
    assert_eq!(front.gateway.as_deref(), Some("10.20.0.1"));
    assert_eq!(front.options, map(&[("encrypted", "true")]));
    assert_eq!(
        front.labels,
        map(&[("com.docker.stack.namespace", "s"), ("team", "web")])
    );
    assert_eq!(
        loaded.warnings,
        strings(&[
            "ignoring internal (networks front): shoal's networks do not have it",
            "ignoring networks.front.ipv4_address (services web): shoal gives each task its addresses",
        ])
    );
}

#[test]
fn env_files_and_variables() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.env"),
        "# settings\nA=from-file\nB=from-file\nFROM_ENV\n",
    )
    .unwrap();
    let s = load_in(
        dir.path(),
        r#"
services:
  a:
    image: x:${TAG:-1}
    env_file: [app.env, {path: missing.env, required: false}]
    environment:
      - B=${B_VALUE}
      - C
      - UNSET
    deploy:
      replicas: ${REPLICAS}
"#,
        &[
            ("B_VALUE", "mine"),
            ("C", "from-env"),
            ("FROM_ENV", "e"),
            ("REPLICAS", "4"),
        ],
    )
    .unwrap();
    let svc = &s.deploy.services[0];
    assert_eq!(svc.image, "x:1");
    assert_eq!(
        svc.env,
        strings(&["A=from-file", "B=mine", "C=from-env", "FROM_ENV=e"])
    );
    assert_eq!(svc.replicas, Some(4));
    let err = load_in(
        dir.path(),
        "services:\n  a:\n    image: x\n    env_file: nope.env\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(
        err,
        format!(
            "compose.yml:4: services.a.env_file[0]: {}/nope.env: No such file or directory (os error 2)",
            dir.path().display()
        )
    );
}

#[test]
fn ignored_keys_are_warned_once_for_all_services() {
    let loaded = load_text(
        "version: '3'\nservices:\n  api: {image: x, build: ., restart: always, x-note: 1}\n  web: {image: y, build: ., logging: {driver: json-file}}\nx-top: 1\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        loaded.warnings,
        strings(&[
            "ignoring build (services api, web): shoal runs images, it does not build them",
            "ignoring logging (services web): shoal keeps the tasks' logs (shoal service logs)",
            "ignoring restart (services api): use deploy.restart_policy",
        ])
    );
}

#[test]
fn unset_variables_are_warned_once() {
    let loaded = load_text(
        "services:\n  a:\n    image: x${NOPE}\n    labels: {l: $NOPE, m: '${ALSO}'}\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        loaded.warnings,
        strings(&[
            "The \"ALSO\" variable is not set. Defaulting to a blank string.",
            "The \"NOPE\" variable is not set. Defaulting to a blank string.",
        ])
    );
}

#[test]
fn errors_in_aliased_content_name_the_nearest_line() {
    let err = load_text(
        "x-d: &d\n  replicas: many\nservices:\n  a:\n    image: x\n    deploy: *d\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(
        err,
        "compose.yml:6: services.a.deploy.replicas: invalid type: string \"many\", expected u64"
    );
}

#[test]
fn names_and_bounds() {
    let err = load_text("services:\n  -bad:\n    image: x\n", &[]).unwrap_err();
    assert!(
        err.starts_with("compose.yml:2: services.-bad: invalid service name"),
        "{err}"
    );
    let long = "a".repeat(62);
    let err = load_text(&format!("services:\n  {long}:\n    image: x\n"), &[]).unwrap_err();
    assert!(err.ends_with("is longer than 63 characters"), "{err}");
    let err = load_text("services: {}\n", &[]).unwrap_err();
    assert_eq!(
        err,
        "compose.yml:1: no services: a stack needs at least one"
    );
    let many: String = (0..1001)
        .map(|i| format!("  s{i}: {{image: x}}\n"))
        .collect();
    let err = load_text(&format!("services:\n{many}"), &[]).unwrap_err();
    assert_eq!(
        err,
        "compose.yml:1: services: 1001 services: a stack has at most 1000"
    );
    let sources = [Source {
        name: "c.yml".into(),
        dir: PathBuf::from("/"),
        text: "services: {a: {image: x}}".into(),
    }];
    assert!(load(&sources, "bad name", &BTreeMap::new())
        .unwrap_err()
        .contains("invalid stack name"));
}

#[test]
fn output_is_in_name_order() {
    let loaded = load_text(
        "services:\n  zeta: {image: x, networks: [b, a]}\n  alpha: {image: x, networks: [a]}\nnetworks: {b: {}, a: {}}\n",
        &[],
    )
    .unwrap();
    let d: &StackDeploy = &loaded.deploy;
    let s: Vec<&str> = d.services.iter().map(|s| s.name.as_str()).collect();
    let n: Vec<&str> = d.networks.iter().map(|n| n.spec.name.as_str()).collect();
    assert_eq!(s, ["s_alpha", "s_zeta"]);
    assert_eq!(n, ["s_a", "s_b"]);
}

#[test]
fn aliases_of_aliases_are_refused_before_they_are_expanded() {
    let mut text = String::from("x-0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("x-{i}: &a{i} [{refs}]\n"));
    }
    text.push_str("services: {a: {image: x}}\n");
    assert_eq!(
        load_text(&text, &[]).unwrap_err(),
        "compose.yml: more than 1000000 values with its aliases expanded"
    );
}

#[test]
fn relative_paths_start_from_the_first_files_directory() {
    // As compose and `docker stack deploy` do: an override kept elsewhere
    // (here in ./env/prod) still names the project's files.
    let dir = tempfile::tempdir().unwrap();
    let prod = dir.path().join("env/prod");
    std::fs::create_dir_all(&prod).unwrap();
    std::fs::write(dir.path().join("key.txt"), "project").unwrap();
    std::fs::write(prod.join("key.txt"), "beside the override").unwrap();
    let sources = [
        Source {
            name: "compose.yml".into(),
            dir: dir.path().to_path_buf(),
            text: "services:\n  a: {image: x}\n".into(),
        },
        Source {
            name: "env/prod/compose.prod.yml".into(),
            dir: prod.clone(),
            text: "services:\n  a:\n    volumes: [./conf:/conf]\n    secrets: [key]\nsecrets:\n  key: {file: ./key.txt}\n".into(),
        },
    ];
    let loaded = load(&sources, "s", &BTreeMap::new()).unwrap();
    let conf = dir.path().join("conf");
    assert_eq!(
        loaded.deploy.services[0].mounts[0].source,
        conf.to_str().unwrap()
    );
    // base64 of "project"
    assert_eq!(loaded.deploy.secrets[0].data, "cHJvamVjdA==");
}

#[test]
fn external_name_of_compose_format_3_is_read_with_a_warning() {
    // Swarm stack files written for docker still use it.
    let loaded = load_text(
        r#"
services:
  web:
    image: x
    networks: [proxy]
    secrets: [cert]
networks:
  proxy:
    external:
      name: traefik-public
secrets:
  cert:
    external: {name: site-cert}
"#,
        &[],
    )
    .unwrap();
    let d = &loaded.deploy;
    assert_eq!(d.services[0].networks, strings(&["traefik-public"]));
    assert_eq!(d.services[0].secrets[0].source, "site-cert");
    assert!(d.networks[0].external && d.secrets[0].external);
    assert_eq!(
        loaded.warnings,
        strings(&[
            "networks.proxy: external.name is deprecated: write name: traefik-public and external: true",
            "secrets.cert: external.name is deprecated: write name: site-cert and external: true",
        ])
    );
    let err = load_text(
        "services:\n  a: {image: x, networks: [n]}\nnetworks:\n  n:\n    name: one\n    external: {name: two}\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(
        err,
        "compose.yml:6: networks.n.external.name: conflicts with name: one: give the name once, as name:"
    );
    let err = load_text(
        "services:\n  a: {image: x, networks: [n]}\nnetworks:\n  n:\n    external: {nmae: two}\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(
        err,
        "compose.yml:5: networks.n.external.nmae: unknown key (did you mean name?)"
    );
}
