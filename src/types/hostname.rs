//! A task's hostname from a template (`--hostname
//! "{{.Node.Hostname}}-{{.Task.Slot}}"`), with the placeholders docker's
//! services have. Checked at create; filled in by the node that runs the
//! task, which knows its own name.

/// What a template's placeholders stand for.
#[derive(Debug, Clone, Default)]
pub struct HostnameVars<'a> {
    pub node_id: &'a str,
    pub node_hostname: &'a str,
    pub service_id: &'a str,
    pub service_name: &'a str,
    pub task_id: &'a str,
    pub task_name: &'a str,
    pub task_slot: u64,
}

const PLACEHOLDERS: &[&str] = &[
    ".Node.ID",
    ".Node.Hostname",
    ".Service.ID",
    ".Service.Name",
    ".Task.ID",
    ".Task.Name",
    ".Task.Slot",
];

/// The longest hostname Linux keeps.
const MAX_LEN: usize = 64;

/// The template's pieces: literal text, and placeholders (trimmed).
fn pieces(t: &str) -> Result<Vec<(bool, &str)>, String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find("{{") {
        out.push((false, &rest[..open]));
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("invalid hostname template {t:?}: '{{{{' without '}}}}'"))?;
        let name = after[..close].trim();
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "invalid hostname template {t:?}: unknown placeholder {{{{{name}}}}} (known: {})",
                PLACEHOLDERS.join(", ")
            ));
        }
        out.push((true, name));
        rest = &after[close + 2..];
    }
    out.push((false, rest));
    Ok(out)
}

/// Whether `t` is a hostname, or a template of one.
pub fn check_hostname(t: &str) -> Result<(), String> {
    let parts = pieces(t)?;
    for (placeholder, text) in &parts {
        let ok = *placeholder
            || text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !ok {
            return Err(format!(
                "invalid hostname {t:?}: letters, digits, '-' and '.' only"
            ));
        }
    }
    if t.is_empty() || (parts.len() == 1 && t.len() > MAX_LEN) {
        return Err(format!("invalid hostname {t:?}: 1 to {MAX_LEN} characters"));
    }
    Ok(())
}

/// The hostname `t` makes for a task: placeholders filled in, what a
/// hostname cannot hold replaced by '-', cut to 64 characters.
pub fn expand_hostname(t: &str, v: &HostnameVars) -> String {
    let Ok(parts) = pieces(t) else {
        return String::new();
    };
    let mut out = String::new();
    for (placeholder, text) in parts {
        if !placeholder {
            out.push_str(text);
            continue;
        }
        let slot = v.task_slot.to_string();
        out.push_str(match text {
            ".Node.ID" => v.node_id,
            ".Node.Hostname" => v.node_hostname,
            ".Service.ID" => v.service_id,
            ".Service.Name" => v.service_name,
            ".Task.ID" => v.task_id,
            ".Task.Name" => v.task_name,
            _ => &slot,
        });
    }
    out.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(MAX_LEN)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_in_and_bad_ones_are_refused() {
        let v = HostnameVars {
            node_hostname: "pi3",
            service_name: "web",
            task_name: "web.2",
            task_slot: 2,
            ..Default::default()
        };
        assert!(check_hostname("{{.Node.Hostname}}-{{ .Task.Slot }}").is_ok());
        assert_eq!(
            expand_hostname("{{.Node.Hostname}}-{{ .Task.Slot }}", &v),
            "pi3-2"
        );
        assert_eq!(expand_hostname("{{.Task.Name}}", &v), "web.2");
        assert_eq!(expand_hostname("plain", &v), "plain");
        assert!(check_hostname("{{.Node.Labels}}")
            .unwrap_err()
            .contains("unknown"));
        assert!(check_hostname("{{.Node.ID").is_err());
        assert!(check_hostname("a b").is_err());
        assert!(check_hostname("").is_err());
        assert!(check_hostname(&"a".repeat(65)).is_err());
    }
}
