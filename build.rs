//! Build script: puts the git commit into `SHOAL_GIT_COMMIT`, for
//! `shoal --version`. It never requires git: outside a checkout, without a
//! `git` binary, or when git refuses the directory, the commit is "unknown".
//! A packager can set `SHOAL_GIT_COMMIT` in the environment to override it.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SHOAL_GIT_COMMIT");
    let commit = std::env::var("SHOAL_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SHOAL_GIT_COMMIT={}", commit.trim());
}

/// The short commit of HEAD, and rerun triggers on the files that move when
/// HEAD does. Only existing paths are watched: cargo reruns a build script
/// on every build when a watched path is missing.
fn git_commit() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    for name in ["HEAD", "packed-refs"] {
        watch(git(&["rev-parse", "--git-path", name]));
    }
    // The branch file HEAD points at (absent when HEAD is detached).
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(git(&["rev-parse", "--git-path", &branch]));
    }
    Some(commit)
}

/// `git rev-parse --git-path` answers relative to the directory git ran in.
fn watch(path: Option<String>) {
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return;
    };
    if let Some(p) = path
        .map(|p| PathBuf::from(dir).join(p))
        .filter(|p| p.exists())
    {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}

/// Run git in the crate's directory; `None` on any failure.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}
