//! Finding the address other nodes should use to reach this one, when
//! `--advertise` is not given: the listen address if it names one, else the
//! IPv4 address of the interface that holds the default route.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Why no advertise address could be found; the user passes `--advertise`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdvertiseError {
    #[error("invalid listen address {0:?}: {1}")]
    BadListen(String, std::net::AddrParseError),
    #[error("cannot detect the advertise address: this machine has no default route")]
    NoDefaultRoute,
    #[error("cannot detect the advertise address: {0} has no IPv4 address")]
    NoIpv4(String),
}

pub fn detect_advertise(listen: &str) -> Result<String, AdvertiseError> {
    let listen: SocketAddr = listen
        .parse()
        .map_err(|e| AdvertiseError::BadListen(listen.to_string(), e))?;
    if !listen.ip().is_unspecified() {
        return Ok(listen.to_string());
    }
    let iface = default_route_interface().ok_or(AdvertiseError::NoDefaultRoute)?;
    let ip = interface_ipv4(&iface).ok_or(AdvertiseError::NoIpv4(iface))?;
    Ok(SocketAddr::new(IpAddr::V4(ip), listen.port()).to_string())
}

/// The interface of the default route, from /proc/net/route (destination
/// 00000000).
fn default_route_interface() -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    table.lines().skip(1).find_map(|line| {
        let mut cols = line.split_whitespace();
        let iface = cols.next()?;
        (cols.next()? == "00000000").then(|| iface.to_string())
    })
}

fn interface_ipv4(iface: &str) -> Option<Ipv4Addr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|a| {
        if a.interface_name != iface {
            return None;
        }
        let sin = a.address?.as_sockaddr_in().copied()?;
        Some(sin.ip())
    })
}

/// The host of a `host:port` address (an IPv6 one without its brackets);
/// None when there is no port.
pub fn host_of(addr: &str) -> Option<String> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Some(sa.ip().to_string());
    }
    let (host, port) = addr.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    (!host.is_empty()).then(|| host.to_string())
}

/// `host:port`, with brackets around an IPv6 host.
pub fn join_host_port(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => SocketAddr::new(IpAddr::V6(ip), port).to_string(),
        _ => format!("{host}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts_and_ports_split_and_join() {
        use super::{host_of, join_host_port};
        assert_eq!(host_of("10.0.0.2:4290").as_deref(), Some("10.0.0.2"));
        assert_eq!(host_of("[fd00::2]:4290").as_deref(), Some("fd00::2"));
        assert_eq!(host_of("pi3.local:4290").as_deref(), Some("pi3.local"));
        assert_eq!(host_of("10.0.0.2"), None);
        assert_eq!(join_host_port("10.0.0.2", 51820), "10.0.0.2:51820");
        assert_eq!(join_host_port("fd00::2", 51820), "[fd00::2]:51820");
    }

    #[test]
    fn a_concrete_listen_address_is_advertised_as_is() {
        assert_eq!(
            super::detect_advertise("127.0.0.1:4290").unwrap(),
            "127.0.0.1:4290"
        );
        assert!(super::detect_advertise("nonsense").is_err());
    }
}
