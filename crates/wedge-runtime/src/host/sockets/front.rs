//! The `wasi:sockets` functions wedge answers before wasmtime-wasi does, because its address
//! check cannot see them: creating a socket (refused, and logged, when no grant uses the
//! protocol) and resolving a name (only names in a `connect` grant; the addresses they resolve
//! to become reachable on that grant's ports). Both then go to wasmtime-wasi's own code.
//!
//! They shadow wasmtime-wasi's definitions in the linker (`add_to_linker` after
//! `wasmtime_wasi::p2::add_to_linker_async`).

use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{
    self, HostResolveAddressStream, ResolveAddressStream,
};
use wasmtime_wasi::p2::bindings::sockets::network::{
    self, ErrorCode, IpAddress, IpAddressFamily, Network,
};
use wasmtime_wasi::p2::bindings::sockets::{tcp_create_socket, udp_create_socket};
use wasmtime_wasi::p2::{DynPollable, SocketError, TcpSocket, UdpSocket};
use wasmtime_wasi::sockets::WasiSocketsCtxView;

use super::SocketPolicy;
use crate::host::HostState;
use crate::spec::Protocol;

/// wasmtime-wasi's sockets of one store, with the module's policy.
pub(crate) struct Front<'a> {
    sockets: WasiSocketsCtxView<'a>,
    policy: &'a SocketPolicy,
}

struct Granted;

impl HasData for Granted {
    type Data<'a> = Front<'a>;
}

/// Defines the shadowing functions in `linker`, which already has wasmtime-wasi's.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    fn get(state: &mut HostState) -> Front<'_> {
        state.sockets_front()
    }
    tcp_create_socket::add_to_linker::<HostState, Granted>(linker, get)?;
    udp_create_socket::add_to_linker::<HostState, Granted>(linker, get)?;
    ip_name_lookup::add_to_linker::<HostState, Granted>(linker, get)?;
    linker.allow_shadowing(false);
    Ok(())
}

impl HostState {
    fn sockets_front(&mut self) -> Front<'_> {
        Front {
            sockets: WasiSocketsCtxView {
                ctx: self.wasi.sockets(),
                table: &mut self.table,
            },
            policy: &self.sockets,
        }
    }
}

impl Front<'_> {
    /// Access denied, logged, unless a grant uses `protocol`.
    fn check_protocol(&self, protocol: Protocol) -> Result<(), SocketError> {
        if self.policy.grants.uses(protocol) {
            return Ok(());
        }
        self.policy
            .refused(&format!("creating a {protocol} socket"));
        Err(ErrorCode::AccessDenied.into())
    }
}

/// The error conversion every socket interface needs, as wasmtime-wasi does it.
impl network::Host for Front<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        self.sockets.convert_error_code(error)
    }

    fn network_error_code(
        &mut self,
        error: Resource<wasmtime_wasi::p2::bindings::io::error::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        self.sockets.network_error_code(error)
    }
}

impl network::HostNetwork for Front<'_> {
    fn drop(&mut self, network: Resource<Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.sockets, network)
    }
}

impl tcp_create_socket::Host for Front<'_> {
    fn create_tcp_socket(
        &mut self,
        family: IpAddressFamily,
    ) -> Result<Resource<TcpSocket>, SocketError> {
        self.check_protocol(Protocol::Tcp)?;
        self.sockets.create_tcp_socket(family)
    }
}

impl udp_create_socket::Host for Front<'_> {
    async fn create_udp_socket(
        &mut self,
        family: IpAddressFamily,
    ) -> Result<Resource<UdpSocket>, SocketError> {
        self.check_protocol(Protocol::Udp)?;
        self.sockets.create_udp_socket(family).await
    }
}

impl ip_name_lookup::Host for Front<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> Result<Resource<ResolveAddressStream>, SocketError> {
        let key = normalize(&name);
        // An IP literal "resolves" to itself without a lookup; the address check judges it.
        if key.parse::<std::net::IpAddr>().is_err() && !self.policy.may_resolve(&key) {
            self.policy
                .refused(&format!("name lookup of `{}`", truncate(&name)));
            return Err(ErrorCode::AccessDenied.into());
        }
        let stream = self.sockets.resolve_addresses(network, name)?;
        self.policy.streams_insert(stream.rep(), key);
        Ok(stream)
    }
}

impl HostResolveAddressStream for Front<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> Result<Option<IpAddress>, SocketError> {
        let rep = stream.rep();
        let next = self.sockets.resolve_next_address(stream)?;
        if let Some(address) = &next {
            self.policy.learn_for_stream(rep, ip(address));
        }
        Ok(next)
    }

    fn subscribe(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        HostResolveAddressStream::subscribe(&mut self.sockets, stream)
    }

    fn drop(&mut self, stream: Resource<ResolveAddressStream>) -> wasmtime::Result<()> {
        self.policy.streams_remove(stream.rep());
        HostResolveAddressStream::drop(&mut self.sockets, stream)
    }
}

/// A host name as grants hold it: lower case, without the trailing dot.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// At most 64 characters of a name the guest chose, for the log.
fn truncate(name: &str) -> String {
    name.chars().take(64).collect()
}

fn ip(address: &IpAddress) -> std::net::IpAddr {
    match *address {
        IpAddress::Ipv4((a, b, c, d)) => std::net::Ipv4Addr::new(a, b, c, d).into(),
        IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => {
            std::net::Ipv6Addr::new(a, b, c, d, e, f, g, h).into()
        }
    }
}
