//! TCP through `wasi:sockets` directly (with wstd's reactor for the waiting): wstd's own
//! `TcpStream` reads into a buffer the caller keeps across the wait, which for a thousand idle
//! clients would be a thousand idle buffers; here a read returns the bytes that arrived, in a
//! vector made for them, and an idle client holds no buffer at all.

use std::net::SocketAddr;

use wasip2::io::streams::InputStream;
use wasip2::sockets::network::{ErrorCode, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress};
use wasip2::sockets::tcp::{IpAddressFamily, TcpSocket};
use wstd::io::AsyncOutputStream;
use wstd::runtime::AsyncPollable;

/// How many connections may wait to be accepted.
const BACKLOG: u64 = 1024;

/// A listening socket.
pub struct Listener {
    // Children before their parent: the pollable is dropped before the socket.
    ready: AsyncPollable,
    socket: TcpSocket,
}

/// One accepted connection.
pub struct Connection {
    // Children before their parent, in this order.
    input_ready: AsyncPollable,
    input: InputStream,
    pub output: AsyncOutputStream,
    _socket: TcpSocket,
}

/// Binds `addr` and listens.
pub async fn listen(addr: &str) -> Result<Listener, String> {
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
    let family = match addr {
        SocketAddr::V4(_) => IpAddressFamily::Ipv4,
        SocketAddr::V6(_) => IpAddressFamily::Ipv6,
    };
    let socket = wasip2::sockets::tcp_create_socket::create_tcp_socket(family).map_err(describe)?;
    let network = wasip2::sockets::instance_network::instance_network();
    let ready = AsyncPollable::new(socket.subscribe());
    socket
        .start_bind(&network, to_wasi(addr))
        .map_err(describe)?;
    ready.wait_for().await;
    socket.finish_bind().map_err(describe)?;
    // Best effort: the host may cap it.
    let _ = socket.set_listen_backlog_size(BACKLOG);
    socket.start_listen().map_err(describe)?;
    ready.wait_for().await;
    socket.finish_listen().map_err(describe)?;
    Ok(Listener { ready, socket })
}

impl Listener {
    /// The next connection.
    pub async fn accept(&self) -> Result<Connection, String> {
        loop {
            match self.socket.accept() {
                Ok((socket, input, output)) => {
                    return Ok(Connection {
                        input_ready: AsyncPollable::new(input.subscribe()),
                        input,
                        output: AsyncOutputStream::new(output),
                        _socket: socket,
                    });
                }
                Err(ErrorCode::WouldBlock) => self.ready.wait_for().await,
                Err(e) => return Err(describe(e)),
            }
        }
    }
}

impl Connection {
    /// Up to `max` bytes, once some arrived; `None` at the end of the stream or on an error.
    pub async fn read(&self, max: usize) -> Option<Vec<u8>> {
        loop {
            match self.input.read(max as u64) {
                Ok(bytes) if bytes.is_empty() => self.input_ready.wait_for().await,
                Ok(bytes) => return Some(bytes),
                Err(_) => return None,
            }
        }
    }
}

fn describe(e: ErrorCode) -> String {
    format!("{e:?}")
}

fn to_wasi(addr: SocketAddr) -> IpSocketAddress {
    match addr {
        SocketAddr::V4(addr) => {
            let ip = addr.ip().octets();
            IpSocketAddress::Ipv4(Ipv4SocketAddress {
                address: (ip[0], ip[1], ip[2], ip[3]),
                port: addr.port(),
            })
        }
        SocketAddr::V6(addr) => {
            let ip = addr.ip().segments();
            IpSocketAddress::Ipv6(Ipv6SocketAddress {
                address: (ip[0], ip[1], ip[2], ip[3], ip[4], ip[5], ip[6], ip[7]),
                port: addr.port(),
                flow_info: addr.flowinfo(),
                scope_id: addr.scope_id(),
            })
        }
    }
}
