//! The registry fixture (tests/common/registry.rs) itself: a real
//! `docker-registry` takes pushes, counts blob downloads, checks TLS and
//! credentials, and serves a multi-arch index, so the registry-pull tests
//! can trust what it tells them.
//!
//! Needs root and containerd like every integration test, and Debian's
//! docker-registry, skopeo, apache2-utils and openssl (`bash tests/run`
//! installs them); the multi-arch test also needs the arm64 busybox of
//! `.ci/prepare-arm`.

mod common;

use common::harness::*;
use common::image::build_busybox_image;
use common::registry::Registry;
use serde_json::Value;

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn plain_registry_takes_a_push_and_counts_blob_gets() {
    require_root_and_containerd();
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut reg = Registry::start_plain();
    assert!(reg.ca_pem_path().is_none());
    assert_eq!(reg.v2_status("127.0.0.1"), Ok(200));

    let archive = build_busybox_image(tmp.path(), "team/web:1.4", host_arch());
    let digest = reg.push_archive(&archive, "team/web:1.4");
    assert_eq!(reg.digest_of("team/web:1.4"), digest);
    let manifest = json(&reg.raw_manifest("team/web:1.4"));
    let config = manifest["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_string();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer digest")
        .to_string();
    // A push uploads blobs and checks them with HEAD: no download.
    assert!(reg.blob_gets().is_empty(), "{:?}", reg.blob_gets());

    let pull = |reg: &Registry, to: &str| {
        let mut args = strings(&["copy"]);
        args.extend(reg.tls_flags("src-"));
        args.push(reg.docker_ref("team/web:1.4"));
        args.push(format!("oci:{}:x", tmp.path().join(to).display()));
        reg.skopeo_ok(&args);
    };
    pull(&reg, "pulled");
    let gets = reg.blob_gets();
    assert_eq!(gets.get(&layer), Some(&1), "{gets:?}");
    assert_eq!(gets.get(&config), Some(&1), "{gets:?}");
    assert_eq!(gets.len(), 2, "only the image's two blobs: {gets:?}");

    // Storage and counts survive a restart on the same port.
    reg.stop();
    assert!(
        reg.v2_status("127.0.0.1").is_err(),
        "a stopped registry answers"
    );
    reg.start_again();
    assert_eq!(reg.digest_of("team/web:1.4"), digest);
    pull(&reg, "pulled-again");
    let gets = reg.blob_gets();
    assert_eq!(gets.get(&layer), Some(&2), "{gets:?}");
}

#[test]
fn tls_registry_with_auth_refuses_wrong_credentials() {
    require_root_and_containerd();
    let tmp = tempfile::tempdir().expect("temp dir");
    let reg = Registry::start_tls_auth("alice", "s3cret pass");
    assert!(reg.ca_pem_path().expect("a CA").exists());
    // The certificate holds for both names, by the fixture's CA.
    assert_eq!(reg.v2_status("127.0.0.1"), Ok(401));
    assert_eq!(reg.v2_status("localhost"), Ok(401));

    let archive = build_busybox_image(tmp.path(), "private/app:v1", host_arch());
    let digest = reg.push_archive(&archive, "private/app:v1");
    assert_eq!(reg.digest_of("private/app:v1"), digest);

    let inspect = |extra: &[String]| {
        let mut args = strings(&["inspect", "--raw"]);
        args.extend_from_slice(extra);
        args.push(reg.docker_ref("private/app:v1"));
        reg.skopeo(&args)
    };
    let tls = reg.tls_flags("");
    let wrong = [tls.clone(), strings(&["--creds", "alice:wrong"])].concat();
    let out = inspect(&wrong);
    assert!(!out.status.success(), "wrong password accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("401") || stderr.to_lowercase().contains("unauthorized"),
        "{stderr}"
    );
    assert!(!inspect(&tls).status.success(), "no credentials accepted");
    let out = inspect(&[tls.clone(), reg.creds_flags("")].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the fixture's CA, the certificate is not trusted.
    let out = inspect(&[strings(&["--tls-verify=true"]), reg.creds_flags("")].concat());
    assert!(!out.status.success(), "an untrusted certificate accepted");
    let gets = reg.blob_gets();
    assert!(gets.is_empty(), "inspect --raw downloads no blob: {gets:?}");
}

#[test]
fn multiarch_index_has_both_platforms() {
    require_root_and_containerd();
    let tmp = tempfile::tempdir().expect("temp dir");
    let reg = Registry::start_plain();
    let digest = reg.push_multiarch(tmp.path(), "team/multi:1", &["amd64", "arm64"]);
    assert_eq!(reg.digest_of("team/multi:1"), digest);

    let index = json(&reg.raw_manifest("team/multi:1"));
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = index["manifests"].as_array().expect("manifests");
    let platforms: Vec<(String, String)> = entries
        .iter()
        .map(|m| {
            let p = &m["platform"];
            assert_eq!(p["os"], "linux");
            (
                p["architecture"].as_str().unwrap_or("").to_string(),
                p["variant"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        platforms,
        [
            ("amd64".to_string(), String::new()),
            ("arm64".to_string(), "v8".to_string())
        ]
    );
    // Every image of the index was pushed too, with its own arch.
    for entry in entries {
        let at = format!("team/multi@{}", entry["digest"].as_str().expect("digest"));
        let manifest = json(&reg.raw_manifest(&at));
        let mut args = strings(&["inspect", "--config"]);
        args.extend(reg.tls_flags(""));
        args.push(reg.docker_ref(&at));
        let config = json(&reg.skopeo_ok(&args).stdout);
        assert_eq!(config["architecture"], entry["platform"]["architecture"]);
        assert_eq!(
            manifest["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
    }
}
