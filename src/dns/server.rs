//! One task's DNS server: hickory-server on the UDP and TCP sockets bound
//! at 127.0.0.11:53 inside the task's network namespace. The daemon serves
//! them from the node's namespace, so one server per task knows whose
//! questions it answers (every task asks from its own 127.0.0.1).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use tokio::sync::{watch, Semaphore};
use tracing::debug;

use super::forward::forward;
use super::names::{Answer, Names};

/// Answers about the cluster's services change as tasks come and go, and
/// a resolver that cached them would keep a gone task's address.
const TTL: u32 = 10;
/// A TCP client that sends nothing for this long is dropped.
const TCP_IDLE: Duration = Duration::from_secs(5);
const TCP_BUFFER: usize = 64 * 1024;
/// Questions forwarded to the node's resolvers at once, over all the
/// node's tasks: more get SERVFAIL rather than pile up.
pub const MAX_FORWARDS: usize = 64;

/// A task's running DNS server; dropping it stops it and closes its
/// sockets.
pub struct TaskDns {
    _server: Server<Handler>,
}

/// What every task's server shares on a node.
#[derive(Clone)]
pub struct Shared {
    /// The services of the node's networks, replaced as they change.
    pub names: watch::Receiver<Arc<Names>>,
    /// Bounds the questions sent on to the node's resolvers.
    pub forwards: Arc<Semaphore>,
}

impl TaskDns {
    /// Serves the task on `networks` on its sockets (bound in its netns,
    /// non-blocking). Must be called inside the tokio runtime.
    pub fn start(
        networks: Vec<String>,
        shared: Shared,
        udp: std::net::UdpSocket,
        tcp: std::net::TcpListener,
    ) -> std::io::Result<TaskDns> {
        let udp = tokio::net::UdpSocket::from_std(udp)?;
        let tcp = tokio::net::TcpListener::from_std(tcp)?;
        let mut server = Server::new(Handler {
            networks,
            shared,
            turn: AtomicUsize::new(0),
        });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE, TCP_BUFFER);
        Ok(TaskDns { _server: server })
    }
}

struct Handler {
    networks: Vec<String>,
    shared: Shared,
    /// Rotates answers with several addresses, as glibc takes the first.
    turn: AtomicUsize,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let edns = request.edns.as_ref().map(|e| {
            let mut ours = Edns::new();
            ours.set_max_payload(e.max_payload().max(512));
            ours
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = true;
        let query = match request.request_info() {
            Ok(info)
                if info.metadata.message_type == MessageType::Query
                    && info.metadata.op_code == OpCode::Query =>
            {
                info.query.original().clone()
            }
            Ok(_) => {
                return send(
                    &mut response,
                    builder.error_msg(&meta, ResponseCode::NotImp),
                    request,
                )
                .await
            }
            Err(_) => {
                return send(
                    &mut response,
                    builder.error_msg(&meta, ResponseCode::FormErr),
                    request,
                )
                .await
            }
        };
        let names = self.shared.names.borrow().clone();
        let asked = query.name().to_ascii();
        match names.answer(&self.networks, &asked) {
            Answer::Addresses(addrs) => {
                meta.authoritative = true;
                let wanted = matches!(query.query_type(), RecordType::A | RecordType::ANY)
                    && query.query_class() == DNSClass::IN;
                let records: Vec<Record> = if wanted {
                    self.rotate(addrs)
                        .into_iter()
                        .map(|a| Record::from_rdata(query.name().clone(), TTL, RData::A(A(a))))
                        .collect()
                } else {
                    // The name is there, with no address of that type
                    // (AAAA included: tasks have IPv4 only).
                    Vec::new()
                };
                let r = builder.build(meta, records.iter(), [], [], []);
                send(&mut response, r, request).await
            }
            Answer::NoSuchName => {
                meta.authoritative = true;
                meta.response_code = ResponseCode::NXDomain;
                let r = builder.build_no_records(meta);
                send(&mut response, r, request).await
            }
            Answer::Forward => {
                let Ok(_slot) = self.shared.forwards.clone().try_acquire_owned() else {
                    debug!(name = %asked, "too many questions for the node's resolvers");
                    return send(
                        &mut response,
                        builder.error_msg(&meta, ResponseCode::ServFail),
                        request,
                    )
                    .await;
                };
                let Some(answer) = forward(request.as_slice(), request.metadata.id).await else {
                    return send(
                        &mut response,
                        builder.error_msg(&meta, ResponseCode::ServFail),
                        request,
                    )
                    .await;
                };
                meta.response_code = answer.metadata.response_code;
                meta.truncation = answer.metadata.truncation;
                meta.authoritative = answer.metadata.authoritative;
                let r = builder.build(
                    meta,
                    answer.answers.iter(),
                    answer.authorities.iter(),
                    [],
                    answer.additionals.iter(),
                );
                send(&mut response, r, request).await
            }
        }
    }
}

impl Handler {
    fn rotate(&self, mut addrs: Vec<Ipv4Addr>) -> Vec<Ipv4Addr> {
        if addrs.len() > 1 {
            let n = self.turn.fetch_add(1, Ordering::Relaxed) % addrs.len();
            addrs.rotate_left(n);
        }
        addrs
    }
}

/// Sends the response; a failure to send is the client's loss (it asks
/// again), reported as SERVFAIL to the server's own accounting.
async fn send<'a, R: ResponseHandler>(
    handle: &mut R,
    response: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    request: &Request,
) -> ResponseInfo {
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            debug!(error = %e, "cannot send a DNS answer");
            let mut meta = Metadata::response_from_request(&request.metadata);
            meta.response_code = ResponseCode::ServFail;
            hickory_server::proto::op::Header {
                metadata: meta,
                counts: Default::default(),
            }
            .into()
        }
    }
}
