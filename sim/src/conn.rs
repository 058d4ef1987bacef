//! The listener behind [`super::Simulator::serve`]: each connection carries a control that a
//! fault uses to reset the connection or to trickle the response body.

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

const NORMAL: u8 = 0;
const RESET: u8 = 1;
const TRICKLE: u8 = 2;

#[derive(Default)]
struct Ctl {
    mode: AtomicU8,
    trickle_ms: AtomicU64,
}

/// Per-connection information, available to handlers as `ConnectInfo<ConnInfo>`.
#[derive(Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    ctl: Arc<Ctl>,
}

impl std::fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.remote.fmt(f)
    }
}

impl ConnInfo {
    /// Close the connection with a TCP reset instead of writing the response.
    pub(crate) fn reset(&self) {
        self.ctl.mode.store(RESET, Ordering::SeqCst);
    }

    /// Write the response head at once, then the body one byte per `ms` milliseconds.
    pub(crate) fn trickle(&self, ms: u64) {
        self.ctl.trickle_ms.store(ms, Ordering::SeqCst);
        self.ctl.mode.store(TRICKLE, Ordering::SeqCst);
    }
}

impl Connected<IncomingStream<'_, SimListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.remote_addr().clone()
    }
}

pub(crate) struct SimListener {
    inner: TcpListener,
    stopping: Arc<AtomicBool>,
}

impl SimListener {
    pub(crate) fn new(inner: TcpListener, stopping: Arc<AtomicBool>) -> Self {
        SimListener { inner, stopping }
    }
}

impl Listener for SimListener {
    type Io = SimIo;
    type Addr = ConnInfo;

    async fn accept(&mut self) -> (SimIo, ConnInfo) {
        loop {
            match self.inner.accept().await {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let ctl = Arc::new(Ctl::default());
                    let io = SimIo {
                        inner: stream,
                        ctl: ctl.clone(),
                        stopping: self.stopping.clone(),
                        head_match: 0,
                        head_done: false,
                        sleep: None,
                    };
                    return (io, ConnInfo { remote, ctl });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "sim: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<ConnInfo> {
        Ok(ConnInfo {
            remote: self.inner.local_addr()?,
            ctl: Arc::default(),
        })
    }
}

pub(crate) struct SimIo {
    inner: TcpStream,
    ctl: Arc<Ctl>,
    stopping: Arc<AtomicBool>,
    /// How much of "\r\n\r\n" (the end of the response head) has been written.
    head_match: u8,
    head_done: bool,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl SimIo {
    /// Where the response head ends in `buf`, if it does; advances the matcher over all of
    /// `buf` when `commit`.
    fn head_end(&mut self, buf: &[u8], commit: bool) -> Option<usize> {
        let mut m = self.head_match;
        for (i, &b) in buf.iter().enumerate() {
            if b == b"\r\n\r\n"[m as usize] {
                m += 1;
                if m == 4 {
                    if commit {
                        self.head_done = true;
                        self.head_match = 0;
                    }
                    return Some(i + 1);
                }
            } else {
                m = u8::from(b == b'\r');
            }
        }
        if commit {
            self.head_match = m;
        }
        None
    }

    fn poll_trickle(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if !self.head_done {
            let upto = self.head_end(buf, false).unwrap_or(buf.len());
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &buf[..upto]))?;
            self.head_end(&buf[..n], true);
            return Poll::Ready(Ok(n));
        }
        if let Some(sleep) = self.sleep.as_mut() {
            ready!(sleep.as_mut().poll(cx));
            self.sleep = None;
        }
        if self.stopping.load(Ordering::Relaxed) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &buf[..1]))?;
        let ms = self.ctl.trickle_ms.load(Ordering::Relaxed);
        self.sleep = Some(Box::pin(tokio::time::sleep(Duration::from_millis(ms))));
        Poll::Ready(Ok(n))
    }
}

impl AsyncRead for SimIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.ctl.mode.load(Ordering::Relaxed) {
            NORMAL => Pin::new(&mut self.inner).poll_write(cx, buf),
            RESET => {
                let _ = self.inner.set_zero_linger();
                Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
            }
            _ => self.poll_trickle(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.ctl.mode.load(Ordering::Relaxed) == RESET {
            let _ = self.inner.set_zero_linger();
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
