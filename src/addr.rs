//! Socket addresses: TCP or Unix domain.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// Where a socket is: a TCP address, or a Unix domain socket path.
///
/// Parses from `"127.0.0.1:8080"`, `"[::1]:8080"` or `"unix:/run/app.sock"`, and prints back
/// the same way, so one command-line argument can name either kind.
///
/// # Examples
///
/// ```
/// use epoll_server::Address;
///
/// let tcp: Address = "127.0.0.1:8080".parse().unwrap();
/// assert_eq!(tcp.as_tcp(), Some("127.0.0.1:8080".parse().unwrap()));
///
/// let unix: Address = "unix:/tmp/app.sock".parse().unwrap();
/// assert_eq!(unix.as_unix_path(), Some(std::path::Path::new("/tmp/app.sock")));
/// assert_eq!(unix.to_string(), "unix:/tmp/app.sock");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP address (IPv4 or IPv6).
    Tcp(SocketAddr),
    /// A Unix domain stream socket: its path, or `None` for an unnamed socket (the client end
    /// of a connection usually never binds a path).
    Unix(Option<Arc<Path>>),
}

impl Address {
    /// The Unix domain socket at `path`.
    pub fn unix(path: impl AsRef<Path>) -> Address {
        Address::Unix(Some(Arc::from(path.as_ref())))
    }

    /// The TCP address, if this is one.
    pub fn as_tcp(&self) -> Option<SocketAddr> {
        match self {
            Address::Tcp(a) => Some(*a),
            Address::Unix(_) => None,
        }
    }

    /// The socket path, if this is a named Unix domain socket.
    pub fn as_unix_path(&self) -> Option<&Path> {
        match self {
            Address::Unix(Some(p)) => Some(p),
            _ => None,
        }
    }

    /// Whether this is a Unix domain socket address.
    pub fn is_unix(&self) -> bool {
        matches!(self, Address::Unix(_))
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Address {
        Address::Tcp(addr)
    }
}

impl From<PathBuf> for Address {
    fn from(path: PathBuf) -> Address {
        Address::Unix(Some(Arc::from(path)))
    }
}

impl From<&Path> for Address {
    fn from(path: &Path) -> Address {
        Address::unix(path)
    }
}

impl PartialEq<SocketAddr> for Address {
    fn eq(&self, other: &SocketAddr) -> bool {
        self.as_tcp() == Some(*other)
    }
}

impl PartialEq<Address> for SocketAddr {
    fn eq(&self, other: &Address) -> bool {
        other == self
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => a.fmt(f),
            Address::Unix(Some(p)) => write!(f, "unix:{}", p.display()),
            Address::Unix(None) => f.write_str("unix:(unnamed)"),
        }
    }
}

/// The error of parsing an [`Address`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressParseError(String);

impl fmt::Display for AddressParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid address {:?}: expected IP:PORT, [IPv6]:PORT or unix:PATH",
            self.0
        )
    }
}

impl std::error::Error for AddressParseError {}

impl FromStr for Address {
    type Err = AddressParseError;

    fn from_str(s: &str) -> Result<Address, AddressParseError> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(AddressParseError(s.to_string()));
            }
            return Ok(Address::unix(path));
        }
        s.parse::<SocketAddr>()
            .map(Address::Tcp)
            .map_err(|_| AddressParseError(s.to_string()))
    }
}

/// The credentials of the process at the other end of a Unix domain socket (`SO_PEERCRED`),
/// as they were when it connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerCredentials {
    /// The peer's process id.
    pub pid: i32,
    /// The peer's effective user id.
    pub uid: u32,
    /// The peer's effective group id.
    pub gid: u32,
}
