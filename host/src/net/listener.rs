//! Listening sockets: binding an endpoint once per worker (TCP, a Unix
//! socket file with Twisted's lock file and permissions, or a UDP port),
//! and accepting from them into a connection's [`Stream`].

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::net::endpoint::{Endpoint, ListenAddress, UnixSocket};
use crate::net::stream::Stream;

/// An endpoint bound for each of its workers, not yet served.
pub struct Bound {
    /// One per worker.
    pub listeners: Vec<Listener>,
    /// Where they listen.
    pub address: BoundAddress,
    /// A Unix socket's file and lock, removed when this is dropped.
    pub socket_file: Option<SocketFile>,
}

/// A bound, listening socket, not yet registered with any reactor.
pub enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
    /// A datagram service's socket: nothing to accept.
    Udp(std::net::UdpSocket),
}

/// Where a service listens, once bound: the port picked for port 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BoundAddress {
    Tcp(SocketAddr),
    Unix(PathBuf),
    Udp(SocketAddr),
}

impl fmt::Display for BoundAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => addr.fmt(f),
            Self::Udp(addr) => write!(f, "{addr} (UDP)"),
            Self::Unix(path) => path.display().fmt(f),
        }
    }
}

/// A listener registered with a worker's reactor.
pub enum Accepting {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Listener {
    /// Register a stream listener with the calling thread's reactor.
    pub fn into_tokio(self) -> io::Result<Accepting> {
        match self {
            Self::Tcp(tcp) => tokio::net::TcpListener::from_std(tcp).map(Accepting::Tcp),
            Self::Unix(unix) => tokio::net::UnixListener::from_std(unix).map(Accepting::Unix),
            Self::Udp(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a UDP socket accepts no connections",
            )),
        }
    }
}

/// Who connected, for the log: formatted only if a log line needs it.
#[derive(Clone, Copy, Debug)]
pub enum Peer {
    Tcp(SocketAddr),
    /// A Unix socket's peer, which has no name.
    Unix,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => addr.fmt(f),
            Self::Unix => f.write_str("unix"),
        }
    }
}

impl Accepting {
    /// Accept one connection: its stream, and its peer for the log.
    pub async fn accept(&self) -> io::Result<(Stream, Peer)> {
        match self {
            Self::Tcp(tcp) => {
                let (stream, peer) = tcp.accept().await?;
                Ok((Stream::Tcp(stream), Peer::Tcp(peer)))
            }
            Self::Unix(unix) => {
                let (stream, _) = unix.accept().await?;
                Ok((Stream::Unix(stream), Peer::Unix))
            }
        }
    }
}

/// Bind and listen as Twisted does, once per worker. TCP: SO_REUSEADDR,
/// the endpoint's backlog; several workers' listeners share the port
/// through SO_REUSEPORT, and the kernel spreads connections among them
/// (one worker gets no SO_REUSEPORT, so no other process can share its
/// port). A Unix socket is bound once and shared by the workers. A UDP
/// port is bound per worker as TCP is, without SO_REUSEADDR, which for UDP
/// would let another socket take its datagrams.
pub fn listen(endpoint: &Endpoint, workers: usize) -> anyhow::Result<Bound> {
    let backlog = i32::try_from(endpoint.backlog).unwrap_or(i32::MAX);
    match &endpoint.address {
        ListenAddress::Udp(addr) => {
            let mut addr = *addr;
            let mut sockets = Vec::with_capacity(workers);
            for _ in 0..workers.max(1) {
                let socket = bind_udp(addr, workers > 1).with_context(|| {
                    format!("cannot bind {addr} ({endpoint}); is another program using it?")
                })?;
                addr = socket.local_addr()?;
                sockets.push(Listener::Udp(socket));
            }
            Ok(Bound {
                listeners: sockets,
                address: BoundAddress::Udp(addr),
                socket_file: None,
            })
        }
        ListenAddress::Tcp { addr, .. } => {
            let mut addr = *addr;
            let bind = |addr: SocketAddr| -> io::Result<std::net::TcpListener> {
                let socket =
                    Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
                socket.set_reuse_address(true)?;
                if workers > 1 {
                    socket.set_reuse_port(true)?;
                }
                socket.set_nonblocking(true)?;
                socket.bind(&addr.into())?;
                socket.listen(backlog)?;
                Ok(socket.into())
            };
            let mut listeners = Vec::with_capacity(workers);
            for _ in 0..workers.max(1) {
                let listener = bind(addr).with_context(|| {
                    format!(
                        "cannot listen on {addr} ({endpoint}); is another program listening there?"
                    )
                })?;
                // Port 0 picks a free port once; the other workers join it.
                addr = listener.local_addr()?;
                listeners.push(Listener::Tcp(listener));
            }
            Ok(Bound {
                listeners,
                address: BoundAddress::Tcp(addr),
                socket_file: None,
            })
        }
        ListenAddress::Unix(socket) => {
            let (listener, socket_file) = bind_unix(socket, backlog)
                .with_context(|| format!("cannot listen on {endpoint}"))?;
            let mut listeners = Vec::with_capacity(workers);
            for _ in 1..workers.max(1) {
                listeners.push(Listener::Unix(listener.try_clone()?));
            }
            listeners.push(Listener::Unix(listener));
            Ok(Bound {
                listeners,
                address: BoundAddress::Unix(socket.path.clone()),
                socket_file: Some(socket_file),
            })
        }
    }
}

/// The receive buffer asked for on a UDP socket: datagrams that arrive
/// while the guest is busy wait here, and the kernel drops what does not
/// fit (it may grant less, up to `net.core.rmem_max`).
const UDP_RECEIVE_BUFFER: usize = 4 << 20;

/// A UDP socket bound to `addr`, shared through SO_REUSEPORT with the
/// other workers' when `shared`.
fn bind_udp(addr: SocketAddr, shared: bool) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if shared {
        socket.set_reuse_port(true)?;
    }
    // Best effort: a smaller buffer only drops sooner under load.
    let _ = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A Unix socket file weft bound, and its lock file: both removed when
/// this is dropped, the socket only if it is still the one bound.
pub struct SocketFile {
    path: PathBuf,
    inode: (u64, u64),
    lock: Option<PathBuf>,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
        if let Some(lock) = &self.lock {
            let _ = std::fs::remove_file(lock);
        }
    }
}

/// Bind `socket`: take its lock file if asked, replace a stale socket
/// file (one nothing listens on: left by a process that died), refuse a
/// live one or a file that is not a socket, then set its permissions.
fn bind_unix(
    socket: &UnixSocket,
    backlog: i32,
) -> anyhow::Result<(std::os::unix::net::UnixListener, SocketFile)> {
    let path = &socket.path;
    let lock = if socket.lockfile {
        let mut lock = path.clone().into_os_string();
        lock.push(".lock");
        let lock = PathBuf::from(lock);
        take_lock(&lock, path)?;
        Some(lock)
    } else {
        None
    };
    // From here the lock is ours: released on any failure.
    let release = |error: anyhow::Error| {
        if let Some(lock) = &lock {
            let _ = std::fs::remove_file(lock);
        }
        error
    };
    remove_stale(path).map_err(release)?;
    let bound = (|| -> anyhow::Result<_> {
        let listener = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        listener.bind(&SockAddr::unix(path)?)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(socket.mode))
            .context("cannot set the socket file's permissions")?;
        listener.listen(backlog)?;
        listener.set_nonblocking(true)?;
        let metadata = std::fs::symlink_metadata(path)?;
        Ok((listener.into(), (metadata.dev(), metadata.ino())))
    })();
    let (listener, inode) = bound.map_err(release)?;
    Ok((
        listener,
        SocketFile {
            path: path.clone(),
            inode,
            lock,
        },
    ))
}

/// Take `lock` as Twisted's `FilesystemLock` does: a symbolic link whose
/// target is this process's id. A lock naming a live process refuses; one
/// naming a dead process is stale and replaced.
fn take_lock(lock: &Path, socket: &Path) -> anyhow::Result<()> {
    let pid = std::process::id().to_string();
    for _ in 0..2 {
        match std::os::unix::fs::symlink(&pid, lock) {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                let owner = std::fs::read_link(lock)
                    .ok()
                    .and_then(|target| target.to_str()?.parse::<i32>().ok());
                if let Some(owner) = owner.filter(|owner| alive(*owner)) {
                    anyhow::bail!(
                        "{} is in use by process {owner}, which holds {}",
                        socket.display(),
                        lock.display()
                    );
                }
                tracing::info!("replacing the stale lock file {}", lock.display());
                std::fs::remove_file(lock)
                    .with_context(|| format!("cannot remove the stale {}", lock.display()))?;
            }
            Err(error) => {
                return Err(error).with_context(|| format!("cannot create {}", lock.display()));
            }
        }
    }
    anyhow::bail!(
        "cannot take {}: another process keeps taking it",
        lock.display()
    )
}

/// Whether process `pid` exists.
fn alive(pid: i32) -> bool {
    // Signal 0 checks without sending: it fails with ESRCH if there is no
    // such process (EPERM means one exists, owned by someone else).
    // SAFETY: kill with signal 0 has no effect beyond its return value.
    let signalled = unsafe { libc::kill(pid, 0) } == 0;
    signalled || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Remove a socket file nothing listens on; refuse a live one, and
/// anything that is not a socket.
fn remove_stale(path: &Path) -> anyhow::Result<()> {
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !metadata.file_type().is_socket() {
        anyhow::bail!(
            "{} exists and is not a socket: weft replaces only a stale socket file",
            path.display()
        );
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => anyhow::bail!("another program listens on {}", path.display()),
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!("replacing the stale socket file {}", path.display());
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove the stale {}", path.display()))
        }
        Err(error) => Err(error).with_context(|| format!("cannot check {}", path.display())),
    }
}
