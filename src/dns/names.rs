//! Which addresses a name has for one task: the services of the networks
//! it is on, as the managers last described them. Pure, so that every rule
//! is tested without sockets.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::types::ServiceView;

/// The prefix that asks for a service's tasks rather than its virtual IP,
/// as in Docker: `tasks.db`.
const TASKS_PREFIX: &str = "tasks.";

/// What a name is, for a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A service of one of the task's networks: these addresses (none when
    /// it has no running task, or no address of the type asked for).
    Addresses(Vec<Ipv4Addr>),
    /// A single-label name, or `tasks.` of one, that no service of the
    /// task's networks has: no such name (it is not sent to the node's
    /// resolvers, which could only say the same, slowly or not at all).
    NoSuchName,
    /// Anything else: the node's resolvers answer it.
    Forward,
}

/// The services of the node's networks, by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Names {
    /// Lowercased service name → its entry on each network it is on.
    by_name: BTreeMap<String, Vec<Entry>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    network: String,
    /// None in DNS round-robin mode (`--endpoint-mode dnsrr`).
    vip: Option<Ipv4Addr>,
    tasks: Vec<Ipv4Addr>,
}

impl Names {
    /// From the managers' views; a view's empty (or unreadable) VIP means
    /// the service is in DNS round-robin mode.
    pub fn new(views: &[ServiceView]) -> Names {
        let mut by_name: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for v in views {
            by_name
                .entry(v.name.to_ascii_lowercase())
                .or_default()
                .push(Entry {
                    network: v.network.clone(),
                    vip: v.vip.parse().ok(),
                    tasks: v.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
                });
        }
        Names { by_name }
    }

    /// What `name` (as asked, any case, with or without the final dot)
    /// is for a task on `networks`: only services that share one of them
    /// are seen.
    pub fn answer(&self, networks: &[String], name: &str) -> Answer {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if let Some(entries) = self.shared(networks, &name) {
            let mut out = Vec::new();
            for e in entries {
                match e.vip {
                    Some(vip) => out.push(vip),
                    None => out.extend(&e.tasks),
                }
            }
            return Answer::Addresses(dedup(out));
        }
        if let Some(service) = name.strip_prefix(TASKS_PREFIX) {
            if let Some(entries) = self.shared(networks, service) {
                let out = entries.flat_map(|e| e.tasks.iter().copied()).collect();
                return Answer::Addresses(dedup(out));
            }
            if !service.contains('.') {
                return Answer::NoSuchName;
            }
        }
        if name.contains('.') {
            Answer::Forward
        } else {
            Answer::NoSuchName
        }
    }

    /// The entries of service `name` on the task's networks, if it has any.
    fn shared<'a>(
        &'a self,
        networks: &'a [String],
        name: &str,
    ) -> Option<impl Iterator<Item = &'a Entry> + 'a> {
        let entries = self.by_name.get(name)?;
        if !entries.iter().any(|e| networks.contains(&e.network)) {
            return None;
        }
        Some(
            entries
                .iter()
                .filter(move |e| networks.contains(&e.network)),
        )
    }
}

/// Sorted and without repeats, so that answers are stable (the server
/// rotates them for round-robin).
fn dedup(mut v: Vec<Ipv4Addr>) -> Vec<Ipv4Addr> {
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, network: &str, vip: &str, tasks: &[&str]) -> ServiceView {
        ServiceView {
            name: name.into(),
            network: network.into(),
            vip: vip.into(),
            addresses: tasks.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn addrs(v: &[&str]) -> Answer {
        Answer::Addresses(v.iter().map(|a| a.parse().unwrap()).collect())
    }

    fn names() -> Names {
        Names::new(&[
            view("db", "n1", "10.1.0.2", &["10.0.1.5", "10.0.2.7"]),
            view("Web", "n1", "10.1.0.3", &["10.0.1.6"]),
            view("Web", "n2", "10.2.0.3", &["10.0.1.6"]),
            view("cache", "n1", "", &["10.0.2.9", "10.0.1.8"]),
            view("secret", "n3", "10.3.0.2", &["10.0.3.2"]),
        ])
    }

    #[test]
    fn a_service_name_is_its_virtual_ip_on_the_task_s_networks() {
        let n = names();
        let on = |nets: &[&str]| nets.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(n.answer(&on(&["n1"]), "db"), addrs(&["10.1.0.2"]));
        assert_eq!(n.answer(&on(&["n1"]), "DB."), addrs(&["10.1.0.2"]));
        assert_eq!(n.answer(&on(&["n2"]), "web"), addrs(&["10.2.0.3"]));
        assert_eq!(
            n.answer(&on(&["n1", "n2"]), "web"),
            addrs(&["10.1.0.3", "10.2.0.3"])
        );
    }

    #[test]
    fn tasks_dot_name_is_every_running_task_and_dnsrr_names_are_too() {
        let n = names();
        let n1 = vec!["n1".to_string()];
        assert_eq!(n.answer(&n1, "tasks.db"), addrs(&["10.0.1.5", "10.0.2.7"]));
        assert_eq!(n.answer(&n1, "cache"), addrs(&["10.0.1.8", "10.0.2.9"]));
        assert_eq!(
            n.answer(&n1, "tasks.cache"),
            addrs(&["10.0.1.8", "10.0.2.9"])
        );
    }

    #[test]
    fn a_service_of_another_network_is_no_such_name_and_dotted_names_go_out() {
        let n = names();
        let n1 = vec!["n1".to_string()];
        assert_eq!(n.answer(&n1, "secret"), Answer::NoSuchName);
        assert_eq!(n.answer(&n1, "tasks.secret"), Answer::NoSuchName);
        assert_eq!(n.answer(&n1, "nothing"), Answer::NoSuchName);
        assert_eq!(n.answer(&n1, "example.com"), Answer::Forward);
        assert_eq!(n.answer(&n1, "tasks.example.com."), Answer::Forward);
        assert_eq!(n.answer(&[], "db"), Answer::NoSuchName);
    }
}
