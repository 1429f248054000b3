//! `GET /v1/events`: the store's changes as a newline-delimited JSON
//! stream (`crate::events`), from `since_index` or `since_ms` on (else
//! from now), filtered by `filters` (`type=service,name=web`: one key
//! matches any of its values, every key must match).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, Ctx};
use crate::events::{Event, Since, TYPES};

#[derive(Debug, Deserialize)]
pub struct EventQuery {
    since_index: Option<u64>,
    since_ms: Option<i64>,
    #[serde(default)]
    filters: String,
}

/// `key=value` pairs, checked.
#[derive(Debug, Default)]
struct Filters(Vec<(String, String)>);

impl Filters {
    fn parse(s: &str) -> Result<Filters, ApiError> {
        let mut out = Vec::new();
        for f in s.split(',').filter(|f| !f.is_empty()) {
            let (k, v) = f.split_once('=').ok_or_else(|| {
                ApiError::BadRequest(format!("invalid filter {f:?}: expected KEY=VALUE"))
            })?;
            match k {
                "type" if !TYPES.contains(&v) => {
                    return Err(ApiError::BadRequest(format!(
                        "invalid event type {v:?}: one of {}",
                        TYPES.join(", ")
                    )))
                }
                "event" | "action" if !["create", "update", "remove"].contains(&v) => {
                    return Err(ApiError::BadRequest(format!(
                        "invalid event {v:?}: create, update or remove"
                    )))
                }
                "type" | "event" | "action" | "name" | "id" | "service" => {}
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "invalid filter key {k:?}: type, event, name, id or service"
                    )))
                }
            }
            out.push((k.to_string(), v.to_string()));
        }
        Ok(Filters(out))
    }

    fn matches(&self, e: &Event) -> bool {
        let field = |k: &str| -> Option<&str> {
            Some(match k {
                "type" => &e.kind,
                "event" | "action" => &e.action,
                "name" => &e.name,
                "id" => &e.id,
                // A service's own events and its tasks'.
                "service" if e.kind == "service" => &e.name,
                "service" => e.attributes.get("service")?,
                _ => return None,
            })
        };
        let mut keys: Vec<&str> = self.0.iter().map(|(k, _)| k.as_str()).collect();
        keys.dedup();
        keys.iter().all(|k| {
            self.0
                .iter()
                .filter(|(fk, _)| fk == k)
                .any(|(fk, v)| field(fk) == Some(v.as_str()))
        })
    }
}

/// The line that says events were missed: the client warns.
fn gap(message: &str) -> Event {
    Event {
        index: 0,
        time_ms: crate::types::now_ms(),
        kind: "gap".into(),
        action: String::new(),
        id: String::new(),
        name: String::new(),
        attributes: [("message".to_string(), message.to_string())].into(),
    }
}

fn line(e: &Event) -> Vec<u8> {
    let mut l = serde_json::to_vec(e).unwrap_or_default();
    l.push(b'\n');
    l
}

pub async fn events(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<EventQuery>,
) -> Result<Response, ApiError> {
    ctx.identity()?;
    let filters = Filters::parse(&q.filters)?;
    let since = match (q.since_index, q.since_ms) {
        (Some(i), _) => Since::Index(i),
        (None, Some(t)) => Since::Time(t),
        (None, None) => Since::Now,
    };
    let sub = ctx.events.subscribe(since);
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(256);
    let mut closed = ctx.events.closed();
    tokio::spawn(async move {
        if sub.gap {
            let g = gap("this manager no longer keeps (or never saw) some of the events asked for");
            if tx.send(line(&g)).await.is_err() {
                return;
            }
        }
        let mut last = 0;
        for e in sub.backlog.iter().filter(|e| filters.matches(e)) {
            last = e.index;
            if tx.send(line(e)).await.is_err() {
                return;
            }
        }
        let mut live = sub.live;
        loop {
            let e = tokio::select! {
                _ = closed.changed() => return,
                _ = tx.closed() => return,
                e = live.recv() => e,
            };
            let out = match e {
                Ok(e) if filters.matches(&e) => line(&e),
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => line(&gap(&format!(
                    "{n} events went by faster than they were read (after index {last})"
                ))),
                Err(RecvError::Closed) => return,
            };
            if tx.send(out).await.is_err() {
                return;
            }
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        let l = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(l), rx))
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_within_a_key_by_any_and_across_keys_by_all() {
        let e = Event {
            index: 1,
            time_ms: 0,
            kind: "task".into(),
            action: "update".into(),
            id: "t1".into(),
            name: "web.1".into(),
            attributes: [("service".to_string(), "web".to_string())].into(),
        };
        let f = |s: &str| Filters::parse(s).unwrap().matches(&e);
        assert!(f(""));
        assert!(f("type=service,type=task"));
        assert!(f("type=task,service=web"));
        assert!(!f("type=task,event=create"));
        assert!(!f("service=db"));
        assert!(Filters::parse("type=volume").is_err());
        assert!(Filters::parse("colour=red").is_err());
        assert!(Filters::parse("type").is_err());
    }
}
