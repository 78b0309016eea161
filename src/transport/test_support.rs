//! Shared test fixtures: a collector test double, a running loopback
//! server, raw HTTP helpers and scripted peers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Collector, DialFuture, Dialer, PeerPolicy, Rejection, Server, ServerLimits};

/// The armoured sample packet.
pub const PACKET: &str = include_str!("../../tests/vectors/samples/http-post-packet.txt");
/// The form body python-requests sends for [`PACKET`].
pub const BODY: &str = include_str!("../../tests/vectors/samples/http-post-body.txt");
/// The full request python-requests sends for [`PACKET`].
pub const REQUEST: &[u8] = include_bytes!("../../tests/vectors/samples/http-post-request.txt");

/// A stand-in for the node: stores what it is given in memory, refuses
/// repeats, and can be told to be overloaded or broken.
#[derive(Default)]
pub struct TestCollector {
    pub received: Mutex<Vec<String>>,
    seen: Mutex<HashSet<String>>,
    pub overloaded: AtomicBool,
    pub broken: AtomicBool,
    pub conf: Mutex<String>,
}

impl TestCollector {
    pub fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

impl Collector for TestCollector {
    async fn submit(&self, armoured: String) -> Result<(), Rejection> {
        if self.overloaded.load(Ordering::SeqCst) {
            return Err(Rejection::Overloaded);
        }
        if self.broken.load(Ordering::SeqCst) {
            return Err(Rejection::Internal);
        }
        if !armoured.contains("-----END MIMIX MESSAGE-----") {
            return Err(Rejection::Invalid("no END line"));
        }
        if !self.seen.lock().unwrap().insert(armoured.clone()) {
            return Err(Rejection::Replay);
        }
        self.received.lock().unwrap().push(armoured);
        Ok(())
    }

    fn remailer_conf(&self) -> String {
        self.conf.lock().unwrap().clone()
    }
}

/// Limits with short timeouts, for tests.
pub fn test_limits() -> ServerLimits {
    ServerLimits {
        retry_after: Duration::from_secs(7),
        shutdown_grace: Duration::from_secs(2),
        ..ServerLimits::default()
    }
}

/// A server running `serve_tcp` on an ephemeral loopback port.
pub struct Running {
    pub addr: SocketAddr,
    pub collector: Arc<TestCollector>,
    pub server: Server<TestCollector>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

impl Running {
    pub async fn start(limits: ServerLimits) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let collector = Arc::new(TestCollector::default());
        let shutdown = CancellationToken::new();
        let server = Server::new(Arc::clone(&collector), limits, shutdown.clone());
        let task = tokio::spawn({
            let server = server.clone();
            async move { server.serve_tcp(listener).await }
        });
        Self {
            addr,
            collector,
            server,
            shutdown,
            task,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    pub async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// Reads one response framed by `Content-Length` (within 5 s).
pub async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> RawResponse {
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0_u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before a response head");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let status = head[9..12].parse().unwrap();
        let mut response = RawResponse {
            status,
            head,
            body: buf[head_end..].to_vec(),
        };
        let len: usize = response.header("content-length").unwrap().parse().unwrap();
        while response.body.len() < len {
            let mut chunk = [0_u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed inside a response body");
            response.body.extend_from_slice(&chunk[..n]);
        }
        response
    })
    .await
    .expect("no response within 5 s")
}

/// Sends `request` on a new connection and reads the response.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_response(&mut stream).await
}

/// A `POST /collector.py/msg` with the given content type and body.
pub fn post_request(content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /collector.py/msg HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Waits (at most 5 s) until the peer closes `stream`: EOF or an error.
pub async fn expect_closed<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut seen = Vec::new();
        let mut chunk = [0_u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return seen,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("connection not closed within 5 s")
}

/// Reads one request (head and `Content-Length` body) from `stream`.
pub async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0_u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a request head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let len = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let mut chunk = [0_u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed inside a request body");
        body.extend_from_slice(&chunk[..n]);
    }
    (head, body)
}

/// A scripted peer on an ephemeral loopback port: for each connection it
/// reads one request, hands it to the channel, and writes `response`.
pub async fn scripted_peer(
    response: Vec<u8>,
) -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let request = read_request(&mut stream).await;
            let _ = tx.send(request);
            // The client may hang up early; that is its business.
            let _ = stream.write_all(&response).await;
            let _ = stream.shutdown().await;
        }
    });
    (addr, rx)
}

/// A dialer whose streams come from a closure: in-memory pipes, streams
/// that never connect, or TCP under another policy.
pub struct FnDialer<F> {
    pub policy: PeerPolicy,
    pub dials: AtomicUsize,
    pub make: F,
}

impl<F> FnDialer<F> {
    pub fn new(policy: PeerPolicy, make: F) -> Self {
        Self {
            policy,
            dials: AtomicUsize::new(0),
            make,
        }
    }
}

impl<F> Dialer for FnDialer<F>
where
    F: Fn(String, u16) -> DialFuture<'static> + Send + Sync,
{
    fn policy(&self) -> PeerPolicy {
        self.policy
    }

    fn dial<'a>(&'a self, host: &'a str, port: u16) -> DialFuture<'a> {
        self.dials.fetch_add(1, Ordering::SeqCst);
        (self.make)(host.to_owned(), port)
    }
}

/// Boxes an in-memory or TCP stream as a dial result.
pub fn boxed<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    s: S,
) -> io::Result<super::BoxStream> {
    Ok(Box::new(s))
}
