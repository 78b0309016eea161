//! A minimum data rate for peers, enforced below hyper.
//!
//! Total timeouts alone let a slow peer hold a connection slot for their
//! whole length (a "slow loris"). [`RateGuard`] wraps a connection's
//! stream and, while the server is waiting for the peer (for a request
//! head, or for the body of a request being read), requires the bytes to
//! keep coming: after `grace`, at least `rate` bytes per second on average
//! since the wait began. Each byte received moves the deadline on by
//! `1/rate` seconds; when the deadline passes, reads fail with
//! [`io::ErrorKind::TimedOut`] and hyper closes the connection. While the
//! server is busy with a request (peeling, storing, answering) nothing is
//! required of the peer.
//!
//! The request handler says which phase the connection is in through the
//! shared [`Phase`]: [`Phase::wait`] when it starts reading a body and when
//! it has answered (the next head is awaited), [`Phase::busy`] while it
//! works. A new connection starts waiting for its first head.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The rule: `rate` bytes per second after `grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    /// Bytes per second required on average; 0 requires nothing.
    pub rate: u64,
    /// Time allowed before the rate is required.
    pub grace: Duration,
}

/// Which phase a connection is in, shared by its [`RateGuard`] and its
/// request handler.
#[derive(Debug)]
pub struct Phase {
    /// When the connection was opened: times below are counted from it.
    origin: Instant,
    /// Whether the server is waiting for the peer.
    waiting: AtomicBool,
    /// When the wait began (microseconds after `origin`).
    since: AtomicU64,
    /// Bytes received when the wait began.
    at_start: AtomicU64,
    /// Bytes received so far.
    received: AtomicU64,
}

impl Phase {
    /// A new connection, waiting for its first request head.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            waiting: AtomicBool::new(true),
            since: AtomicU64::new(0),
            at_start: AtomicU64::new(0),
            received: AtomicU64::new(0),
        })
    }

    /// The server now waits for the peer (a body, or the next head).
    pub fn wait(&self) {
        let now = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.since.store(now, Ordering::Relaxed);
        self.at_start
            .store(self.received.load(Ordering::Relaxed), Ordering::Relaxed);
        self.waiting.store(true, Ordering::Release);
    }

    /// The server is working on a request: nothing is required of the peer.
    pub fn busy(&self) {
        self.waiting.store(false, Ordering::Release);
    }

    /// When the peer will have been too slow, if the server is waiting.
    fn deadline(&self, rule: MinRate) -> Option<Instant> {
        if rule.rate == 0 || !self.waiting.load(Ordering::Acquire) {
            return None;
        }
        let since = Duration::from_micros(self.since.load(Ordering::Relaxed));
        let got = self
            .received
            .load(Ordering::Relaxed)
            .saturating_sub(self.at_start.load(Ordering::Relaxed));
        let earned = Duration::from_micros(got.saturating_mul(1_000_000) / rule.rate);
        Some(self.origin + since + rule.grace + earned)
    }
}

/// A stream whose reads fail once the peer falls below the minimum rate
/// while the server waits for it.
pub struct RateGuard<S> {
    inner: S,
    phase: Arc<Phase>,
    rule: MinRate,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> RateGuard<S> {
    /// Guards `inner` with `rule`, in the phases `phase` reports.
    pub fn new(inner: S, phase: Arc<Phase>, rule: MinRate) -> Self {
        Self {
            inner,
            phase,
            rule,
            timer: None,
        }
    }

    /// With no data to read: fails if the deadline has passed, else makes
    /// sure the task is woken when it does.
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(deadline) = self.phase.deadline(self.rule) else {
            return Poll::Pending;
        };
        if Instant::now() >= deadline {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "peer below the minimum data rate",
            )));
        }
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "peer below the minimum data rate",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RateGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = (buf.filled().len() - before) as u64;
                self.phase.received.fetch_add(n, Ordering::Relaxed);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check(cx),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RateGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const RULE: MinRate = MinRate {
        rate: 100,
        grace: Duration::from_secs(2),
    };

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_cut_off_after_the_grace() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut guard = RateGuard::new(ours, Phase::new(), RULE);
        let start = Instant::now();
        let mut buf = [0u8; 8];
        let err = guard.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), RULE.grace);
    }

    #[tokio::test(start_paused = true)]
    async fn each_byte_buys_time_and_a_trickle_is_cut_off() {
        let (ours, mut theirs) = tokio::io::duplex(4096);
        let mut guard = RateGuard::new(ours, Phase::new(), RULE);
        let start = Instant::now();
        // One byte a second, far below 100/s: allowed 2 s + 10 ms per byte.
        let trickle = tokio::spawn(async move {
            for _ in 0..10 {
                if theirs.write_all(b"x").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            theirs
        });
        let mut buf = [0u8; 8];
        let mut got = 0;
        let err = loop {
            match guard.read(&mut buf).await {
                Ok(n) => got += n,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(got, 3, "bytes at 0 s, 1 s and 2 s arrive in time");
        assert_eq!(start.elapsed(), Duration::from_millis(2030));
        drop(trickle);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_required_while_busy_and_a_new_wait_starts_afresh() {
        let (ours, mut theirs) = tokio::io::duplex(4096);
        let phase = Phase::new();
        let mut guard = RateGuard::new(ours, phase.clone(), RULE);
        phase.busy();
        let reading = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let n = guard.read(&mut buf).await;
            (n.map(|n| buf[..n].to_vec()), guard)
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        theirs.write_all(b"late").await.unwrap();
        let (got, mut guard) = reading.await.unwrap();
        assert_eq!(got.unwrap(), b"late");
        phase.wait();
        let start = Instant::now();
        let mut buf = [0u8; 8];
        assert!(guard.read(&mut buf).await.is_err());
        assert_eq!(start.elapsed(), RULE.grace);
    }
}
