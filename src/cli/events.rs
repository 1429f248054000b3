//! `shoal events`: a live stream of the cluster's changes, as lines or
//! JSON. When its manager goes (a restart, a leader change that took it
//! down), it connects again and resumes after the last commit it showed.

use std::time::Duration;

use clap::Args;

use super::client::Client;
use crate::events::Event;

#[derive(Args)]
pub struct EventsArgs {
    /// Start with the kept events since this long ago (10m) or this time
    /// (2026-12-02T10:00:00Z); default: from now on.
    #[arg(long)]
    since: Option<String>,
    /// KEY=VALUE: type (service, node, task, network, secret, config,
    /// cluster), event (create, update, remove), name, id, service
    /// (repeatable; one key matches any of its values, every key must
    /// match).
    #[arg(short, long)]
    filter: Vec<String>,
    /// Output: lines, or JSON (one object per line).
    #[arg(long, value_enum, default_value = "table")]
    format: super::Format,
}

/// How long a lost stream is tried again before giving up.
const RECONNECT_FOR: Duration = Duration::from_secs(120);

fn since_ms(s: &str) -> anyhow::Result<i64> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(crate::types::now_ms() - d.as_millis() as i64);
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|_| {
        anyhow::anyhow!("invalid --since {s:?}: a duration (10m) or a time (2026-12-02T10:00:00Z)")
    })?;
    Ok(t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0))
}

fn print(e: &Event, format: super::Format) {
    if e.kind == "gap" {
        let why = e.attributes.get("message").map_or("", String::as_str);
        eprintln!("warning: events were missed: {why}");
        return;
    }
    if format == super::Format::Json {
        println!("{}", serde_json::to_string(e).unwrap_or_default());
        return;
    }
    let time = std::time::UNIX_EPOCH + Duration::from_millis(e.time_ms.max(0) as u64);
    let mut attrs: Vec<String> = Vec::new();
    if !e.name.is_empty() {
        attrs.push(format!("name={}", e.name));
    }
    attrs.extend(e.attributes.iter().map(|(k, v)| format!("{k}={v}")));
    println!(
        "{} {} {} {} ({})",
        humantime::format_rfc3339_millis(time),
        e.kind,
        e.action,
        e.id,
        attrs.join(", ")
    );
}

pub async fn run(client: &Client, a: EventsArgs) -> anyhow::Result<()> {
    for f in &a.filter {
        if !f.contains('=') {
            anyhow::bail!("invalid filter {f:?}: expected KEY=VALUE");
        }
    }
    let filters = a.filter.join(",");
    let mut query = match &a.since {
        Some(s) => format!("since_ms={}", since_ms(s)?),
        None => String::new(),
    };
    // The last commit shown, and how many of its events: a resume asks
    // for that commit again and skips those.
    let (mut last, mut shown_of_last) = (None::<u64>, 0usize);
    let mut lost_at: Option<std::time::Instant> = None;
    loop {
        if let Some(i) = last {
            query = format!("since_index={}", i.saturating_sub(1));
        }
        let path = format!(
            "/v1/events?{query}&filters={}",
            super::node::encode(&filters)
        );
        let (mut skip, resumed_at) = (shown_of_last, last);
        let r = client
            .stream(&path, |e: Event| {
                if resumed_at.is_some_and(|i| e.index == i) && skip > 0 {
                    skip -= 1;
                    return;
                }
                if e.kind != "gap" {
                    if last == Some(e.index) {
                        shown_of_last += 1;
                    } else {
                        last = Some(e.index);
                        shown_of_last = 1;
                    }
                }
                lost_at = None;
                print(&e, a.format);
            })
            .await;
        // A refusal (a bad filter, not a manager) is final; a lost
        // stream, or a manager that cannot answer yet, is tried again.
        if let Err(e) = &r {
            if let Some(refused) = e.downcast_ref::<super::client::Refused>() {
                if refused.status.is_client_error() {
                    return r;
                }
            }
        }
        let since = *lost_at.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() > RECONNECT_FOR {
            anyhow::bail!(
                "lost the daemon's event stream and could not get it back in {RECONNECT_FOR:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
