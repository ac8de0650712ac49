//! One TCP connection to the device over `wasi:sockets`, kept across ticks, where every wait
//! (connect, send, answer) has a deadline: a device that stops answering costs the module one
//! timeout per tick, never a stuck `on-tick`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use wasip2::clocks::monotonic_clock;
use wasip2::io::poll::{Pollable, poll};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress};
use wasip2::sockets::tcp::TcpSocket;
use wasip2::sockets::tcp_create_socket::create_tcp_socket;

/// An open connection. Dropping it closes the socket (the streams first, as WASI requires).
pub struct Link {
    input: InputStream,
    output: OutputStream,
    _socket: TcpSocket,
}

/// Waits for `pollable` at most `timeout`; whether it became ready.
fn wait(pollable: &Pollable, timeout: Duration) -> bool {
    let deadline = monotonic_clock::subscribe_duration(timeout.as_nanos() as u64);
    poll(&[pollable, &deadline]).contains(&0)
}

impl Link {
    /// Connects to `server` (`host:port`; a host name is resolved first).
    pub fn connect(server: &str, timeout: Duration) -> Result<Link, String> {
        let addrs: Vec<SocketAddr> = server
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {server}: {e}"))?
            .collect();
        let mut last = format!("{server} resolved to no address");
        for addr in addrs {
            match Link::connect_addr(addr, timeout) {
                Ok(link) => return Ok(link),
                Err(e) => last = format!("cannot connect to {addr}: {e}"),
            }
        }
        Err(last)
    }

    fn connect_addr(addr: SocketAddr, timeout: Duration) -> Result<Link, String> {
        let (family, remote) = match addr {
            SocketAddr::V4(a) => {
                let [a0, a1, a2, a3] = a.ip().octets();
                let remote = Ipv4SocketAddress { port: a.port(), address: (a0, a1, a2, a3) };
                (IpAddressFamily::Ipv4, IpSocketAddress::Ipv4(remote))
            }
            SocketAddr::V6(a) => {
                let s = a.ip().segments();
                let remote = Ipv6SocketAddress {
                    port: a.port(),
                    flow_info: 0,
                    address: (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
                    scope_id: a.scope_id(),
                };
                (IpAddressFamily::Ipv6, IpSocketAddress::Ipv6(remote))
            }
        };
        let socket = create_tcp_socket(family).map_err(|e| e.to_string())?;
        socket
            .start_connect(&instance_network(), remote)
            .map_err(|e| e.to_string())?;
        if !wait(&socket.subscribe(), timeout) {
            return Err(format!("no answer within {} ms", timeout.as_millis()));
        }
        let (input, output) = socket.finish_connect().map_err(|e| e.to_string())?;
        Ok(Link { input, output, _socket: socket })
    }

    /// Sends `request` and reads `header` bytes, then as many as `body_len(header)` says.
    pub fn exchange<const H: usize>(
        &mut self,
        request: &[u8],
        timeout: Duration,
        body_len: impl FnOnce(&[u8; H]) -> Result<usize, String>,
    ) -> Result<Vec<u8>, String> {
        self.write(request, timeout)?;
        let mut header = [0u8; H];
        header.copy_from_slice(&self.read_exact(H, timeout)?);
        let len = body_len(&header)?;
        self.read_exact(len, timeout)
    }

    fn write(&mut self, mut bytes: &[u8], timeout: Duration) -> Result<(), String> {
        while !bytes.is_empty() {
            let room = self.output.check_write().map_err(stream_error)?;
            if room == 0 {
                if !wait(&self.output.subscribe(), timeout) {
                    return Err("the device does not take the request".into());
                }
                continue;
            }
            let n = bytes.len().min(room as usize);
            self.output.write(&bytes[..n]).map_err(stream_error)?;
            bytes = &bytes[n..];
        }
        self.output.flush().map_err(stream_error)
    }

    fn read_exact(&mut self, len: usize, timeout: Duration) -> Result<Vec<u8>, String> {
        let mut got = Vec::with_capacity(len);
        while got.len() < len {
            let chunk = self
                .input
                .read((len - got.len()) as u64)
                .map_err(stream_error)?;
            if chunk.is_empty() && !wait(&self.input.subscribe(), timeout) {
                return Err(format!("no answer within {} ms", timeout.as_millis()));
            }
            got.extend_from_slice(&chunk);
        }
        Ok(got)
    }
}

fn stream_error(e: StreamError) -> String {
    match e {
        StreamError::Closed => "the device closed the connection".into(),
        StreamError::LastOperationFailed(e) => e.to_debug_string(),
    }
}
