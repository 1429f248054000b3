//! The CLI's side of the control API: HTTP/1.1 over the daemon's unix
//! socket, JSON in and out. A connection failure names the socket and says
//! what to run.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;

use crate::api::types::ErrorBody;

pub struct Client {
    socket: PathBuf,
}

/// What the daemon answered when it refused a request: commands that know
/// a remedy (a flag) add it, as the API names no CLI flag.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub status: hyper::StatusCode,
    pub message: String,
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

impl Client {
    pub fn new(socket: &Path) -> Client {
        Client {
            socket: socket.to_path_buf(),
        }
    }

    async fn send(&self, req: Request<BoxBody>) -> anyhow::Result<Response<Incoming>> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|e| {
            anyhow!(
                "cannot connect to the shoal daemon at {}: {e}. Is `shoal daemon` running? \
                 (set --socket or SHOAL_SOCKET to use another socket)",
                self.socket.display()
            )
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("handshake with the shoal daemon failed")?;
        // The connection drives itself until the response body is read.
        tokio::spawn(conn);
        let resp = sender
            .send_request(req)
            .await
            .context("the shoal daemon closed the connection")?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => Err(Refused {
                status,
                message: e.message,
            }
            .into()),
            Err(_) => Err(anyhow!(
                "the shoal daemon answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            )),
        }
    }

    /// POSTs to `path` asking to upgrade the connection to `protocol`;
    /// the raw connection once the daemon switched.
    pub async fn upgrade(
        &self,
        path: &str,
        protocol: &str,
    ) -> anyhow::Result<TokioIo<hyper::upgrade::Upgraded>> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|e| {
            anyhow!(
                "cannot connect to the shoal daemon at {}: {e}. Is `shoal daemon` running?",
                self.socket.display()
            )
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("handshake with the shoal daemon failed")?;
        tokio::spawn(conn.with_upgrades());
        let mut req = Self::request(Method::POST, path, Self::full(Vec::new()));
        let headers = req.headers_mut();
        headers.insert(hyper::header::CONNECTION, "upgrade".parse()?);
        headers.insert(hyper::header::UPGRADE, protocol.parse()?);
        let resp = sender
            .send_request(req)
            .await
            .context("the shoal daemon closed the connection")?;
        if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            return Err(match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(e) => Refused {
                    status,
                    message: e.message,
                }
                .into(),
                Err(_) => anyhow!("the shoal daemon answered {status}"),
            });
        }
        Ok(TokioIo::new(hyper::upgrade::on(resp).await?))
    }

    fn request(method: Method, path: &str, body: BoxBody) -> Request<BoxBody> {
        Request::builder()
            .method(method)
            .uri(format!("http://shoal{path}"))
            .header("host", "shoal")
            .header("content-type", "application/json")
            .body(body)
            .expect("a valid request")
    }

    fn full(bytes: Vec<u8>) -> BoxBody {
        Full::new(Bytes::from(bytes))
            .map_err(|never| match never {})
            .boxed()
    }

    async fn json<T: DeserializeOwned>(resp: Response<Incoming>) -> anyhow::Result<T> {
        let body = resp.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&body).context("cannot decode the daemon's answer")
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let req = Self::request(Method::GET, path, Self::full(Vec::new()));
        Self::json(self.send(req).await?).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let req = Self::request(Method::POST, path, Self::full(serde_json::to_vec(body)?));
        Self::json(self.send(req).await?).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let req = Self::request(Method::PUT, path, Self::full(serde_json::to_vec(body)?));
        Self::json(self.send(req).await?).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let req = Self::request(Method::DELETE, path, Self::full(Vec::new()));
        Self::json(self.send(req).await?).await
    }

    /// POST a file as the request body, streamed.
    pub async fn upload<T: DeserializeOwned>(&self, path: &str, file: &Path) -> anyhow::Result<T> {
        let f = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("cannot open {}", file.display()))?;
        let stream = tokio_util_stream(f);
        let body = StreamBody::new(stream).boxed();
        Self::json(self.send(Self::request(Method::POST, path, body)).await?).await
    }

    /// GET a newline-delimited JSON stream, calling `f` per item.
    pub async fn stream<T: DeserializeOwned>(
        &self,
        path: &str,
        f: impl FnMut(T),
    ) -> anyhow::Result<()> {
        let req = Self::request(Method::GET, path, Self::full(Vec::new()));
        Self::lines(self.send(req).await?, f).await
    }

    /// POST `body`, then read the answer as a newline-delimited JSON
    /// stream, calling `f` per item.
    pub async fn post_stream<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        f: impl FnMut(T),
    ) -> anyhow::Result<()> {
        let req = Self::request(Method::POST, path, Self::full(serde_json::to_vec(body)?));
        Self::lines(self.send(req).await?, f).await
    }

    async fn lines<T: DeserializeOwned>(
        resp: Response<Incoming>,
        mut f: impl FnMut(T),
    ) -> anyhow::Result<()> {
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.context("the daemon's stream broke")?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            buf.extend_from_slice(data);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                f(serde_json::from_slice(&line).context("bad line in stream")?);
            }
        }
        Ok(())
    }
}

/// A file as a stream of 64 KiB body frames, so a large image is never
/// held in memory whole.
fn tokio_util_stream(
    f: tokio::fs::File,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + Sync + 'static {
    use tokio::io::AsyncReadExt;
    futures::stream::unfold(Some(f), |f| async move {
        let mut f = f?;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Frame::data(Bytes::from(buf))), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}
