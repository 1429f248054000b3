//! Names that are not the cluster's go to the node's own resolvers, asked
//! from the node's network (where a local stub such as systemd-resolved's
//! 127.0.0.53 is reachable, which it is not from a task).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_server::proto::op::Message;
use tokio::net::UdpSocket;

const HOST_RESOLV: &str = "/etc/resolv.conf";
/// When the node names no resolver, as Docker does.
const DEFAULT_SERVERS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
    IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)),
];
/// glibc asks at most three, each for a while; so do we, so that a task's
/// lookup fails within its own resolver's patience.
const MAX_SERVERS: usize = 3;
const PER_SERVER: Duration = Duration::from_secs(2);
/// The largest answer taken over UDP (EDNS allows up to 64 KiB).
const MAX_ANSWER: usize = 65535;

/// Asks the node's resolvers `query` (a whole DNS message, sent as it came)
/// and returns the first answer to it, or None if none answered.
pub async fn forward(query: &[u8], id: u16) -> Option<Message> {
    let hosts = std::fs::read_to_string(HOST_RESOLV).unwrap_or_default();
    let servers: Vec<SocketAddr> = servers(&hosts)
        .into_iter()
        .map(|ip| (ip, 53).into())
        .collect();
    forward_to(&servers, query, id).await
}

async fn forward_to(servers: &[SocketAddr], query: &[u8], id: u16) -> Option<Message> {
    for &server in servers {
        match ask(server, query, id).await {
            Ok(Some(answer)) => return Some(answer),
            Ok(None) => tracing::debug!(%server, "no answer from the node's resolver"),
            Err(e) => tracing::debug!(%server, error = %e, "the node's resolver"),
        }
    }
    None
}

async fn ask(server: SocketAddr, query: &[u8], id: u16) -> std::io::Result<Option<Message>> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    // A socket of its own, on a port the kernel picks, connected: only the
    // server's datagrams reach it.
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; MAX_ANSWER];
    let wait = async {
        loop {
            let n = socket.recv(&mut buf).await?;
            match Message::from_vec(&buf[..n]) {
                Ok(m) if m.metadata.id == id => return Ok(Some(m)),
                // Garbage, or a late answer to someone else: keep waiting.
                _ => continue,
            }
        }
    };
    match tokio::time::timeout(PER_SERVER, wait).await {
        Ok(r) => r,
        Err(_) => Ok(None),
    }
}

/// The node's resolvers from its resolv.conf (loopback ones included: the
/// node reaches them), or public ones if it names none.
fn servers(resolv: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = resolv
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver")).then_some(())?;
            // A zone (fe80::1%eth0) cannot be used from a plain socket
            // address; such a server is skipped.
            words.next()?.parse().ok()
        })
        .take(MAX_SERVERS)
        .collect();
    if out.is_empty() {
        out.extend(DEFAULT_SERVERS);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_s_resolvers_loopback_included_at_most_three() {
        let conf = "# x\nsearch lan\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\n\
                    nameserver ::1\nnameserver 10.0.0.1\nnameserver 10.0.0.2\n";
        let got: Vec<String> = servers(conf).iter().map(|s| s.to_string()).collect();
        assert_eq!(got, ["127.0.0.53", "::1", "10.0.0.1"]);
        assert_eq!(servers("search lan\n"), DEFAULT_SERVERS.to_vec());
    }

    #[tokio::test]
    async fn the_first_resolver_that_answers_the_question_is_relayed() {
        use hickory_server::proto::op::{MessageType, OpCode, Query};
        use hickory_server::proto::rr::{Name, RecordType};
        // One resolver that never answers, one that answers first with
        // another id (a stray), then right.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let good = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let servers = [silent.local_addr().unwrap(), good.local_addr().unwrap()];
        let mut q = Message::new(4321, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(
            Name::from_ascii("example.com.").unwrap(),
            RecordType::A,
        ));
        let bytes = q.to_vec().unwrap();
        let server = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, from) = good.recv_from(&mut buf).await.unwrap();
            let asked = Message::from_vec(&buf[..n]).unwrap();
            let mut stray = Message::new(1, MessageType::Response, OpCode::Query);
            stray.add_queries(asked.queries.clone());
            good.send_to(&stray.to_vec().unwrap(), from).await.unwrap();
            let mut answer = Message::new(asked.metadata.id, MessageType::Response, OpCode::Query);
            answer.add_queries(asked.queries.clone());
            answer.metadata.response_code = hickory_server::proto::op::ResponseCode::NXDomain;
            good.send_to(&answer.to_vec().unwrap(), from).await.unwrap();
        });
        let got = forward_to(&servers, &bytes, 4321).await.expect("an answer");
        assert_eq!(got.metadata.id, 4321);
        assert_eq!(
            got.metadata.response_code,
            hickory_server::proto::op::ResponseCode::NXDomain
        );
        server.await.unwrap();
    }
}
