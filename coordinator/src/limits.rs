//! Bounds on what a peer can hold: connections per address and in all, how long a connection
//! may stay silent, and how often an address may register a worker.
//!
//! A connection that sends nothing for its idle time (`--idle-seconds`) is closed (workers
//! heartbeat every few seconds, so only idle or dead peers are); connections beyond the caps
//! are closed at once.
//! Loopback peers are exempt from the per-address cap (local tools and benchmarks open many),
//! not from the total. The totals fit under the process's open-file limit, which the
//! coordinator raises at start as far as the hard limit allows ([`open_files`]): a connection
//! refused for the cap costs nothing, while an `accept` failing for want of descriptors would
//! leave the services unable to open their own files.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Worker registrations: a burst of 32 per address, then 2 a second.
pub struct Registrations(DefaultKeyedRateLimiter<IpAddr>);

impl Default for Registrations {
    fn default() -> Self {
        let quota = Quota::per_second(NonZeroU32::new(2).expect("non-zero"))
            .allow_burst(NonZeroU32::new(32).expect("non-zero"));
        Registrations(DefaultKeyedRateLimiter::keyed(quota))
    }
}

impl Registrations {
    /// Whether `ip` may register now.
    pub fn admit(&self, ip: IpAddr) -> bool {
        if self.0.len() > 4096 {
            self.0.retain_recent();
        }
        self.0.check_key(&ip).is_ok()
    }
}

/// Connection caps for one listener.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub per_peer: usize,
    pub total: usize,
    /// A connection that sends nothing this long is closed.
    pub idle: Duration,
}

/// Open files kept back from the connection caps for the coordinator's own: the state and its
/// journal, logs, checkpoints being received, local workers' pipes and sockets.
const RESERVED_FILES: u64 = 128;

/// The process's limit on open files, raised once to the hard limit where it allows (and said).
pub fn open_files() -> u64 {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let before = rlimit::Resource::NOFILE
            .get()
            .map_or(1024, |(soft, _)| soft);
        match rlimit::increase_nofile_limit(rlimit::INFINITY) {
            Ok(now) if now > before => {
                tracing::debug!(from = before, to = now, "open-file limit raised");
                now
            }
            Ok(now) => now,
            Err(e) => {
                tracing::warn!(limit = before, error = %e, "cannot raise the open-file limit");
                before
            }
        }
    })
}

/// `num/den` of the open files left after [`RESERVED_FILES`], at least 16, at most `cap`.
fn share(files: u64, num: u64, den: u64, cap: usize) -> usize {
    let left = files.saturating_sub(RESERVED_FILES) * num / den;
    (left.max(16) as usize).min(cap)
}

/// The gRPC port's: workers keep one connection each; a host runs one worker per GPU. Three
/// quarters of the open files the process may have, at most 4,096.
pub fn grpc(idle: Duration) -> Caps {
    Caps {
        per_peer: 64,
        total: share(open_files(), 3, 4, 4096),
        idle,
    }
}

/// The live page's: browsers open a few connections each. A quarter of the open files, at
/// most 512.
pub fn http(idle: Duration) -> Caps {
    Caps {
        per_peer: 32,
        total: share(open_files(), 1, 4, 512),
        idle,
    }
}

/// Says something at most once per interval, with how many times it was not said.
#[derive(Debug)]
pub struct Quiet {
    every: Duration,
    last: Option<std::time::Instant>,
    held: u64,
}

impl Quiet {
    pub fn every(every: Duration) -> Quiet {
        Quiet {
            every,
            last: None,
            held: 0,
        }
    }

    /// Some(times not said since the last line) when a line is due now; None to stay quiet.
    pub fn due(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.every)
        {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

/// Open connections by peer address, against [`Caps`].
#[derive(Clone)]
pub struct Connections {
    caps: Caps,
    open: Arc<Mutex<(usize, HashMap<IpAddr, usize>)>>,
    /// Refusals are said at most every 10 s, with their count.
    quiet: Arc<Mutex<Quiet>>,
}

/// Holds one connection's place; released when dropped.
pub struct Slot {
    ip: IpAddr,
    open: Arc<Mutex<(usize, HashMap<IpAddr, usize>)>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

impl Connections {
    pub fn new(caps: Caps) -> Connections {
        Connections {
            caps,
            open: Arc::default(),
            quiet: Arc::new(Mutex::new(Quiet::every(Duration::from_secs(10)))),
        }
    }

    pub fn idle(&self) -> Duration {
        self.caps.idle
    }

    pub fn caps(&self) -> Caps {
        self.caps
    }

    fn refused(&self, peer: IpAddr, open: usize, why: &str) {
        let due = self.quiet.lock().unwrap_or_else(|p| p.into_inner()).due();
        if let Some(more) = due {
            tracing::warn!(peer = %peer, open, total_cap = self.caps.total, per_address_cap = self.caps.per_peer, refused_since_last_line = more, "connection refused: {why}");
        }
    }

    /// A place for a new connection from `ip`, or None (with a warning) over a cap.
    pub fn admit(&self, ip: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let from_peer = open.1.get(&ip).copied().unwrap_or(0);
        if open.0 >= self.caps.total {
            let n = open.0;
            drop(open);
            self.refused(ip, n, "as many open as the cap allows");
            return None;
        }
        if from_peer >= self.caps.per_peer && !ip.is_loopback() {
            drop(open);
            self.refused(
                ip,
                from_peer,
                "as many open from this address as the cap allows",
            );
            return None;
        }
        open.0 += 1;
        *open.1.entry(ip).or_insert(0) += 1;
        Some(Slot {
            ip,
            open: self.open.clone(),
        })
    }
}

/// A connection that fails its reads (closing it) once nothing arrived for `idle`, and gives
/// its [`Slot`] back when dropped.
pub struct Guarded<IO> {
    inner: IO,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _slot: Slot,
}

impl<IO> Guarded<IO> {
    pub fn new(inner: IO, slot: Slot, idle: Duration) -> Guarded<IO> {
        Guarded {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            _slot: slot,
        }
    }

    pub fn get_ref(&self) -> &IO {
        &self.inner
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    let next = Instant::now() + self.idle;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
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

impl tonic::transport::server::Connected for Guarded<tokio::net::TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_peer_and_in_all() {
        let c = Connections::new(Caps {
            per_peer: 2,
            total: 3,
            idle: Duration::from_secs(1),
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let (s1, _s2) = (c.admit(a).unwrap(), c.admit(a).unwrap());
        assert!(c.admit(a).is_none(), "third from one address");
        let _s3 = c.admit(b).unwrap();
        assert!(c.admit(b).is_none(), "over the total");
        drop(s1);
        assert!(c.admit(a).is_some(), "a closed connection frees its place");
    }

    #[test]
    fn registrations_are_rate_limited_per_address() {
        let r = Registrations::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let admitted = (0..100).filter(|_| r.admit(a)).count();
        assert!((32..=34).contains(&admitted), "{admitted}");
        assert!(
            r.admit("10.0.0.2".parse().unwrap()),
            "another address has its own budget"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let idle = Duration::from_secs(120);
        let c = Connections::new(grpc(idle));
        let (client, server) = tokio::io::duplex(64);
        let mut g = Guarded::new(server, c.admit("10.0.0.1".parse().unwrap()).unwrap(), idle);
        let mut client = client;
        client.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(g.read(&mut buf).await.unwrap(), 1);
        let e = g.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
