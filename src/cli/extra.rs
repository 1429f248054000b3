//! CLI comforts generated from the clap definitions: shell completions
//! (`shoal completion bash|zsh|fish|…`) and roff man pages (`shoal man`,
//! `shoal man --dir DIR`).
//! They write to stdout (or DIR), so packagers put them where their
//! distribution wants them; systemd/install.sh does it on a Pi.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Write the completion script for `shell` to stdout.
///
/// bash: `shoal completion bash > /etc/bash_completion.d/shoal`;
/// zsh: `shoal completion zsh > "${fpath[1]}/_shoal"`;
/// fish: `shoal completion fish > ~/.config/fish/completions/shoal.fish`.
pub fn completion(shell: clap_complete::Shell, cmd: &mut clap::Command) {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, cmd, name, &mut std::io::stdout().lock());
}

/// Write the man page of `cmd` (roff, section 1) to stdout:
/// `shoal man > shoal.1`.
///
/// The page covers the top-level command and lists its subcommands as
/// `shoal-service(1)` and so on; [`man_pages`] writes those pages too.
pub fn man(cmd: &clap::Command) -> anyhow::Result<()> {
    let page = render_man(cmd).context("cannot render the man page")?;
    let mut out = std::io::stdout().lock();
    out.write_all(&page)
        .and_then(|()| out.flush())
        .context("cannot write the man page to stdout")
}

fn render_man(cmd: &clap::Command) -> std::io::Result<Vec<u8>> {
    let mut page = Vec::new();
    // The same tree `man_pages` renders, so the list of subcommands on this
    // page names exactly the pages that exist (no `shoal-help(1)`).
    clap_mangen::Man::new(cmd.clone().disable_help_subcommand(true)).render(&mut page)?;
    Ok(page)
}

/// Write one man page per command into `dir` (`shoal.1`, `shoal-service.1`,
/// `shoal-service-create.1`, …), each with that command's own flags:
/// `shoal man --dir /usr/local/share/man/man1`. `dir` must exist.
pub fn man_pages(cmd: clap::Command, dir: &Path) -> anyhow::Result<()> {
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("cannot write man pages into {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use crate::cli::Cli;

    /// clap's own consistency checks over the whole command tree, which the
    /// generators rely on.
    #[test]
    fn cli_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    /// Every flag and argument a user can see says what it is for, and
    /// only the daemon takes the daemon's logging flags.
    #[test]
    fn every_visible_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
                if path != "shoal daemon" && id.starts_with("log_") {
                    missing.push(format!("{path} {id} (a daemon flag)"));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        let mut cmd = Cli::command();
        cmd.build();
        walk(&cmd, "shoal", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }

    #[test]
    fn completions_name_the_subcommands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "shoal", &mut out);
            let text = String::from_utf8(out).expect("utf-8");
            assert!(
                text.contains("service"),
                "{shell} completion lacks `service`"
            );
            assert!(
                !text.contains("bench-sim"),
                "{shell} completion offers bench-sim, which is not for users"
            );
        }
    }

    #[test]
    fn man_page_is_roff() {
        let page = super::render_man(&Cli::command()).expect("render");
        let text = String::from_utf8(page).expect("utf-8");
        assert!(
            text.starts_with(".ie"),
            "not roff: {}",
            &text[..40.min(text.len())]
        );
        assert!(text.contains(".TH shoal 1"));
        assert!(
            text.contains("shoal\\-service(1)"),
            "subcommands not listed"
        );
        assert!(
            !text.contains("shoal\\-help"),
            "lists a help page that is never written"
        );
    }

    #[test]
    fn man_pages_cover_every_subcommand() {
        let dir = tempfile::tempdir().expect("temp dir");
        super::man_pages(Cli::command(), dir.path()).expect("man pages");
        let mut expected = vec!["shoal.1".to_string()];
        // Hidden commands (bench-sim) have no page.
        for sub in Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
        {
            expected.push(format!("shoal-{}.1", sub.get_name()));
        }
        for name in expected {
            assert!(dir.path().join(&name).is_file(), "{name} missing");
        }
    }
}
