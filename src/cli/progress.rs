//! Waiting for a service to converge after `service create`, `update`,
//! `scale` or `rollback`, with its progress per slot (docker's
//! `--detach=false`): redrawn in place with docker's progress bars on a
//! terminal, one line per change otherwise. Ends with "converged", or with
//! the rollout's failure (exit 1). Reads only what `service inspect`, `ls`
//! and `ps` read.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use super::node::encode;
use super::Client;
use crate::api::spec::ServiceBody;
use crate::api::types::{ServiceRow, TaskRow};

/// How often the managers are asked.
const POLL: Duration = Duration::from_millis(500);

/// What the command waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Every slot (or eligible node) runs a task of the current spec.
    Converged,
    /// The rollout that the command started ends; it succeeds if it ends
    /// in this state (`completed`, `rollback_completed`).
    Rollout(&'static str),
}

/// One slot's (or node's) newest task meant to run, as shown.
#[derive(Clone, PartialEq, Eq)]
struct Line {
    name: String,
    text: String,
    done: bool,
    failed: bool,
    restarts: u64,
    state: String,
}

pub async fn wait(client: &Client, service: &str, until: Until) -> anyhow::Result<()> {
    let tty = std::io::stdout().is_terminal();
    let mut shown: BTreeMap<String, Line> = BTreeMap::new();
    let mut drawn = 0;
    loop {
        let body: ServiceBody = client
            .get(&format!("/v1/services/{}", encode(service)))
            .await?;
        let tasks: Vec<TaskRow> = client
            .get(&format!("/v1/services/{}/tasks", encode(service)))
            .await?;
        let target = match body.spec.replicas {
            Some(n) => n as usize,
            None => {
                let rows: Vec<ServiceRow> = client.get("/v1/services").await?;
                rows.iter()
                    .find(|r| r.id == body.id)
                    .map_or(0, |r| r.replicas as usize)
            }
        };
        let job = body.spec.mode.ends_with("job");
        let lines = lines_of(&tasks, job);
        let done = lines.values().filter(|l| l.done).count();
        let header = if job {
            format!("{}: {done}/{target} tasks completed", body.spec.name)
        } else {
            format!("{}: {done}/{target} tasks up to date", body.spec.name)
        };
        if tty {
            let mut out = std::io::stdout().lock();
            // Back over what was drawn last, then draw it all again.
            if drawn > 0 {
                write!(out, "\x1b[{drawn}A")?;
            }
            writeln!(out, "\x1b[2K{header}")?;
            let width = lines.values().map(|l| l.name.len()).max().unwrap_or(0);
            for l in lines.values() {
                writeln!(out, "\x1b[2K  {:width$}  {}  {}", l.name, bar(l), l.text)?;
            }
            // Lines of tasks that went (a scale down) are blanked.
            for _ in lines.len() + 1..drawn {
                writeln!(out, "\x1b[2K")?;
            }
            drawn = drawn.max(lines.len() + 1);
            out.flush()?;
        } else {
            for (key, l) in &lines {
                if shown.get(key) != Some(l) {
                    println!("{}: {}", l.name, l.text);
                }
            }
        }
        shown = lines.clone();
        let state = body.update_status.as_ref().map(|u| u.state.as_str());
        let message = body
            .update_status
            .as_ref()
            .map(|u| u.message.clone())
            .unwrap_or_default();
        if job {
            if done == target {
                println!("{}: job complete", body.spec.name);
                return Ok(());
            }
            // A task that failed and will not run again: the job cannot
            // complete.
            let for_good = |l: &&Line| {
                l.failed
                    && (body.spec.restart_condition == "none"
                        || body
                            .spec
                            .restart_max_attempts
                            .is_some_and(|max| l.restarts >= max))
            };
            if let Some(l) = lines.values().find(for_good) {
                anyhow::bail!("{}: job failed: {} {}", body.spec.name, l.name, l.text);
            }
            tokio::time::sleep(POLL).await;
            continue;
        }
        match until {
            Until::Converged
                if done == target && !matches!(state, Some("updating" | "rollback_started")) =>
            {
                println!("{}: converged", body.spec.name);
                return Ok(());
            }
            Until::Rollout(want) => match state {
                Some("updating" | "rollback_started") | None => {}
                Some(s) if s == want => {
                    println!("{}: {message}", body.spec.name);
                    return Ok(());
                }
                Some(s) => anyhow::bail!("{}: {s}: {message}", body.spec.name),
            },
            _ => {}
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The states a task goes through on its way to running, as docker's
/// progress bars count them.
const STAGES: [&str; 9] = [
    "new",
    "allocated",
    "pending",
    "assigned",
    "accepted",
    "preparing",
    "ready",
    "starting",
    "running",
];

/// Docker's bar: how far along the way to running the task is.
fn bar(l: &Line) -> String {
    const WIDTH: usize = 30;
    let stage = if l.done {
        STAGES.len()
    } else {
        STAGES
            .iter()
            .position(|s| *s == l.state)
            .map_or(0, |i| i + 1)
    };
    let filled = WIDTH * stage / STAGES.len();
    let head = if filled < WIDTH { ">" } else { "" };
    format!(
        "[{}{head}{}]",
        "=".repeat(filled),
        " ".repeat(WIDTH - filled - head.len())
    )
}

/// The newest task meant to run of each slot (or node, for a global
/// service), by slot or node: the API lists a slot's tasks newest first.
/// A job's task is done once it has succeeded; another's once it runs the
/// current spec.
fn lines_of(tasks: &[TaskRow], job: bool) -> BTreeMap<String, Line> {
    let mut lines = BTreeMap::new();
    for t in tasks.iter().filter(|t| t.desired_state == "running") {
        let key = match t.slot {
            0 => t.node_id.clone().unwrap_or_default(),
            n => format!("{n:010}"),
        };
        lines.entry(key).or_insert_with(|| {
            let why = t.error.as_deref().filter(|e| !e.is_empty()).map_or_else(
                || {
                    if t.state == "pending" && !t.message.is_empty() {
                        format!(": {}", t.message)
                    } else {
                        String::new()
                    }
                },
                |e| format!(": {e}"),
            );
            let old = if t.up_to_date { "" } else { " (old spec)" };
            Line {
                name: t.name.clone(),
                text: format!("{}{old}{why}", t.state),
                done: if job {
                    t.state == "complete" && t.exit_code.unwrap_or(0) == 0
                } else {
                    t.state == "running" && t.up_to_date
                },
                failed: matches!(t.state.as_str(), "failed" | "rejected")
                    || (t.state == "complete" && t.exit_code.unwrap_or(0) != 0),
                restarts: t.restarts,
                state: t.state.clone(),
            }
        });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(state: &str, done: bool) -> Line {
        Line {
            name: "web.1".into(),
            text: state.into(),
            done,
            failed: false,
            restarts: 0,
            state: state.into(),
        }
    }

    #[test]
    fn the_bar_fills_as_the_task_goes_to_running() {
        let empty = bar(&line("unknown", false));
        let half = bar(&line("accepted", false));
        let full = bar(&line("running", true));
        assert_eq!(empty, format!("[>{}]", " ".repeat(29)));
        assert!(half.starts_with("[================>"), "{half}");
        assert_eq!(full, format!("[{}]", "=".repeat(30)));
        assert!([empty, half, full].iter().all(|b| b.chars().count() == 32));
    }
}
