//! Which task holds which address of the bridge subnet. In memory only:
//! each task's state file records its address, and `TaskNet::open`
//! adopts them all, so a restarted daemon never hands one out twice.
//! Pure; the choice of the next address is `ipam::next_address`.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::ipam;

pub(super) struct Addresses {
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    by_task: BTreeMap<String, Ipv4Addr>,
}

impl Addresses {
    pub(super) fn new(subnet: Ipv4Net) -> Self {
        Addresses {
            subnet,
            gateway: ipam::gateway(&subnet),
            by_task: BTreeMap::new(),
        }
    }

    pub(super) fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// Whether a task may hold `a`: in the subnet, and neither its network,
    /// broadcast nor gateway address.
    fn usable(&self, a: Ipv4Addr) -> bool {
        self.subnet.contains(&a)
            && a != self.subnet.network()
            && a != self.subnet.broadcast()
            && a != self.gateway
    }

    /// Records that `task` holds `a` (found in its state file). False when
    /// `a` cannot be its address: unusable, or another task's.
    pub(super) fn adopt(&mut self, task: &str, a: Ipv4Addr) -> bool {
        if !self.usable(a) || self.by_task.iter().any(|(t, x)| *x == a && t != task) {
            return false;
        }
        self.by_task.insert(task.to_string(), a);
        true
    }

    pub(super) fn get(&self, task: &str) -> Option<Ipv4Addr> {
        self.by_task.get(task).copied()
    }

    /// The task's address: the one it holds, or the lowest free one after
    /// the gateway. None when the subnet is full.
    pub(super) fn allocate(&mut self, task: &str) -> Option<Ipv4Addr> {
        if let Some(a) = self.get(task) {
            return Some(a);
        }
        let taken: HashSet<Ipv4Addr> = self.by_task.values().copied().collect();
        let a = ipam::next_address(&self.subnet, self.gateway, &taken)?;
        self.by_task.insert(task.to_string(), a);
        Some(a)
    }

    pub(super) fn free(&mut self, task: &str) {
        self.by_task.remove(task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn lowest_free_after_the_gateway_and_reused_after_free() {
        let mut a = Addresses::new("10.20.3.0/24".parse().unwrap());
        assert_eq!(a.gateway(), ip("10.20.3.1"));
        assert_eq!(a.allocate("t1"), Some(ip("10.20.3.2")));
        assert_eq!(a.allocate("t2"), Some(ip("10.20.3.3")));
        // Asking again gives the same address.
        assert_eq!(a.allocate("t1"), Some(ip("10.20.3.2")));
        a.free("t1");
        assert_eq!(a.get("t1"), None);
        assert_eq!(a.allocate("t3"), Some(ip("10.20.3.2")));
    }

    #[test]
    fn adopted_addresses_are_not_given_again() {
        let mut a = Addresses::new("10.20.3.0/24".parse().unwrap());
        assert!(a.adopt("old", ip("10.20.3.2")));
        assert!(a.adopt("old", ip("10.20.3.2")), "adopting twice is fine");
        assert!(!a.adopt("other", ip("10.20.3.2")), "another task's");
        for bad in ["10.20.3.0", "10.20.3.1", "10.20.3.255", "10.20.4.2"] {
            assert!(!a.adopt("x", ip(bad)), "{bad}");
        }
        assert_eq!(a.allocate("new"), Some(ip("10.20.3.3")));
    }

    #[test]
    fn a_full_subnet_says_so() {
        // A /29: .1 gateway, .2 to .6 for tasks, .7 broadcast.
        let mut a = Addresses::new("10.20.3.0/29".parse().unwrap());
        for i in 2..=6 {
            assert_eq!(
                a.allocate(&format!("t{i}")),
                Some(Ipv4Addr::new(10, 20, 3, i))
            );
        }
        assert_eq!(a.allocate("one-too-many"), None);
    }
}
