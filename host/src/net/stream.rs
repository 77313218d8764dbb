//! The byte streams a connection runs on, TCP, TLS or a Unix socket,
//! behind one readiness-based interface: wait until readable or writable,
//! then read or write what is there without waiting, as tokio's
//! `TcpStream` does.

use std::io::{self, IoSlice, Read as _, Write as _};
use std::net::SocketAddr;
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWriteExt as _, Interest, ReadBuf, Ready};
use tokio::net::{TcpStream, UnixStream};

/// How long, and how many bytes, a closing connection keeps draining from
/// the peer after our FIN, so that input already in flight does not turn
/// the close into a reset before the peer has read our last bytes. A peer
/// that keeps sending past either bound gets the reset.
pub const LINGER: Duration = Duration::from_secs(2);
/// See [`LINGER`].
pub const LINGER_BYTES: usize = 256 * 1024;

/// Plaintext one TLS write takes in before its records are sent: output
/// beyond it waits in the connection's queue, where the write limit and
/// the producer's pause see it, not in the TLS library.
const TLS_WRITE_BATCH: usize = 64 * 1024;

/// An accepted or outbound connection's socket.
pub enum Stream {
    Tcp(TcpStream),
    /// Boxed: the TLS state is ten times the size of a socket.
    Tls(Box<TlsStream>),
    Unix(UnixStream),
}

/// A connection's two ends, as its socket names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ends {
    pub peer: SocketName,
    pub host: SocketName,
    /// Whether the connection is encrypted (TLS).
    pub secure: bool,
}

/// One end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketName {
    Tcp(SocketAddr),
    /// A Unix socket's path; `None` for an end with no name.
    Unix(Option<String>),
}

impl Ends {
    /// A TCP connection between `peer` and `host`.
    pub fn tcp(peer: SocketAddr, host: SocketAddr, secure: bool) -> Self {
        Self {
            peer: SocketName::Tcp(peer),
            host: SocketName::Tcp(host),
            secure,
        }
    }
}

/// A TCP socket carrying TLS, past its handshake.
pub struct TlsStream {
    pub(crate) tcp: TcpStream,
    pub(crate) tls: rustls::ServerConnection,
}

impl Stream {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Self::Tcp(tcp) => Some(tcp),
            Self::Tls(tls) => Some(&tls.tcp),
            Self::Unix(_) => None,
        }
    }

    /// The connection's ends as the guest is told them; fails if the peer
    /// is already gone.
    pub fn ends(&self) -> io::Result<Ends> {
        match self {
            Self::Tcp(tcp) => Ok(Ends::tcp(tcp.peer_addr()?, tcp.local_addr()?, false)),
            Self::Tls(tls) => Ok(Ends::tcp(tls.tcp.peer_addr()?, tls.tcp.local_addr()?, true)),
            Self::Unix(unix) => {
                let name = |addr: tokio::net::unix::SocketAddr| {
                    addr.as_pathname().map(|path| path.display().to_string())
                };
                Ok(Ends {
                    peer: SocketName::Unix(name(unix.peer_addr()?)),
                    host: SocketName::Unix(name(unix.local_addr()?)),
                    secure: false,
                })
            }
        }
    }

    /// A second handle on a plain TCP socket (a duplicated descriptor),
    /// sharing its non-blocking mode; `None` for TLS and Unix sockets, and
    /// once three quarters of the open-file limit is in use, as the last
    /// descriptors are for accepting connections.
    pub fn second_handle(&self) -> Option<std::net::TcpStream> {
        let Self::Tcp(tcp) = self else { return None };
        let fd = tcp.as_fd().try_clone_to_owned().ok()?;
        // The kernel hands out the lowest free descriptor, so every one
        // below this one is open.
        let in_use = u64::try_from(fd.as_raw_fd()).ok()?;
        (in_use < open_file_limit() / 4 * 3).then(|| std::net::TcpStream::from(fd))
    }

    /// Send small writes at once (TCP); nothing to do on a Unix socket.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.tcp().map_or(Ok(()), |tcp| tcp.set_nodelay(nodelay))
    }

    /// Make closing reset the connection, dropping what is unsent. A Unix
    /// socket has no reset: its close drops what is unsent anyway.
    pub fn set_zero_linger(&self) -> io::Result<()> {
        self.tcp().map_or(Ok(()), |tcp| tcp.set_zero_linger())
    }

    /// Wait until there is input to read (if `read`) or room to write (if
    /// `write`); never resolves if neither is wanted. TLS records queued
    /// by the library itself (alerts, session tickets) are sent meanwhile.
    pub async fn ready(&mut self, read: bool, write: bool) -> io::Result<Ready> {
        match self {
            Self::Tcp(tcp) => match interest(read, write) {
                Some(interest) => tcp.ready(interest).await,
                None => std::future::pending().await,
            },
            Self::Tls(tls) => tls.ready(read, write).await,
            Self::Unix(unix) => match interest(read, write) {
                Some(interest) => unix.ready(interest).await,
                None => std::future::pending().await,
            },
        }
    }

    /// Read what has arrived without waiting: `WouldBlock` if nothing has,
    /// `Ok(0)` at the end of the peer's input.
    pub async fn read_now(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(tcp) => read_without_waiting(tcp, buffer).await,
            Self::Tls(tls) => tls.read_now(buffer),
            Self::Unix(unix) => read_without_waiting(unix, buffer).await,
        }
    }

    /// Read, waiting for input if there is none.
    pub async fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            self.ready(true, false).await?;
            match self.read_now(buffer).await {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                read => return read,
            }
        }
    }

    /// Write what the socket takes without waiting: `WouldBlock` if none.
    pub fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Self::Tcp(tcp) => tcp.try_write_vectored(slices),
            Self::Tls(tls) => tls.try_write_vectored(slices),
            Self::Unix(unix) => unix.try_write_vectored(slices),
        }
    }

    /// Shut down the write side once what was written is sent; for TLS,
    /// after a `close_notify` alert, waiting at most `LINGER` for the peer
    /// to take the last records.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(tcp) => tcp.shutdown().await,
            Self::Unix(unix) => unix.shutdown().await,
            Self::Tls(tls) => {
                tls.tls.send_close_notify();
                let flushed = async {
                    while tls.tls.wants_write() {
                        tls.tcp.ready(Interest::WRITABLE).await?;
                        tls.write_tls()?;
                    }
                    io::Result::Ok(())
                };
                tokio::time::timeout(LINGER, flushed)
                    .await
                    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
                tls.tcp.shutdown().await
            }
        }
    }
}

impl TlsStream {
    pub(crate) fn new(tcp: TcpStream, tls: rustls::ServerConnection) -> Self {
        Self { tcp, tls }
    }

    async fn ready(&mut self, read: bool, write: bool) -> io::Result<Ready> {
        loop {
            if read && self.has_buffered_input() {
                return Ok(Ready::READABLE);
            }
            let records_queued = self.tls.wants_write();
            let Some(interest) = interest(read, write || records_queued) else {
                return std::future::pending().await;
            };
            let ready = self.tcp.ready(interest).await?;
            if records_queued && ready.is_writable() {
                self.write_tls()?;
            }
            let mut wanted = Ready::EMPTY;
            if read && ready.is_readable() {
                wanted |= Ready::READABLE;
            }
            if write && ready.is_writable() {
                wanted |= Ready::WRITABLE;
            }
            if !wanted.is_empty() {
                return Ok(wanted);
            }
        }
    }

    /// Whether a read would find something without the socket: decrypted
    /// bytes not yet read, or the end of input (or an error) to report.
    fn has_buffered_input(&mut self) -> bool {
        match self.tls.process_new_packets() {
            Ok(state) => state.plaintext_bytes_to_read() > 0 || state.peer_has_closed(),
            Err(_) => true,
        }
    }

    fn read_now(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buffer) {
                // The peer closed its TCP side without TLS's `close_notify`:
                // an end of input all the same, as most servers take it.
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                read => return read,
            }
            self.read_tls()?;
        }
    }

    /// Read records from the socket without waiting and decrypt them; a
    /// protocol error sends its alert and fails the connection.
    pub(crate) fn read_tls(&mut self) -> io::Result<usize> {
        let read = self.tls.read_tls(&mut SocketIo(&self.tcp))?;
        if let Err(error) = self.tls.process_new_packets() {
            let _ = self.write_tls();
            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
        }
        Ok(read)
    }

    /// Send queued records until done or the socket is full.
    pub(crate) fn write_tls(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut SocketIo(&self.tcp)) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_tls()?;
        if self.tls.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut taken = 0;
        for slice in slices {
            let room = TLS_WRITE_BATCH - taken;
            let wrote = self.tls.writer().write(&slice[..slice.len().min(room)])?;
            taken += wrote;
            if wrote < slice.len() || taken == TLS_WRITE_BATCH {
                break;
            }
        }
        self.write_tls()?;
        if taken == 0 {
            // Nothing taken (the library's buffer is full): wait, never
            // report a zero-byte write the caller would retry at once.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }
}

/// A socket as `std::io` reader and writer that never waits, for rustls.
struct SocketIo<'a>(&'a TcpStream);

impl io::Read for SocketIo<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buffer)
    }
}

impl io::Write for SocketIo<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.try_write(data)
    }

    fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(slices)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The process's soft limit on open files.
fn open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    limit.rlim_cur
}

fn interest(read: bool, write: bool) -> Option<Interest> {
    match (read, write) {
        (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
        (true, false) => Some(Interest::READABLE),
        (false, true) => Some(Interest::WRITABLE),
        (false, false) => None,
    }
}

/// Read what the socket holds without waiting, as `try_read` does, but
/// through `AsyncRead::poll_read`, which forgets the socket's readiness
/// after a short read: the next wait is then for epoll, not another
/// `recvfrom` that would only say `EAGAIN` (one read per message, as a
/// native tokio server makes, instead of two).
async fn read_without_waiting(
    stream: &mut (impl AsyncRead + Unpin),
    buffer: &mut [u8],
) -> io::Result<usize> {
    let mut buffer = ReadBuf::new(buffer);
    std::future::poll_fn(|context| {
        Poll::Ready(
            match Pin::new(&mut *stream).poll_read(context, &mut buffer) {
                Poll::Ready(Ok(())) => Ok(buffer.filled().len()),
                Poll::Ready(Err(error)) => Err(error),
                Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
            },
        )
    })
    .await
}
