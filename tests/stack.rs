//! Stacks on real containerd, on two nodes (loopback): a web + api + db
//! compose file (tests/compose/shop) deployed with one command. The db
//! runs on the worker, the api and web on the manager; the api starts
//! only once the db is healthy and the web once the api runs, as the
//! processes' start times show; services reach each other by their short
//! names on the networks they share and on no other; the published port
//! serves the config; the secret is in the api. Deploying again changes
//! nothing, a second file that changes one image rolls only that service,
//! `--dry-run` writes nothing, `--prune` removes what the files dropped,
//! and `stack rm` removes the rest in reverse start order. Also: a file
//! with every key of `deploy:` as `service inspect` shows it, a cycle
//! refused, an invalid file's error.
//!
//! Needs root and a running containerd (`bash .ci/start-containerd`).

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::Duration;

use common::harness::*;
use serde_json::Value;

fn shop(file: &str) -> String {
    format!("{}/tests/compose/shop/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// `shoal stack …` with `WEB_PORT` in its environment, as a user's shell
/// would have it.
fn stack(d: &Daemon, port: u16, args: &[&str]) -> Output {
    run(Command::new(SHOAL)
        .env_remove("SHOAL_SOCKET")
        .env("WEB_PORT", port.to_string())
        .args(["--socket", d.socket.to_str().unwrap(), "stack"])
        .args(args))
}

fn stack_ok(d: &Daemon, port: u16, args: &[&str]) -> String {
    let out = stack(d, port, args);
    assert!(
        out.status.success(),
        "stack {args:?}: {}\n{}",
        stderr(&out),
        stdout(&out)
    );
    stdout(&out)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The stack's tasks, as `stack ps --format json` lists them.
fn tasks(d: &Daemon) -> Vec<Value> {
    match d.cli_json(&["stack", "ps", "shop"]) {
        Value::Array(v) => v,
        other => panic!("stack ps: {other}"),
    }
}

/// Ids of the running tasks, by service.
fn running(d: &Daemon) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in tasks(d) {
        if s(&t, "state") == "running" && s(&t, "desired_state") == "running" {
            out.entry(s(&t, "service").to_string())
                .or_default()
                .push(s(&t, "id").to_string());
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

fn counts(d: &Daemon) -> Vec<(String, usize)> {
    running(d).into_iter().map(|(k, v)| (k, v.len())).collect()
}

fn full() -> Vec<(String, usize)> {
    vec![
        ("shop_api".into(), 1),
        ("shop_db".into(), 1),
        ("shop_web".into(), 2),
    ]
}

/// When the process of a service's running task started, in clock ticks
/// since boot (field 22 of /proc/PID/stat): both nodes share this kernel.
fn started(nodes: &[&Daemon], service: &str) -> u64 {
    let t = tasks(nodes[0])
        .into_iter()
        .find(|t| s(t, "service") == service && s(t, "state") == "running")
        .unwrap_or_else(|| panic!("no running task of {service}"));
    let container = s(&t, "container_id").to_string();
    let pid = nodes
        .iter()
        .find_map(|n| n.running_pids().get(&container).copied())
        .unwrap_or_else(|| panic!("no process for {service}'s container {container}"));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command may hold spaces and parentheses: count after the last ')'.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(19).unwrap().parse().unwrap()
}

fn ticks_per_second() -> u64 {
    let out = run(Command::new("getconf").arg("CLK_TCK"));
    stdout(&out).trim().parse().unwrap_or(100)
}

/// `GET /` from `host:port`, in the first task of `service`, through
/// busybox's nc (its static wget crashes on some hosts).
fn fetch_in(d: &Daemon, service: &str, host: &str, port: u16) -> Output {
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 {host} {port}");
    d.cli(&["exec", &format!("{service}.1"), "sh", "-c", &script])
}

fn http_get(port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    let t = Duration::from_secs(3);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = std::net::TcpStream::connect_timeout(&addr, t).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(t)).map_err(|e| e.to_string())?;
    c.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut all = String::new();
    c.read_to_string(&mut all).map_err(|e| e.to_string())?;
    Ok(all)
}

#[test]
fn a_compose_stack_deploys_in_order_redeploys_nothing_rolls_one_service_and_goes() {
    let manager = Daemon::cluster();
    manager.load_image("busybox:v2");
    let worker = Daemon::start();
    worker.load_image("busybox");
    let _ = worker.join_as_worker(&manager);
    let port = free_port();
    let nodes = [&manager, &worker];

    // Deploy: everything is created, named STACK_NAME and labelled.
    let out = stack_ok(
        &manager,
        port,
        &["deploy", "-c", &shop("compose.yml"), "shop"],
    );
    for line in [
        "+ network shop_back",
        "+ network shop_front",
        "+ secret shop_db_password",
        "+ config shop_web_index",
        "+ service shop_api",
        "+ service shop_db",
        "+ service shop_web",
        "stack shop: 7 to create, 0 to update, 0 to remove, 0 unchanged",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    let db = manager.cli_json(&["service", "inspect", "shop_db"]);
    assert_eq!(
        db["spec"]["labels"]["com.docker.stack.namespace"], "shop",
        "{db}"
    );
    let ls = manager.cli_ok(&["stack", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["shop", "3", "swarm"]),
        "{ls}"
    );
    assert!(
        wait_until(Duration::from_secs(90), || counts(&manager) == full()),
        "the stack never ran in full: {:?}\n{:#?}",
        counts(&manager),
        tasks(&manager)
            .iter()
            .map(|t| format!(
                "{} {} {} {}",
                s(t, "name"),
                s(t, "node_id"),
                s(t, "state"),
                t["error"]
            ))
            .collect::<Vec<_>>()
    );

    // Start order, from the processes' start times: the api started once
    // the db was healthy (3 s after it started), the web after the api.
    let hz = ticks_per_second();
    let (db_at, api_at, web_at) = (
        started(&nodes, "shop_db"),
        started(&nodes, "shop_api"),
        started(&nodes, "shop_web"),
    );
    assert!(
        api_at >= db_at + 3 * hz,
        "the api started {} ticks after the db, before it could be healthy ({hz} ticks/s)",
        api_at as i64 - db_at as i64
    );
    assert!(web_at >= api_at, "the web started before the api");
    // The db is on the worker, the api on the manager: the wait is
    // cluster-wide.
    let db_task = tasks(&manager)
        .into_iter()
        .find(|t| s(t, "service") == "shop_db")
        .unwrap();
    let on_worker = manager
        .nodes()
        .into_iter()
        .find(|n| s(n, "role") == "worker")
        .unwrap();
    assert_eq!(s(&db_task, "node"), s(&on_worker, "hostname"));

    // Short names on shared networks only; the secret; the published
    // config.
    // (The overlay between the nodes may take a moment to carry traffic.)
    for (from, host, port, want) in [
        ("shop_api", "db", 8082, "\r\n\r\ndb-ok\n"),
        ("shop_web", "api", 8081, "\r\n\r\napi-ok\n"),
    ] {
        let mut last = None;
        assert!(
            wait_until(WAIT, || {
                let out = fetch_in(&manager, from, host, port);
                let ok = stdout(&out).ends_with(want);
                last = Some(out);
                ok
            }),
            "{from} never fetched {host}:{port}: {:?}",
            last
        );
    }
    let out = fetch_in(&manager, "shop_web", "db", 8082);
    assert!(
        stderr(&out).contains("bad address 'db'"),
        "the web tier found the db: {} {}",
        stdout(&out),
        stderr(&out)
    );
    let out = manager.cli(&["exec", "shop_api.1", "cat", "/run/secrets/db_password"]);
    assert_eq!(stdout(&out), "correct-horse-battery\n", "{}", stderr(&out));
    let out = manager.cli(&["exec", "shop_api.1", "sh", "-c", "echo $DB_HOST"]);
    assert_eq!(stdout(&out), "db\n");
    assert!(
        wait_until(WAIT, || http_get(port)
            .is_ok_and(|b| b.contains("<h1>shop</h1>"))),
        "port {port} does not serve the config: {:?}",
        http_get(port)
    );
    let volumes = manager.cli_ok(&["volume", "ls"]);
    assert!(volumes.contains("shop_dbdata"), "{volumes}");

    // The same file again: nothing changes, no task is replaced.
    let before = running(&manager);
    let out = stack_ok(
        &manager,
        port,
        &["deploy", "-c", &shop("compose.yml"), "shop"],
    );
    assert!(
        out.contains("stack shop: 0 to create, 0 to update, 0 to remove, 7 unchanged"),
        "{out}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(running(&manager), before);

    // A second file changes the api's image: the plan says so and writes
    // nothing; the deploy rolls the api only.
    let files = ["-c", &shop("compose.yml"), "-c", &shop("api-v2.yml")];
    let mut args = vec!["deploy", "--dry-run"];
    args.extend_from_slice(&files);
    args.push("shop");
    let out = stack_ok(&manager, port, &args);
    assert!(
        out.contains("~ service shop_api (image, labels.com.docker.stack.image)"),
        "{out}"
    );
    assert!(
        out.contains("stack shop: 0 to create, 1 to update, 0 to remove, 6 unchanged (dry run"),
        "{out}"
    );
    let api = manager.cli_json(&["service", "inspect", "shop_api"]);
    assert_eq!(api["spec"]["image"], "docker.io/library/busybox:latest");
    args.remove(1);
    stack_ok(&manager, port, &args);
    let api = manager.cli_json(&["service", "inspect", "shop_api"]);
    assert_eq!(api["spec"]["image"], "docker.io/library/busybox:v2");
    assert!(
        wait_until(WAIT, || {
            let now = running(&manager);
            now.get("shop_api")
                .is_some_and(|a| a.len() == 1 && *a != before["shop_api"])
        }),
        "the api was not replaced: {:?}",
        running(&manager)
    );
    let now = running(&manager);
    assert_eq!(now["shop_db"], before["shop_db"]);
    assert_eq!(now["shop_web"], before["shop_web"]);

    // --prune: the web tier, gone from the file, goes.
    let out = stack_ok(
        &manager,
        port,
        &["deploy", "--prune", "-c", &shop("no-web.yml"), "shop"],
    );
    assert!(out.contains("- service shop_web"), "{out}");
    assert!(
        out.contains("~ service shop_api (image, labels.com.docker.stack.image)"),
        "{out}"
    );
    assert!(
        wait_until(WAIT, || !running(&manager).contains_key("shop_web")),
        "{:?}",
        running(&manager)
    );
    let svcs = manager.cli_ok(&["stack", "services", "shop"]);
    assert!(
        !svcs.contains("shop_web") && svcs.contains("shop_api"),
        "{svcs}"
    );

    // rm: the api before the db it depends on, each waited for; then the
    // networks, the secret and the config. Nothing is left running.
    let out = manager.cli_ok(&["stack", "rm", "shop"]);
    let api_at = out.find("Removing service shop_api").expect(&out);
    let db_at = out.find("Removing service shop_db").expect(&out);
    assert!(api_at < db_at, "{out}");
    for line in [
        "Removing network shop_back",
        "Removing network shop_front",
        "Removing secret shop_db_password",
        "Removing config shop_web_index",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    assert!(manager.services().is_empty());
    let err = one_line_error(&manager.cli(&["stack", "ps", "shop"]));
    assert!(err.contains("nothing found in stack: shop"), "{err}");
    assert!(
        wait_until(WAIT, || manager.ctr_running().is_empty()
            && worker.ctr_running().is_empty()),
        "containers left: {:?} {:?}",
        manager.ctr_running(),
        worker.ctr_running()
    );
    // The volume's data stays, as docker's stack rm leaves volumes.
    let boots = worker.data_dir.join("volumes/shop_dbdata/_data/boots");
    let boots =
        std::fs::read_to_string(&boots).unwrap_or_else(|e| panic!("{}: {e}", boots.display()));
    assert_eq!(boots, "started\n", "the db started more than once");
}

#[test]
fn every_key_of_deploy_shows_in_service_inspect() {
    let d = Daemon::cluster();
    d.load_image("shoal-test/busybox:latest");
    let file = format!(
        "{}/tests/compose/deploy-all.yml",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = d.cli(&["stack", "deploy", "-c", &file, "all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let services = d.services();
    assert_eq!(services.len(), 1, "{services:?}");
    let name = s(&services[0], "name").to_string();
    let spec = d.cli_json(&["service", "inspect", &name])["spec"].clone();
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/tests/compose/deploy-all.inspect.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    // Every key the file gives, as it gave it; labels may hold more (the
    // stack's own).
    for (key, want) in expected.as_object().unwrap() {
        match want.as_object() {
            Some(fields) => {
                for (field, v) in fields {
                    assert_eq!(&spec[key][field], v, "{key}.{field} in {spec}");
                }
            }
            None => assert_eq!(&spec[key], want, "{key} in {spec}"),
        }
    }
}

#[test]
fn a_cycle_and_an_invalid_file_are_refused_with_what_is_wrong() {
    let d = Daemon::cluster();
    // The cycle is seen in the files, where they say it.
    let out = d.cli(&["stack", "deploy", "-c", &shop("cycle.yml"), "loop"]);
    assert!(!out.status.success());
    assert_eq!(
        one_line_error(&out),
        format!(
            "error: {}:5: services.a.depends_on: dependency cycle: a -> b -> c -> a",
            shop("cycle.yml")
        )
    );
    assert!(d.services().is_empty());
    // The file is read before the daemon is asked: no daemon is needed to
    // hear what is wrong with it.
    let bad = d.dir().join("bad.yml");
    std::fs::write(
        &bad,
        "services:\n  web:\n    image: busybox\n    deploy:\n      replicas: three\n",
    )
    .unwrap();
    let out = run(Command::new(SHOAL).args([
        "--socket",
        "/nonexistent/shoal.sock",
        "stack",
        "deploy",
        "-c",
        bad.to_str().unwrap(),
        "s",
    ]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}:5: services.web.deploy.replicas:",
            bad.display()
        )),
        "{err}"
    );
}

/// A `healthcheck:` with timings and no `test:` runs the image's own
/// HEALTHCHECK on those timings, as docker does; a service that waits for
/// it to be healthy starts once it is.
#[test]
fn a_healthcheck_without_a_test_runs_the_image_s_on_the_file_s_timings() {
    let d = Daemon::cluster();
    let mut o = common::image::Options::new("checked:1", host_arch(), common::image::Format::Oci);
    // HEALTHCHECK --interval=1h --retries=1 CMD test -f /tmp/ok: on the
    // image's own timings it would not run within the test.
    o.healthcheck = Some(serde_json::json!({
        "Test": ["CMD", "test", "-f", "/tmp/ok"],
        "Interval": 3_600_000_000_000u64,
        "Retries": 1,
    }));
    let tar = common::image::build(d.dir(), &o);
    d.cli_ok(&["image", "load", tar.to_str().unwrap()]);
    let file = d.dir().join("checked.yml");
    std::fs::write(
        &file,
        r#"
services:
  checked:
    image: checked:1
    command: ["sh", "-c", "sleep 1; touch /tmp/ok; exec sleep 3600"]
    healthcheck:
      interval: 500ms
      retries: 2
  after:
    image: busybox
    command: ["sleep", "3600"]
    depends_on:
      checked:
        condition: service_healthy
"#,
    )
    .unwrap();
    d.cli_ok(&["stack", "deploy", "-c", file.to_str().unwrap(), "hc"]);
    let health = d.cli_json(&["service", "inspect", "hc_checked"])["spec"]["healthcheck"].clone();
    assert_eq!(health["test"], serde_json::json!([]), "{health}");
    assert_eq!(health["interval_ms"], 500, "{health}");
    let first = |svc: &str| d.ps(svc).into_iter().next().unwrap_or_default();
    assert!(
        wait_until(WAIT, || first("hc_checked")["health"] == "healthy"),
        "the image's test never made the task healthy: {}",
        first("hc_checked")
    );
    d.wait_running("hc_after", 1);
}
