//! A socket reader whose buffer follows the traffic. A connection that only
//! trickles (or idles) reads straight into the WebSocket codec's own 16 KiB
//! buffer and holds nothing more; a producer sending at full rate fills
//! every read, so the reads grow (doubling, up to the configured maximum)
//! and each system call brings in up to 128 KiB instead of 16 KiB. The
//! buffer is freed whenever the socket has nothing more to give, and a read
//! that does not fill it halves the next one, so an idle connection costs
//! no more than before.

use bytes::{Buf, BufMut, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The smallest read, and the codec's own buffer: reads this large go
/// straight into the caller's buffer.
pub const MIN_READ: usize = 16 * 1024;

/// An [`AsyncRead`] + [`AsyncWrite`] over `S` whose reads adapt their size.
#[derive(Debug)]
pub struct AdaptiveReader<S> {
    inner: S,
    /// Bytes read from the socket and not yet handed on (empty and without
    /// capacity whenever the socket has had nothing more to give).
    buf: BytesMut,
    /// The size of the next read from the socket.
    size: usize,
    max: usize,
}

impl<S> AdaptiveReader<S> {
    /// Reads start at [`MIN_READ`] bytes and grow up to `max`.
    pub fn new(inner: S, max: usize) -> Self {
        AdaptiveReader {
            inner,
            buf: BytesMut::new(),
            size: MIN_READ.min(max.max(1)),
            max: max.max(1),
        }
    }

    /// The size of the next read from the socket.
    pub fn read_size(&self) -> usize {
        self.size
    }

    /// Bytes this reader holds now (its buffer's capacity).
    pub fn buffered_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// A read of `n` bytes was asked of the socket and `got` came back.
    fn adapt(&mut self, asked: usize, got: usize) {
        if got == asked {
            self.size = (self.size * 2).min(self.max);
        } else if got < asked / 2 {
            self.size = (self.size / 2).max(MIN_READ.min(self.max));
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AdaptiveReader<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buf.is_empty() {
            if out.remaining() >= this.size {
                // Small reads need no buffer of ours: straight to the caller.
                let before = out.filled().len();
                let asked = out.remaining();
                let polled = Pin::new(&mut this.inner).poll_read(cx, out);
                if let Poll::Ready(Ok(())) = polled {
                    let got = out.filled().len() - before;
                    if got == asked {
                        this.size = (asked * 2).min(this.max);
                    }
                }
                return polled;
            }
            this.buf.reserve(this.size);
            let asked = this.size;
            let mut room = (&mut this.buf).limit(asked);
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut room) {
                Poll::Pending => {
                    // Nothing more for now: hold no memory while waiting.
                    this.buf = BytesMut::new();
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => {
                    this.buf = BytesMut::new();
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(0)) => {
                    this.buf = BytesMut::new();
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(got)) => this.adapt(asked, got),
            }
        }
        let n = out.remaining().min(this.buf.len());
        out.put_slice(&this.buf[..n]);
        // Emptied, the allocation is reused by the next read while data flows.
        this.buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AdaptiveReader<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_grow_under_load_and_the_buffer_is_freed_when_idle() {
        let (mut tx, rx) = tokio::io::duplex(1 << 20);
        let mut r = AdaptiveReader::new(rx, 128 * 1024);
        assert_eq!(r.read_size(), MIN_READ);

        // A full-rate producer: every read fills, so reads grow to the max.
        let data: Vec<u8> = (0..600 * 1024).map(|i| (i % 251) as u8).collect();
        tx.write_all(&data).await.unwrap();
        let mut got = Vec::new();
        let mut chunk = vec![0u8; MIN_READ];
        while got.len() < data.len() {
            let n = r.read(&mut chunk).await.unwrap();
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, data, "every byte, in order");
        assert_eq!(r.read_size(), 128 * 1024);

        // Nothing more to read: the reader holds no buffer while it waits.
        let mut one = [0u8; 1];
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(20), r.read(&mut one)).await;
        assert!(waiting.is_err(), "no data yet");
        assert_eq!(r.buffered_capacity(), 0);

        // A trickle: small reads shrink the next ones back to the minimum.
        for _ in 0..4 {
            tx.write_all(b"hello").await.unwrap();
            let n = r.read(&mut chunk).await.unwrap();
            assert_eq!(&chunk[..n], b"hello");
        }
        assert_eq!(r.read_size(), MIN_READ);
        drop(tx);
        assert_eq!(r.read(&mut chunk).await.unwrap(), 0, "end of stream");
    }

    #[tokio::test]
    async fn a_small_maximum_is_never_exceeded() {
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        let mut r = AdaptiveReader::new(rx, 4096);
        tx.write_all(&[7u8; 40_000]).await.unwrap();
        let mut chunk = vec![0u8; 1024];
        let mut total = 0;
        while total < 40_000 {
            total += r.read(&mut chunk).await.unwrap();
            assert!(r.read_size() <= 4096);
            assert!(r.buffered_capacity() <= 8192, "{}", r.buffered_capacity());
        }
    }
}
