//! Images from registries, end to end: real `docker-registry` processes on
//! loopback (plain, and TLS with htpasswd auth), filled with skopeo from
//! OCI layouts the tests build; a real shoal daemon pulls into a real
//! containerd, and containerd runs what was pulled.
//!
//! Needs root and containerd, Debian's docker-registry, skopeo,
//! apache2-utils and openssl (`bash tests/run` installs them), and the
//! arm64 busybox of `.ci/prepare-arm` for the multi-arch cases.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::harness::*;
use common::image::{self, Format, Options};
use common::registry::{busybox_for, Registry};
use serde_json::Value;

/// The busybox image as `name_tag`, in version `version` (a different
/// version is a different digest), `filler` bytes larger.
fn build(
    dir: &std::path::Path,
    name_tag: &str,
    version: &str,
    filler: usize,
) -> std::path::PathBuf {
    image::build(
        dir,
        &Options {
            version: Some(version.to_string()),
            filler,
            ..Options::new(name_tag, host_arch(), Format::Oci)
        },
    )
}

/// A daemon with a cluster and no image: what it runs, it pulls.
fn empty_cluster() -> Daemon {
    let d = Daemon::start();
    d.cli_ok(&["init"]);
    d
}

fn task_images(d: &Daemon, ids: &std::collections::BTreeSet<String>) -> Vec<String> {
    ids.iter()
        .map(|id| {
            d.ctr_container_info(id)["Image"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn layer_of(reg: &Registry, name_tag: &str) -> String {
    let m: Value = serde_json::from_slice(&reg.raw_manifest(name_tag)).expect("manifest JSON");
    m["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_string()
}

fn wait_task_state(d: &Daemon, service: &str, state: &str) -> Value {
    let mut found = None;
    let ok = wait_until(WAIT, || {
        found = d.ps(service).into_iter().find(|t| s(t, "state") == state);
        found.is_some()
    });
    assert!(ok, "no {state} task of {service}\n{}", d.describe(service));
    found.unwrap()
}

#[test]
fn a_service_pulls_its_image_pinned_to_the_digest_its_tag_had() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start_plain();
    let v1 = reg.push_archive(
        &build(tmp.path(), "team/web:1.4", "1", 1001),
        "team/web:1.4",
    );
    let d = empty_cluster();
    let image = format!("{}/team/web:1.4", reg.addr());

    let out = d.cli(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "3",
        "--stop-grace-period",
        "1s",
        &image,
        "sleep",
        "3600",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("warning"),
        "a reachable registry needs no warning: {}",
        stderr(&out)
    );
    let svc = d.cli_json(&["service", "inspect", "web"]);
    assert_eq!(
        svc["spec"]["image_digest"],
        Value::from(v1.clone()),
        "{svc}"
    );
    assert_eq!(svc["spec"]["image"], Value::from(image.clone()));
    let ids = d.wait_running("web", 3);
    let pinned = format!("{}/team/web@{v1}", reg.addr());
    assert_eq!(task_images(&d, &ids), vec![pinned.clone(); 3]);
    for t in d.ps("web") {
        assert_eq!(s(&t, "image"), format!("{image}@{v1}"), "{t}");
    }
    // Three tasks on one node shared one pull: each blob was served once.
    let layer = layer_of(&reg, "team/web:1.4");
    assert_eq!(
        reg.blob_gets().get(&layer),
        Some(&1),
        "{:?}",
        reg.blob_gets()
    );

    // The tag moves: new tasks still run the pinned digest.
    let v2 = reg.push_archive(
        &build(tmp.path(), "team/web:1.4", "2", 1001),
        "team/web:1.4",
    );
    assert_ne!(v1, v2);
    d.cli_ok(&["service", "scale", "web=5"]);
    let ids = d.wait_running("web", 5);
    assert_eq!(task_images(&d, &ids), vec![pinned; 5]);

    // An update names the tag again: it is resolved anew, and every task
    // moves to the new digest.
    d.cli_ok(&["service", "update", "--image", &image, "web"]);
    let want = format!("{}/team/web@{v2}", reg.addr());
    let ok = wait_until(WAIT, || {
        let ids = d.running("web");
        ids.len() == 5 && task_images(&d, &ids).iter().all(|i| *i == want)
    });
    assert!(ok, "tasks must move to {want}\n{}", d.describe("web"));
}

/// `stack deploy` asks the registry what each tag names now, as docker's
/// `--resolve-image always`: a tag pushed again since the last deploy
/// rolls the services that run it, and only those; `--resolve-image
/// changed` leaves them on the digest they run.
#[test]
fn a_stack_redeploy_rolls_the_services_whose_tag_was_pushed_again() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start_plain();
    let v1 = reg.push_archive(&build(tmp.path(), "team/app:1", "1", 1003), "team/app:1");
    reg.push_archive(&build(tmp.path(), "team/tool:1", "1", 1004), "team/tool:1");
    let d = empty_cluster();
    let file = tmp.path().join("compose.yml");
    let service = |name: &str, image: &str| {
        format!(
            "  {name}:\n    image: {}/{image}\n    command: [sleep, \"3600\"]\n    stop_grace_period: 1s\n",
            reg.addr()
        )
    };
    std::fs::write(
        &file,
        format!(
            "services:\n{}{}",
            service("app", "team/app:1"),
            service("tool", "team/tool:1")
        ),
    )
    .unwrap();
    // Two services and the stack's default network.
    let deploy = |extra: &[&str]| {
        let mut args = vec!["stack", "deploy", "-c", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push("s");
        d.cli_ok(&args)
    };
    deploy(&[]);
    let app = d.wait_running("s_app", 1);
    let tool = d.wait_running("s_tool", 1);
    let pinned = format!("{}/team/app@{v1}", reg.addr());
    assert_eq!(task_images(&d, &app), vec![pinned.clone()]);

    let v2 = reg.push_archive(&build(tmp.path(), "team/app:1", "2", 1003), "team/app:1");
    assert_ne!(v1, v2);
    let out = deploy(&["--resolve-image", "changed"]);
    assert!(
        out.contains("0 to create, 0 to update, 0 to remove, 3 unchanged"),
        "{out}"
    );
    let out = deploy(&["--dry-run"]);
    assert!(
        out.contains("~ service s_app (image digest)")
            && out.contains("0 to create, 1 to update, 0 to remove, 2 unchanged (dry run"),
        "{out}"
    );
    assert_eq!(task_images(&d, &d.running("s_app")), vec![pinned]);

    let out = deploy(&[]);
    assert!(out.contains("1 to update"), "{out}");
    let want = format!("{}/team/app@{v2}", reg.addr());
    let ok = wait_until(WAIT, || {
        let ids = d.running("s_app");
        ids.len() == 1 && ids != app && task_images(&d, &ids) == vec![want.clone()]
    });
    assert!(ok, "s_app must roll to {want}\n{}", d.describe("s_app"));
    assert_eq!(d.running("s_tool"), tool, "{}", d.describe("s_tool"));
    let out = deploy(&[]);
    assert!(
        out.contains("0 to create, 0 to update, 0 to remove, 3 unchanged"),
        "{out}"
    );
}

#[test]
fn no_resolve_image_keeps_the_tag_and_pull_never_refuses_to_pull() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start_plain();
    reg.push_archive(&build(tmp.path(), "team/tool:1", "1", 1002), "team/tool:1");
    let d = empty_cluster();
    let image = format!("{}/team/tool:1", reg.addr());

    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "never",
        "--pull",
        "never",
        "--restart-delay",
        "1s",
        &image,
        "sleep",
        "3600",
    ]);
    let t = wait_task_state(&d, "never", "rejected");
    assert!(
        s(&t, "error").contains("not found on node")
            && s(&t, "error").contains("pull policy: never"),
        "{t}"
    );
    let layer = layer_of(&reg, "team/tool:1");
    assert!(
        !reg.blob_gets().contains_key(&layer),
        "--pull never must not pull: {:?}",
        reg.blob_gets()
    );

    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "tagged",
        "--no-resolve-image",
        &image,
        "sleep",
        "3600",
    ]);
    let svc = d.cli_json(&["service", "inspect", "tagged"]);
    assert!(svc["spec"].get("image_digest").is_none(), "{svc}");
    let ids = d.wait_running("tagged", 1);
    assert_eq!(task_images(&d, &ids), vec![image.clone()]);
}

#[test]
fn image_pull_takes_this_nodes_platform_from_an_index_and_refuses_a_foreign_one() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start_plain();
    let index = reg.push_multiarch(tmp.path(), "multi:1", &[host_arch(), "arm64"]);
    let arm_only = image::build(
        tmp.path(),
        &Options {
            busybox: busybox_for("arm64"),
            ..Options::new("armonly:1", "arm64", Format::Oci)
        },
    );
    reg.push_archive(&arm_only, "armonly:1");
    let d = empty_cluster();
    let multi = format!("{}/multi:1", reg.addr());

    let out = d.cli_ok(&["image", "pull", &multi]);
    assert!(out.contains(&format!("Pulled {multi}")), "{out}");
    assert!(out.contains(&format!("linux/{}", host_arch())), "{out}");
    let images = d.cli_json(&["image", "ls"]);
    let listed = images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| s(i, "name") == multi)
        .unwrap_or_else(|| panic!("{multi} not listed: {images}"));
    assert_eq!(s(listed, "digest"), index);

    // Another platform on request; by digest as well.
    let out = d.cli_ok(&["image", "pull", "--platform", "linux/arm64", &multi]);
    assert!(out.contains("linux/arm64"), "{out}");
    let by_digest = format!("{}/multi@{index}", reg.addr());
    let out = d.cli_ok(&["image", "pull", &by_digest]);
    assert!(out.contains(&format!("Pulled {by_digest}")), "{out}");

    // A single-arch image of another arch is refused before it is run.
    let arm = format!("{}/armonly:1", reg.addr());
    let out = d.cli(&["image", "pull", &arm]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "is linux/arm64 and cannot run on linux/{}",
            host_arch()
        )),
        "{}",
        stderr(&out)
    );
    // …and a service of it is placed nowhere, saying why.
    d.cli_ok(&["service", "create", "--name", "arm", &arm, "sleep", "3600"]);
    let t = wait_task_state(&d, "arm", "pending");
    let want = format!(
        "no suitable node (1 node: image has no linux/{})",
        host_arch()
    );
    let ok = wait_until(WAIT, || d.ps("arm").iter().any(|t| s(t, "message") == want));
    assert!(ok, "expected {want:?}: {t}\n{}", d.describe("arm"));
    // A bad platform is a clear error.
    let out = d.cli(&["image", "pull", "--platform", "arm64", &multi]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("os/arch"), "{}", stderr(&out));
}

#[test]
fn a_private_registry_needs_its_ca_and_a_login() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start_tls_auth("shoal", "s3cret pw");
    reg.push_archive(&build(tmp.path(), "team/app:1", "1", 1003), "team/app:1");
    let d = empty_cluster();
    let image = format!("{}/team/app:1", reg.addr());
    let ca = reg.ca_pem_path().unwrap().to_str().unwrap().to_string();

    // Without the CA nor a login: created with a warning, tasks rejected.
    let out = d.cli(&[
        "service",
        "create",
        "--name",
        "app",
        "--restart-delay",
        "1s",
        &image,
        "sleep",
        "3600",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: no node has image"),
        "{}",
        stderr(&out)
    );
    let t = wait_task_state(&d, "app", "rejected");
    assert!(s(&t, "error").contains("pull failed"), "{t}");

    // The CA, and a wrong password: the registry's refusal is the reason.
    d.cli_ok(&["registry", "add", reg.addr(), "--registry-ca", &ca]);
    let login = |pw: &str| {
        let mut child = std::process::Command::new(SHOAL)
            .args(["--socket", d.socket.to_str().unwrap()])
            .args([
                "registry",
                "login",
                reg.addr(),
                "-u",
                "shoal",
                "--password-stdin",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(pw.as_bytes())
            .unwrap();
        let out = finish(child, WAIT);
        assert!(out.status.success(), "login: {}", stderr(&out));
    };
    login("wrong");
    d.cli_ok(&["service", "rm", "app"]);
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "app2",
        "--restart-delay",
        "1s",
        &image,
        "sleep",
        "3600",
    ]);
    let t = wait_task_state(&d, "app2", "rejected");
    let e = s(&t, "error").to_lowercase();
    assert!(
        ["unauthorized", "not authorized", "401", "authentication"]
            .iter()
            .any(|w| e.contains(w)),
        "{t}"
    );

    // The right one: the tag is pinned and the task runs.
    login("s3cret pw");
    let ls = d.cli_ok(&["registry", "ls"]);
    assert!(
        !ls.contains("s3cret"),
        "registry ls shows no password: {ls}"
    );
    d.cli_ok(&["service", "rm", "app2"]);
    let out = d.cli(&[
        "service", "create", "--name", "app3", &image, "sleep", "3600",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    let svc = d.cli_json(&["service", "inspect", "app3"]);
    assert_eq!(
        svc["spec"]["image_digest"],
        Value::from(reg.digest_of("team/app:1"))
    );
    d.wait_running("app3", 1);
    // The password reached no disk of the node's.
    let grep = std::process::Command::new("grep")
        .args(["-r", "-l", "s3cret pw"])
        .arg(&d.data_dir)
        .output()
        .unwrap();
    assert!(
        stdout(&grep).trim().is_empty(),
        "the password is in {}",
        stdout(&grep)
    );
}

/// A TCP proxy in front of the registry that passes its answers at a set
/// rate, counts them, and can cut every connection: a slow uplink that
/// goes down in the middle of a pull.
struct Proxy {
    addr: String,
    down: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(target: &str, bytes_per_sec: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let p = Proxy {
            addr,
            down: Arc::default(),
            bytes: Arc::default(),
            stop: Arc::default(),
        };
        let (down, bytes, stop, target) = (
            p.down.clone(),
            p.bytes.clone(),
            p.stop.clone(),
            target.to_string(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                if down.load(Ordering::SeqCst) {
                    continue; // dropped: the uplink is down
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let d1 = down.clone();
                std::thread::spawn(move || pipe(c2, s2, None, d1, None));
                let (d2, b2) = (down.clone(), bytes.clone());
                std::thread::spawn(move || pipe(server, client, Some(bytes_per_sec), d2, Some(b2)));
            }
        });
        p
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.down.store(true, Ordering::SeqCst);
    }
}

fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    rate: Option<u64>,
    down: Arc<AtomicBool>,
    count: Option<Arc<AtomicU64>>,
) {
    from.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if down.load(Ordering::SeqCst) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        if let Some(c) = &count {
            c.fetch_add(n as u64, Ordering::SeqCst);
        }
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[test]
fn a_pull_cut_off_midway_resumes_where_it_stopped() {
    const SIZE: usize = 8 * 1024 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start_plain();
    reg.push_archive(&build(tmp.path(), "big/app:1", "1", SIZE), "big/app:1");
    let layer = layer_of(&reg, "big/app:1");
    let proxy = Proxy::start(reg.addr(), 2 * 1024 * 1024);
    let d = empty_cluster();
    let image = format!("{}/big/app:1", proxy.addr);

    // The uplink goes down after 3 MiB of the 8.
    let child = d.cli_spawn(&["image", "pull", &image]);
    assert!(
        wait_until(WAIT, || proxy.bytes.load(Ordering::SeqCst)
            > 3 * 1024 * 1024),
        "the pull did not get going"
    );
    proxy.down.store(true, Ordering::SeqCst);
    let out = finish(child, WAIT);
    assert!(!out.status.success(), "a pull cut off must fail");
    let err = stderr(&out);
    assert!(err.contains(&layer) || err.contains("registry"), "{err}");
    // containerd keeps what arrived, under the pull's ref.
    let active = d.ctr_ok(&["content", "active"]);
    assert!(
        active.contains(&format!("shoal-pull-{layer}")),
        "the partial layer must be kept for a resume: {active}"
    );

    // Back up: the pull asks for the rest only.
    proxy.down.store(false, Ordering::SeqCst);
    let before = proxy.bytes.load(Ordering::SeqCst);
    let out = d.cli_ok(&["image", "pull", &image]);
    assert!(out.contains(&format!("Pulled {image}")), "{out}");
    let again = proxy.bytes.load(Ordering::SeqCst) - before;
    assert!(
        again < (SIZE as u64) - 2 * 1024 * 1024,
        "the resumed pull fetched {again} bytes of an {SIZE}-byte layer: it started over"
    );
    let log = std::fs::read_to_string(reg.access_log_path()).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains(&layer) && l.contains("\" 206 ")),
        "the registry must have served a range of the layer:\n{log}"
    );
    // What was pulled runs.
    d.cli_ok(&[
        "service", "create", "--name", "big", &image, "sleep", "3600",
    ]);
    d.wait_running("big", 1);
}

#[test]
fn a_mirror_serves_the_pull_when_the_registry_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let mut origin = Registry::start_plain();
    let mirror = Registry::start_plain();
    // A layer no other test builds: containerd keeps the blobs it has,
    // and a layer it has already is never fetched, from a mirror or not.
    let archive = build(tmp.path(), "team/api:2", "1", 1004);
    let digest = origin.push_archive(&archive, "team/api:2");
    assert_eq!(mirror.push_archive(&archive, "team/api:2"), digest);
    origin.stop();

    let d = empty_cluster();
    d.cli_ok(&["registry", "add", origin.addr(), "--mirror", mirror.addr()]);
    let image = format!("{}/team/api:2", origin.addr());
    let out = d.cli(&[
        "service",
        "create",
        "--name",
        "api",
        "--stop-grace-period",
        "1s",
        &image,
        "sleep",
        "3600",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let svc = d.cli_json(&["service", "inspect", "api"]);
    assert_eq!(
        svc["spec"]["image_digest"],
        Value::from(digest.clone()),
        "the tag is resolved through the mirror: {svc}"
    );
    d.wait_running("api", 1);
    let layer = layer_of(&mirror, "team/api:2");
    assert_eq!(
        mirror.blob_gets().get(&layer),
        Some(&1),
        "the mirror served the layer: {:?}",
        mirror.blob_gets()
    );
}
