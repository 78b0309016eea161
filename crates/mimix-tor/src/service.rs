//! Onion services: launch, accept port-80 streams, report publication.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use arti_client::{ErrorKind, HasKind};

use futures::future::Either;
use futures::{FutureExt, Stream, StreamExt};
use safelog::DisplayRedacted;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};
use tor_cell::relaycell::msg::Connected;
use tor_hsservice::status::State;
use tor_hsservice::{HsNickname, RendRequest, RunningOnionService, StreamRequest};
use tor_proto::stream::IncomingStreamRequest;

use crate::perms::check_key_permissions;
use crate::{BoxedStream, TorError, TorTransport};

/// The only virtual port an [`OnionService`] accepts streams on.
pub const ONION_SERVICE_PORT: u16 = 80;

/// How many accepted streams may wait for [`IncomingStreams`] to take them.
const QUEUE: usize = 32;

/// How long accepting one stream (sending CONNECTED) may take.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a service-side stream waits, on shutdown, for the client to
/// close first.
const LINGER: Duration = Duration::from_secs(3);

/// How long a launch waits for a just-stopped service of the same name to
/// release its state.
const RELAUNCH_WAIT: Duration = Duration::from_secs(10);

/// How often a launch retries meanwhile.
const RELAUNCH_POLL: Duration = Duration::from_millis(100);

/// How many bytes a lingering stream discards before giving up waiting.
const LINGER_DISCARD_LIMIT: usize = 64 * 1024;

/// Whether an onion service's descriptor is out, as far as Arti can tell.
///
/// On a private test network without shared-random values Arti never
/// reports [`Running`](tor_hsservice::status::State::Running) although the
/// service is reachable, so several Arti states count as published here.
/// This is a hint: clients should retry until a deadline either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishState {
    /// Building introduction points and publishing the descriptor.
    Starting,
    /// Introduction points exist and the descriptor has been uploaded to at
    /// least some directories.
    Published,
    /// Arti lost its introduction points and is rebuilding them; the
    /// service is probably unreachable meanwhile.
    Recovering,
    /// The service has failed and is not reachable.
    Broken,
}

impl PublishState {
    /// Map Arti's state.
    fn from_arti(state: State) -> Self {
        match state {
            State::DegradedReachable | State::DegradedUnreachable | State::Running => {
                Self::Published
            }
            State::Recovering => Self::Recovering,
            State::Broken => Self::Broken,
            _ => Self::Starting,
        }
    }
}

/// A running onion service. Dropping it stops the service.
pub struct OnionService {
    /// Arti's service; dropping the last reference stops it.
    running: Arc<RunningOnionService>,
    /// Our `xxxx.onion` address.
    address: String,
    /// Turns rendezvous requests into accepted streams.
    accept_task: JoinHandle<()>,
}

impl std::fmt::Debug for OnionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnionService").finish_non_exhaustive()
    }
}

impl OnionService {
    /// The service's address, `<56 base32 characters>.onion`.
    pub fn onion_address(&self) -> &str {
        &self.address
    }

    /// Whether the descriptor is out, as far as Arti can tell.
    pub fn publish_state(&self) -> PublishState {
        PublishState::from_arti(self.running.status().state())
    }

    /// Wait until [`PublishState::Published`], failing after `timeout` or
    /// if the service breaks.
    pub async fn wait_published(&self, timeout: Duration) -> Result<(), TorError> {
        let mut events = self.running.status_events();
        let wait = async {
            let mut status = self.running.status();
            loop {
                match PublishState::from_arti(status.state()) {
                    PublishState::Published => return Ok(()),
                    PublishState::Broken => {
                        return Err(TorError::PublishFailed(format!(
                            "{:?}: {:?}",
                            status.state(),
                            status.current_problem()
                        )));
                    }
                    PublishState::Starting | PublishState::Recovering => {}
                }
                status = match events.next().await {
                    Some(s) => s,
                    None => return Err(TorError::PublishFailed("service stopped".into())),
                };
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| TorError::PublishTimeout(timeout))?
    }
}

impl Drop for OnionService {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// Which rendezvous circuit a stream came on: a number given to each
/// circuit in the order the service accepted them (nothing about the
/// client behind it is known). Streams of one client share a circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CircuitId(pub u64);

/// The streams clients open to an [`OnionService`] on port 80, in arrival
/// order, with the circuit each came on. Ends when the service stops.
///
/// Each stream, when shut down, first waits up to a few seconds for the
/// client to close its side (see the crate documentation on END cells).
#[derive(Debug)]
pub struct IncomingStreams(mpsc::Receiver<(BoxedStream, CircuitId)>);

impl IncomingStreams {
    /// The next incoming stream, or `None` once the service has stopped.
    pub async fn accept(&mut self) -> Option<BoxedStream> {
        self.0.recv().await.map(|(s, _)| s)
    }

    /// The next incoming stream and the rendezvous circuit it came on, or
    /// `None` once the service has stopped.
    pub async fn accept_with_circuit(&mut self) -> Option<(BoxedStream, CircuitId)> {
        self.0.recv().await
    }
}

impl Stream for IncomingStreams {
    type Item = BoxedStream;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BoxedStream>> {
        self.0.poll_recv(cx).map(|s| s.map(|(s, _)| s))
    }
}

/// Accepts every rendezvous request (as `tor_hsservice::handle_rend_requests`
/// does) and numbers the circuits, so each stream request carries its
/// circuit's number.
fn numbered_stream_requests<S>(rend_requests: S) -> impl Stream<Item = (CircuitId, StreamRequest)>
where
    S: Stream<Item = RendRequest>,
{
    rend_requests
        .enumerate()
        .flat_map_unordered(None, |(n, rend_request)| {
            let circuit = CircuitId(n as u64);
            Box::pin(rend_request.accept())
                .map(move |outcome| match outcome {
                    Ok(streams) => Either::Left(streams.map(move |s| (circuit, s))),
                    Err(e) => {
                        tracing::debug!(error = %e, "accepting a rendezvous request failed");
                        Either::Right(futures::stream::empty())
                    }
                })
                .flatten_stream()
        })
}

impl TorTransport {
    /// Launch the onion service named `nickname` (letters, digits, `-`,
    /// `_`).
    ///
    /// Its identity key lives in Arti's keystore under the state directory
    /// and is created on first launch, so the address stays the same across
    /// restarts with the same state directory. Returns the address
    /// (`xxxx.onion`), the incoming streams, and the service handle, which
    /// must be kept alive.
    ///
    /// Only streams to port [`ONION_SERVICE_PORT`] are accepted; any other
    /// request closes the client's circuit, as C tor does by default.
    /// Publication takes about a second on a small network; see
    /// [`OnionService::wait_published`].
    pub async fn launch_onion_service(
        &self,
        nickname: &str,
    ) -> Result<(String, IncomingStreams, OnionService), TorError> {
        let nick: HsNickname = nickname
            .parse()
            .map_err(|_| TorError::InvalidNickname(nickname.to_owned()))?;
        let mut cfg = arti_client::config::onion_service::OnionServiceConfigBuilder::default();
        cfg.nickname(nick);
        cfg.max_concurrent_streams_per_circuit(self.max_streams_per_circuit());
        let cfg = cfg.build().map_err(|e| TorError::Config(e.to_string()))?;
        // A service of the same name that was just dropped keeps its state
        // locked until its tasks have wound down: wait for that.
        let deadline = Instant::now() + RELAUNCH_WAIT;
        let launched = loop {
            match self.client().launch_onion_service(cfg.clone()) {
                Err(e)
                    if e.kind() == ErrorKind::LocalResourceAlreadyInUse
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(RELAUNCH_POLL).await;
                }
                other => break other,
            }
        };
        let (running, rend_requests) = launched
            .map_err(|e| TorError::Launch(e.to_string()))?
            .ok_or_else(|| TorError::Launch("the service is disabled".into()))?;
        // The identity key exists now: refuse to run with one others can read.
        check_key_permissions(self.state_dir())?;
        let address = running
            .onion_address()
            .ok_or(TorError::NoOnionAddress)?
            .display_unredacted()
            .to_string();
        let (tx, rx) = mpsc::channel(QUEUE);
        let accept_task = tokio::spawn(async move {
            let requests = numbered_stream_requests(rend_requests);
            let mut requests = std::pin::pin!(requests);
            while let Some((circuit, request)) = requests.next().await {
                if tx.is_closed() {
                    break;
                }
                tokio::spawn(accept_one(request, circuit, tx.clone()));
            }
        });
        let service = OnionService {
            running,
            address: address.clone(),
            accept_task,
        };
        Ok((address, IncomingStreams(rx), service))
    }
}

/// Accept one stream request if it is for port 80, else close the circuit.
async fn accept_one(
    request: StreamRequest,
    circuit: CircuitId,
    tx: mpsc::Sender<(BoxedStream, CircuitId)>,
) {
    let wanted = matches!(
        request.request(),
        IncomingStreamRequest::Begin(b) if b.port() == ONION_SERVICE_PORT
    );
    if !wanted {
        tracing::debug!("closing a circuit that asked for something other than port 80");
        if let Err(e) = request.shutdown_circuit() {
            tracing::debug!(error = %e, "closing the circuit failed");
        }
        return;
    }
    match tokio::time::timeout(ACCEPT_TIMEOUT, request.accept(Connected::new_empty())).await {
        Ok(Ok(stream)) => {
            // Fails only if nobody takes incoming streams any more.
            let stream: BoxedStream = Box::new(Lingering::new(stream));
            let _ = tx.send((stream, circuit)).await;
        }
        Ok(Err(e)) => tracing::debug!(error = %e, "accepting an onion stream failed"),
        Err(_) => tracing::debug!("accepting an onion stream timed out"),
    }
}

/// A service-side stream whose shutdown waits (up to [`LINGER`]) for the
/// client to close first, so that the client never sees our END cell
/// before it has read the whole response.
struct Lingering<S> {
    /// The stream.
    inner: S,
    /// The linger deadline, once shutdown has begun.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Whether the lingering is over.
    lingered: bool,
    /// Bytes discarded while lingering.
    discarded: usize,
}

impl<S> Lingering<S> {
    /// Wrap a stream.
    fn new(inner: S) -> Self {
        Self {
            inner,
            deadline: None,
            lingered: false,
            discarded: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Lingering<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if !this.lingered {
            ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
            let deadline = this
                .deadline
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
            let mut scratch = [0u8; 1024];
            loop {
                let mut rb = ReadBuf::new(&mut scratch);
                match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                    // End of file or an error: the client has gone.
                    Poll::Ready(Ok(())) if rb.filled().is_empty() => break,
                    Poll::Ready(Err(_)) => break,
                    Poll::Ready(Ok(())) => {
                        this.discarded += rb.filled().len();
                        if this.discarded > LINGER_DISCARD_LIMIT {
                            break;
                        }
                    }
                    Poll::Pending => {
                        if deadline.as_mut().poll(cx).is_ready() {
                            break;
                        }
                        return Poll::Pending;
                    }
                }
            }
            this.lingered = true;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_the_peer_to_close() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut ours = Lingering::new(ours);
        ours.write_all(b"reply").await.unwrap();
        let shut = tokio::spawn(async move {
            ours.shutdown().await.unwrap();
            tokio::time::Instant::now()
        });
        let mut got = [0u8; 5];
        theirs.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"reply");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let closed_at = tokio::time::Instant::now();
        drop(theirs);
        let done = shut.await.unwrap();
        assert!(
            done >= closed_at,
            "shutdown finished before the peer closed"
        );
        assert!(done - closed_at < Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_gives_up_after_the_linger_time() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut ours = Lingering::new(ours);
        let start = tokio::time::Instant::now();
        ours.shutdown().await.unwrap();
        assert_eq!(tokio::time::Instant::now() - start, LINGER);
    }

    #[test]
    fn arti_states_map_to_publish_states() {
        assert_eq!(
            PublishState::from_arti(State::DegradedUnreachable),
            PublishState::Published
        );
        assert_eq!(
            PublishState::from_arti(State::Running),
            PublishState::Published
        );
        assert_eq!(
            PublishState::from_arti(State::Bootstrapping),
            PublishState::Starting
        );
        assert_eq!(
            PublishState::from_arti(State::Recovering),
            PublishState::Recovering
        );
        assert_eq!(PublishState::from_arti(State::Broken), PublishState::Broken);
        // Arti reports Shutdown for a moment after launch.
        assert_eq!(
            PublishState::from_arti(State::Shutdown),
            PublishState::Starting
        );
    }
}
