//! A real Docker registry on a loopback port, for tests of registry pulls:
//! Debian's `docker-registry` (distribution 2.8), filled with `skopeo`.
//!
//! A [`Registry`] owns a temp dir holding its config, its storage, its logs
//! and, for a TLS registry, a CA and a server certificate made with
//! `openssl` and an `htpasswd` file. Tests push the busybox images that
//! `image.rs` builds (one arch, or an index of several), and then check what
//! shoal fetched: [`Registry::blob_gets`] counts blob downloads from the
//! registry's own access log, so a test can tell a pull that reused local
//! content from one that downloaded it again. The process is killed on drop;
//! [`Registry::stop`] and [`Registry::start_again`] take it away and bring it
//! back on the same port and storage, for tests of an unreachable registry.
//!
//! Everything here panics with a message saying what failed: it is test
//! code. When a test panics, the drop prints the end of the registry's log.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::harness::{host_arch, stop_quietly, try_run, WAIT};
use super::image::{self, Format, Options};

/// The registry binary of Debian's `docker-registry` package.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
/// No single `skopeo` or `openssl` call may take longer than this.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// The media types `push_multiarch` writes.
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A `docker-registry serve` on `127.0.0.1:<port>`, plain HTTP or HTTPS with
/// basic auth. Dropping it kills the process and removes its storage.
pub struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    addr: String,
    /// `(user, password)` when the registry wants basic auth.
    creds: Option<(String, String)>,
    /// The CA that issued the server certificate, when the registry is TLS.
    ca_pem: Option<PathBuf>,
    child: Option<Child>,
}

impl Registry {
    /// Plain HTTP on 127.0.0.1:<free port>, no auth.
    pub fn start_plain() -> Registry {
        let mut r = Registry::new(None);
        r.write_config(false);
        r.start_again();
        r
    }

    /// HTTPS with a certificate for `127.0.0.1` (IP SAN) and `localhost`
    /// (DNS SAN), issued by a CA made here with `openssl` (see
    /// [`Registry::ca_pem_path`]), and basic auth for `user`/`password`
    /// (bcrypt htpasswd: the only hash distribution accepts).
    pub fn start_tls_auth(user: &str, password: &str) -> Registry {
        let mut r = Registry::new(Some((user.to_string(), password.to_string())));
        r.make_certificates();
        let htpasswd = run_ok(Command::new("htpasswd").args(["-Bbn", user, password]));
        fs::write(r.dir().join("htpasswd"), htpasswd.stdout).expect("write htpasswd");
        r.write_config(true);
        r.start_again();
        r
    }

    fn new(creds: Option<(String, String)>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("shoal-registry-")
            .tempdir()
            .expect("create temp dir");
        fs::create_dir(dir.path().join("storage")).expect("create registry storage dir");
        // Picked by binding port 0 and letting go: another process may take
        // it in between, which `wait_up` then reports.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free loopback port")
            .port();
        Registry {
            dir,
            port,
            addr: format!("127.0.0.1:{port}"),
            creds,
            ca_pem: None,
            child: None,
        }
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temp dir the registry owns (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate (PEM) that issued the server's, for a TLS registry.
    pub fn ca_pem_path(&self) -> Option<&Path> {
        self.ca_pem.as_deref()
    }

    /// The registry's own log (its stderr), appended across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("registry.log")
    }

    /// The HTTP access log (combined log format: distribution writes it on
    /// stdout), appended across restarts.
    pub fn access_log_path(&self) -> PathBuf {
        self.dir().join("access.log")
    }

    /// A CA (`ca.pem`) and a server certificate it issued (`server.pem`,
    /// `server.key`) for both names a test may dial; `certs/ca.crt` is the
    /// same CA in the layout `skopeo --cert-dir` reads.
    fn make_certificates(&mut self) {
        let d = self.dir().to_path_buf();
        let p = |name: &str| d.join(name).to_str().expect("utf-8 temp dir").to_string();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run_ok(
            Command::new("openssl")
                .args(["req", "-x509"])
                .args(ec)
                .args([
                    "-keyout",
                    &p("ca.key"),
                    "-out",
                    &p("ca.pem"),
                    "-days",
                    "3650",
                    "-subj",
                    "/CN=shoal test registry CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ]),
        );
        run_ok(Command::new("openssl").args(["req"]).args(ec).args([
            "-keyout",
            &p("server.key"),
            "-out",
            &p("server.csr"),
            "-subj",
            "/CN=localhost",
        ]));
        fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
             basicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n",
        )
        .expect("write server.ext");
        run_ok(Command::new("openssl").args([
            "x509",
            "-req",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            &p("server.ext"),
            "-out",
            &p("server.pem"),
        ]));
        fs::create_dir(d.join("certs")).expect("create certs dir");
        fs::copy(d.join("ca.pem"), d.join("certs/ca.crt")).expect("copy CA to certs/ca.crt");
        self.ca_pem = Some(d.join("ca.pem"));
    }

    fn write_config(&self, tls: bool) {
        let d = self.dir();
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n  secret: shoal-test-registry-{port}\n",
            storage = d.join("storage").display(),
            addr = self.addr,
            port = self.port,
        );
        if tls {
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                d.join("server.pem").display(),
                d.join("server.key").display()
            );
        }
        if self.creds.is_some() {
            config += &format!(
                "auth:\n  htpasswd:\n    realm: shoal-test\n    path: {}\n",
                d.join("htpasswd").display()
            );
        }
        fs::write(d.join("config.yml"), config).expect("write registry config");
    }

    /// Stops the registry process; its storage and logs stay.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_quietly(child);
        }
    }

    /// Starts the registry (again) on the same port and storage, and waits
    /// until it answers `/v2/`.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the registry already runs");
        let append = |path: PathBuf| {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
        };
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(self.dir().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(append(self.access_log_path()))
            .stderr(append(self.log_path()))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {REGISTRY_BIN}: {e} (install Debian's docker-registry)")
            });
        self.child = Some(child);
        self.wait_up();
    }

    /// Waits until `/v2/` answers 200 (or 401, when auth is on): the
    /// registry listens and its storage works.
    fn wait_up(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let child = self.child.as_mut().expect("the registry runs");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                panic!(
                    "docker-registry on {} exited before it answered /v2/: {status}\n{}",
                    self.addr,
                    self.log_tail()
                );
            }
            let last = match self.v2_status("127.0.0.1") {
                Ok(200) => return,
                Ok(401) if self.creds.is_some() => return,
                Ok(other) => format!("/v2/ answered {other}"),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                panic!(
                    "docker-registry on {} did not answer /v2/ within {WAIT:?} ({last})\n{}",
                    self.addr,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The status of an unauthenticated `GET /v2/`; over TLS, the server's
    /// certificate is checked against the CA for `server_name`
    /// (`127.0.0.1` or `localhost`).
    pub fn v2_status(&self, server_name: &str) -> Result<u16, String> {
        let tcp = TcpStream::connect(&self.addr).map_err(|e| format!("connect: {e}"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let request = format!(
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let Some(ca) = &self.ca_pem else {
            return http_status(tcp, &request);
        };
        let mut roots = rustls::RootCertStore::empty();
        let pem = fs::read(ca).map_err(|e| format!("read {}: {e}", ca.display()))?;
        for cert in pem::parse_many(pem).map_err(|e| format!("parse the CA: {e}"))? {
            roots
                .add(cert.into_contents().into())
                .map_err(|e| format!("add the CA: {e}"))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
            .map_err(|e| format!("server name {server_name}: {e}"))?;
        let conn = rustls::ClientConnection::new(Arc::new(config), name)
            .map_err(|e| format!("TLS client: {e}"))?;
        http_status(rustls::StreamOwned::new(conn, tcp), &request)
    }

    /// The last lines of the registry's log and access log.
    pub fn log_tail(&self) -> String {
        let tail = |path: PathBuf, n: usize| {
            let text = fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        format!(
            "--- last lines of the registry log ({}) ---\n{}\n\
             --- last lines of its access log ---\n{}\n--- end of registry logs ---",
            self.log_path().display(),
            tail(self.log_path(), 40),
            tail(self.access_log_path(), 20)
        )
    }

    /// skopeo's flags (`--{prefix}tls-verify`/`--{prefix}cert-dir`) to reach
    /// this registry; `prefix` is `""` (inspect), `"src-"` or `"dest-"`
    /// (copy). A TLS registry's certificate is really verified.
    pub fn tls_flags(&self, prefix: &str) -> Vec<String> {
        match &self.ca_pem {
            Some(_) => vec![
                format!("--{prefix}cert-dir"),
                self.dir().join("certs").display().to_string(),
            ],
            None => vec![format!("--{prefix}tls-verify=false")],
        }
    }

    /// skopeo's `--{prefix}creds USER:PASSWORD` when the registry wants them.
    pub fn creds_flags(&self, prefix: &str) -> Vec<String> {
        match &self.creds {
            Some((user, password)) => {
                vec![format!("--{prefix}creds"), format!("{user}:{password}")]
            }
            None => Vec::new(),
        }
    }

    /// `docker://ADDR/NAME:TAG`, skopeo's reference to `name_tag` here.
    pub fn docker_ref(&self, name_tag: &str) -> String {
        format!("docker://{}/{name_tag}", self.addr)
    }

    /// Runs `skopeo --insecure-policy ARGS` (no signature policy: these are
    /// our own images) with no credentials but those given on the command
    /// line, and returns its output whatever its status.
    pub fn skopeo(&self, args: &[String]) -> Output {
        let mut cmd = Command::new("skopeo");
        cmd.arg("--insecure-policy")
            .args(args)
            // Never a credential the machine has stored for some registry.
            .env("REGISTRY_AUTH_FILE", self.dir().join("no-auth.json"));
        try_run(&mut cmd, CALL_TIMEOUT).unwrap_or_else(|e| panic!("{e} (install Debian's skopeo)"))
    }

    /// Like [`Registry::skopeo`], but panics with skopeo's stderr unless it
    /// succeeds.
    pub fn skopeo_ok(&self, args: &[String]) -> Output {
        let out = self.skopeo(args);
        if !out.status.success() {
            panic!(
                "skopeo {} failed ({}): {}\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            );
        }
        out
    }

    /// Pushes an OCI-layout tarball (as `image.rs` builds) as `name_tag`
    /// (a repository path without the host, e.g. `team/web:1.4`) and returns
    /// the manifest digest the registry stores (`sha256:…`): the archive's
    /// own, as `--preserve-digests` makes skopeo fail rather than rewrite.
    pub fn push_archive(&self, archive: &Path, name_tag: &str) -> String {
        self.push(
            &format!("oci-archive:{}", archive.display()),
            name_tag,
            false,
        )
    }

    /// Builds an OCI image index holding one busybox image per arch in
    /// `archs` (`amd64`, `arm64`, `arm`), each entry with its platform (os,
    /// architecture and, for ARM, variant `v8`/`v7`), in `dir`, and pushes it
    /// with all its images as `name_tag`. Returns the index's digest.
    ///
    /// The host arch's image uses `/bin/busybox`; arm64 on another host uses
    /// `target/arm64-busybox/bin/busybox`, which `.ci/prepare-arm` fetches.
    pub fn push_multiarch(&self, dir: &Path, name_tag: &str, archs: &[&str]) -> String {
        assert!(!archs.is_empty(), "push_multiarch needs at least one arch");
        let safe: String = name_tag
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let layout = dir.join(format!("{safe}-index-layout"));
        fs::create_dir_all(layout.join("blobs/sha256")).expect("create OCI layout dir");
        let mut manifests = Vec::new();
        for arch in archs {
            let tarball = image::build(
                dir,
                &Options {
                    busybox: busybox_for(arch),
                    containerd_name: false,
                    ..Options::new(name_tag, arch, Format::Oci)
                },
            );
            let index = unpack_blobs(&tarball, &layout);
            let desc = &index["manifests"][0];
            let mut platform = json!({"architecture": arch, "os": "linux"});
            match *arch {
                "arm64" => platform["variant"] = json!("v8"),
                "arm" => platform["variant"] = json!("v7"),
                _ => {}
            }
            manifests.push(json!({
                "mediaType": OCI_MANIFEST,
                "digest": desc["digest"],
                "size": desc["size"],
                "platform": platform,
            }));
        }
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        }))
        .unwrap();
        let digest = sha256(&index);
        fs::write(layout.join("blobs/sha256").join(&digest[7..]), &index)
            .expect("write index blob");
        // The layout's index.json names the image index by a ref, which
        // `oci:DIR:REF` picks: skopeo copies that index and, with --all,
        // every image in it.
        let top = json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": OCI_INDEX,
                "digest": digest,
                "size": index.len(),
                "annotations": {"org.opencontainers.image.ref.name": "multiarch"},
            }],
        });
        fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap())
            .expect("write index.json");
        fs::write(
            layout.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("write oci-layout");
        let pushed = self.push(
            &format!("oci:{}:multiarch", layout.display()),
            name_tag,
            true,
        );
        assert_eq!(
            pushed, digest,
            "the registry stores {name_tag} under another digest than the index built"
        );
        pushed
    }

    fn push(&self, source: &str, name_tag: &str, all: bool) -> String {
        let digestfile = self.dir().join("pushed.digest");
        let _ = fs::remove_file(&digestfile);
        let mut args = vec!["copy".to_string(), "--preserve-digests".to_string()];
        if all {
            args.push("--all".into());
        }
        args.push("--digestfile".into());
        args.push(digestfile.display().to_string());
        args.extend(self.tls_flags("dest-"));
        args.extend(self.creds_flags("dest-"));
        args.push(source.to_string());
        args.push(self.docker_ref(name_tag));
        self.skopeo_ok(&args);
        let digest = fs::read_to_string(&digestfile)
            .unwrap_or_else(|e| panic!("skopeo wrote no --digestfile: {e}"))
            .trim()
            .to_string();
        assert!(
            digest.starts_with("sha256:"),
            "skopeo's digest file says {digest:?}"
        );
        digest
    }

    /// The manifest (or index) the registry serves for `name_tag`, as it
    /// stores it (`skopeo inspect --raw`).
    pub fn raw_manifest(&self, name_tag: &str) -> Vec<u8> {
        let mut args = vec!["inspect".to_string(), "--raw".to_string()];
        args.extend(self.tls_flags(""));
        args.extend(self.creds_flags(""));
        args.push(self.docker_ref(name_tag));
        self.skopeo_ok(&args).stdout
    }

    /// The digest the registry currently serves for `name_tag`: the sha256
    /// of its manifest's bytes, as the registry's `Docker-Content-Digest`.
    pub fn digest_of(&self, name_tag: &str) -> String {
        sha256(&self.raw_manifest(name_tag))
    }

    /// How many times each blob (by digest) was downloaded: `GET
    /// /v2/<name>/blobs/<digest>` answered 200 or 206, since the registry
    /// was made (across restarts), read from its access log. HEADs, uploads
    /// and refused requests do not count.
    pub fn blob_gets(&self) -> BTreeMap<String, usize> {
        let text = fs::read_to_string(self.access_log_path()).unwrap_or_default();
        let mut counts = BTreeMap::new();
        for line in text.lines() {
            if let Some(digest) = blob_get(line) {
                *counts.entry(digest).or_insert(0) += 1;
            }
        }
        counts
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        self.stop();
    }
}

/// The digest a combined-log-format line downloaded, if it is a blob GET
/// answered 200 or 206:
/// `127.0.0.1 - - [date] "GET /v2/team/web/blobs/sha256:… HTTP/1.1" 200 123 "" "skopeo/1.9.3"`.
fn blob_get(line: &str) -> Option<String> {
    let (_, rest) = line.split_once('"')?;
    let (request, rest) = rest.split_once('"')?;
    let mut parts = request.split(' ');
    let (method, uri) = (parts.next()?, parts.next()?);
    let status = rest.split_whitespace().next()?;
    if method != "GET" || !matches!(status, "200" | "206") {
        return None;
    }
    let path = uri.split('?').next()?;
    let (repo, digest) = path.strip_prefix("/v2/")?.rsplit_once("/blobs/")?;
    if repo.is_empty() || digest.contains('/') || !digest.contains(':') {
        return None;
    }
    Some(digest.to_string())
}

/// Sends `request` and returns the status of the answer's first line.
fn http_status(mut stream: impl Read + Write, request: &str) -> Result<u16, String> {
    stream
        .write_all(request.as_bytes())
        .and_then(|_| stream.flush())
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().next().unwrap_or("");
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {line:?}"))
}

/// A static busybox for `arch`.
pub fn busybox_for(arch: &str) -> PathBuf {
    if arch == host_arch() {
        return PathBuf::from("/bin/busybox");
    }
    let path = match arch {
        "arm64" => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/arm64-busybox/bin/busybox"),
        other => panic!(
            "no busybox for {other} on this {} machine: push_multiarch knows the host's \
             (/bin/busybox) and arm64's (target/arm64-busybox, from .ci/prepare-arm)",
            host_arch()
        ),
    };
    if !path.exists() {
        panic!(
            "an arm64 image needs an arm64 busybox at {}: run `bash .ci/prepare-arm` \
             (as root), or the whole suite with `bash tests/run`",
            path.display()
        );
    }
    path
}

/// Copies the blobs of an OCI-layout tarball into the layout dir `layout`
/// and returns the tarball's index.json.
fn unpack_blobs(tarball: &Path, layout: &Path) -> Value {
    let file =
        fs::File::open(tarball).unwrap_or_else(|e| panic!("open {}: {e}", tarball.display()));
    let mut archive = tar::Archive::new(file);
    let mut index = None;
    for entry in archive.entries().expect("read the image tarball") {
        let mut entry = entry.expect("an entry of the image tarball");
        let path = entry.path().expect("an entry's path").into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read an entry");
        if path.starts_with("blobs") {
            fs::write(layout.join(&path), data).expect("write a blob");
        } else if path == Path::new("index.json") {
            index = Some(serde_json::from_slice(&data).expect("the image's index.json"));
        }
    }
    index.unwrap_or_else(|| panic!("{} has no index.json", tarball.display()))
}

/// Runs a command and panics with its stderr unless it succeeds.
fn run_ok(cmd: &mut Command) -> Output {
    let desc = format!("{cmd:?}");
    let out = try_run(cmd, CALL_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    if !out.status.success() {
        panic!(
            "{desc} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}
