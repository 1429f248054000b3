//! Checks of user input that the server makes whatever client sent it.

use super::ApiError;
use crate::types::{ServiceMode, ServiceSpec};

pub fn service_spec(spec: &ServiceSpec) -> Result<(), ApiError> {
    let bad = |m: String| Err(ApiError::BadRequest(m));
    let name = &spec.name;
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return bad(format!(
            "invalid service name {name:?}: use 1-63 letters, digits, '-' or '_', starting with a letter or digit"
        ));
    }
    if let ServiceMode::Replicated { replicas } = spec.mode {
        if replicas > 10_000 {
            return bad(format!("{replicas} replicas are too many (at most 10000)"));
        }
    }
    let c = &spec.task.container;
    if let Err(e) = crate::types::normalize_image(&c.image) {
        return bad(e);
    }
    for e in &c.env {
        if e.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
            return bad(format!("invalid env {e:?}: expected KEY=VALUE"));
        }
    }
    for expr in &spec.task.placement.constraints {
        crate::scheduler::Constraint::parse(expr).map_err(ApiError::BadRequest)?;
    }
    if let Some(sig) = &c.stop_signal {
        if crate::types::parse_signal(sig).is_none() {
            return bad(format!("invalid stop signal {sig:?}"));
        }
    }
    Ok(())
}
