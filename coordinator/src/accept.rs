//! The gRPC port's accept loop: connections admitted under the caps of [`crate::limits`], each
//! TLS handshake done here (concurrently, within 10 s) rather than inside tonic, so that a
//! refused handshake is logged with the peer's address and the likely cause (at most one line
//! every few seconds), and a failing `accept` (no descriptors left) waits a little instead of
//! spinning.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::limits::{Connections, Guarded, Quiet};

/// A TLS handshake must finish within this.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// After `accept` fails (for want of descriptors, mostly), wait this long before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// One accepted connection, plaintext or TLS.
pub enum Conn {
    Plain(Guarded<TcpStream>),
    Tls(Box<TlsStream<Guarded<TcpStream>>>),
}

/// The accepted connections of `listener` that fit `conns`, over TLS when `tls` is given. The
/// loop ends when the stream is dropped (the server shutting down).
pub fn incoming(
    listener: TcpListener,
    conns: Connections,
    tls: Option<TlsAcceptor>,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, conns, tls, tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    conns: Connections,
    tls: Option<TlsAcceptor>,
    tx: mpsc::Sender<io::Result<Conn>>,
) {
    let mut accept_failed = Quiet::every(Duration::from_secs(10));
    let refused = Arc::new(Mutex::new(Refusals::default()));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = tx.closed() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    if let Some(more) = accept_failed.due() {
                        let caps = conns.caps();
                        tracing::warn!(error = %e, connection_cap = caps.total, failed_since_last_line = more, "cannot accept connections on the gRPC port");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Some(slot) = conns.admit(peer.ip()) else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let io = Guarded::new(tcp, slot, conns.idle());
        let Some(acceptor) = tls.clone() else {
            if tx.send(Ok(Conn::Plain(io))).await.is_err() {
                return;
            }
            continue;
        };
        let (tx, refused) = (tx.clone(), refused.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE, acceptor.accept(io).into_fallible()).await {
                Ok(Ok(s)) => {
                    let _ = tx.send(Ok(Conn::Tls(Box::new(s)))).await;
                }
                Ok(Err((e, io))) => {
                    handshake_refused(&refused, peer, &crate::tls::handshake_failure(&e));
                    linger(io).await;
                }
                Err(_) => handshake_refused(
                    &refused,
                    peer,
                    "no handshake within 10 s (a client that does not speak TLS?)",
                ),
            }
        });
    }
}

/// Closes a connection whose handshake failed so that its alert reaches the client: in TLS
/// 1.3 a client sends its request right after its certificate, and closing with that unread
/// makes the kernel reset the connection, which can overtake the alert (the client then sees
/// only "connection reset"). So: end the sending side, and read what comes for up to 2 s.
async fn linger(mut io: Guarded<TcpStream>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = io.shutdown().await;
    let mut sink = [0u8; 4096];
    let drain = async { while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

/// Refused handshakes said at most once every 10 s per address and cause, with a count.
#[derive(Default)]
struct Refusals(HashMap<(IpAddr, String), Quiet>);

fn handshake_refused(refusals: &Mutex<Refusals>, peer: SocketAddr, why: &str) {
    let due = {
        let mut r = refusals.lock().unwrap_or_else(|p| p.into_inner());
        if r.0.len() >= 1024 {
            r.0.clear();
        }
        r.0.entry((peer.ip(), why.to_string()))
            .or_insert_with(|| Quiet::every(Duration::from_secs(10)))
            .due()
    };
    if let Some(more) = due {
        tracing::warn!(%peer, refused_since_last_line = more, "TLS handshake refused: {why}");
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(c) => Pin::new(c).poll_read(cx, buf),
            Conn::Tls(c) => Pin::new(c.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(c) => Pin::new(c).poll_write(cx, buf),
            Conn::Tls(c) => Pin::new(c.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(c) => Pin::new(c).poll_flush(cx),
            Conn::Tls(c) => Pin::new(c.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(c) => Pin::new(c).poll_shutdown(cx),
            Conn::Tls(c) => Pin::new(c.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(c) => Pin::new(c).poll_write_vectored(cx, bufs),
            Conn::Tls(c) => Pin::new(c.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(c) => c.is_write_vectored(),
            Conn::Tls(c) => c.is_write_vectored(),
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            Conn::Plain(c) => c.connect_info(),
            Conn::Tls(c) => c.get_ref().0.connect_info(),
        }
    }
}
