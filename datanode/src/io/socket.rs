//! TCP sockets as the ring uses them: blocking fds (io_uring polls them itself, and a
//! splice into a blocking socket from an io-wq worker writes the whole packet), shared by
//! reference count with the in-flight ops that use them, so an fd number is never closed
//! and reused while an SQE naming it may still be queued.

use std::io;
use std::mem;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use super::error::Errno;
use super::inflight::Hold;

/// A connected TCP socket.
#[derive(Clone)]
pub struct Socket {
    stream: Rc<TcpStream>,
}

impl Socket {
    /// Wraps a connected stream, switching it to blocking mode.
    pub fn from_std(stream: TcpStream) -> io::Result<Socket> {
        stream.set_nonblocking(false)?;
        Ok(Socket { stream: Rc::new(stream) })
    }

    pub(crate) fn from_owned_fd(fd: OwnedFd) -> Socket {
        Socket { stream: Rc::new(TcpStream::from(fd)) }
    }

    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.stream.set_nodelay(nodelay)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    /// Shuts both directions down, so a peer blocked on us sees EOF at once.
    pub fn shutdown(&self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Both)
    }

    /// Shuts the sending direction down: the peer reads EOF after what was sent.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    /// The std stream back, if no clone and no in-flight op holds it.
    pub fn into_std(self) -> Result<TcpStream, Socket> {
        Rc::try_unwrap(self.stream).map_err(|stream| Socket { stream })
    }

    /// A duplicate of the fd as a `Send` std stream, e.g. for another thread to shut the
    /// connection down.
    pub fn try_clone_std(&self) -> io::Result<TcpStream> {
        self.stream.try_clone()
    }

    pub fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    pub(crate) fn hold(&self) -> Hold {
        Hold::Fd(self.stream.clone())
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Socket(fd {}, peer {:?})", self.raw_fd(), self.stream.peer_addr().ok())
    }
}

/// A listening TCP socket.
#[derive(Clone)]
pub struct Listener {
    listener: Rc<TcpListener>,
}

impl Listener {
    /// Wraps a bound listener, switching it to blocking mode (accepts run on the ring).
    pub fn from_std(listener: TcpListener) -> io::Result<Listener> {
        listener.set_nonblocking(false)?;
        Ok(Listener { listener: Rc::new(listener) })
    }

    pub fn bind(addr: SocketAddr) -> io::Result<Listener> {
        Listener::from_std(TcpListener::bind(addr)?)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn raw_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    pub(crate) fn hold(&self) -> Hold {
        Hold::Fd(self.listener.clone())
    }
}

/// A new blocking, close-on-exec TCP socket for `addr`'s family.
pub(crate) fn new_tcp_socket(addr: &SocketAddr) -> Result<OwnedFd, Errno> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: socket() takes plain integers and returns a new fd or -1.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Errno(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)));
    }
    // SAFETY: socket() just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `addr` as the kernel's sockaddr, for IORING_OP_CONNECT.
pub(crate) fn sockaddr(addr: &SocketAddr) -> Box<(libc::sockaddr_storage, libc::socklen_t)> {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid (AF_UNSPEC) value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for every sockaddr type;
            // we write one sockaddr_in at its start.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: v6.ip().octets() },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: as above, for one sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    Box::new((storage, len as libc::socklen_t))
}
