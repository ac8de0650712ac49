//! The `wasi:sockets` functions wedge answers before wasmtime-wasi does, because its address
//! check cannot see them: creating a socket (refused, and logged, when no grant uses the
//! protocol, or when the module holds its `sockets` limit), accepting one (counted against the
//! limit too: past it the client is closed at once) and dropping one (counted back), and
//! resolving a name (only names in a `connect` grant; the addresses they resolve to become
//! reachable on that grant's ports). Each then goes to wasmtime-wasi's own code.
//!
//! They shadow wasmtime-wasi's definitions in the linker (`add_to_linker` after
//! `wasmtime_wasi::p2::add_to_linker_async`): whole interfaces where bindgen has them
//! (`tcp-create-socket`, `udp-create-socket`, `ip-name-lookup`), single functions and resource
//! destructors of `tcp` and `udp` by name.

use wasmtime::StoreContextMut;
use wasmtime::component::{HasData, Linker, Resource, ResourceType};
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{
    self, HostResolveAddressStream, ResolveAddressStream,
};
use wasmtime_wasi::p2::bindings::sockets::network::{
    self, ErrorCode, IpAddress, IpAddressFamily, Network,
};
use wasmtime_wasi::p2::bindings::sockets::tcp::HostTcpSocket;
use wasmtime_wasi::p2::bindings::sockets::udp::HostUdpSocket;
use wasmtime_wasi::p2::bindings::sockets::{tcp_create_socket, udp_create_socket};
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, DynPollable, SocketError, TcpSocket, UdpSocket,
};
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
    add_counting(linker)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The interfaces' names in wasmtime-wasi 48's WIT (`wasi:sockets@0.2.12`); guests importing
/// an older 0.2 version are linked to them by semver.
const TCP: &str = "wasi:sockets/tcp@0.2.12";
const UDP: &str = "wasi:sockets/udp@0.2.12";

/// An accepted connection: the socket and its two streams.
type Accepted = (
    Resource<TcpSocket>,
    Resource<DynInputStream>,
    Resource<DynOutputStream>,
);

/// Accepting counts against the limit, dropping counts back.
fn add_counting(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let mut tcp = linker.instance(TCP)?;
    tcp.resource(
        "tcp-socket",
        ResourceType::host::<TcpSocket>(),
        |mut store, rep| {
            let mut front = store.data_mut().sockets_front();
            front.policy.close_socket();
            HostTcpSocket::drop(&mut front.sockets, Resource::new_own(rep))
        },
    )?;
    tcp.func_wrap(
        "[method]tcp-socket.accept",
        |mut store: StoreContextMut<'_, HostState>,
         (listener,): (Resource<TcpSocket>,)|
         -> wasmtime::Result<(Result<Accepted, ErrorCode>,)> {
            let mut front = store.data_mut().sockets_front();
            match front.accept(listener) {
                Ok(accepted) => Ok((Ok(accepted),)),
                Err(e) => Ok((Err(network::Host::convert_error_code(&mut front, e)?),)),
            }
        },
    )?;
    let mut udp = linker.instance(UDP)?;
    udp.resource(
        "udp-socket",
        ResourceType::host::<UdpSocket>(),
        |mut store, rep| {
            let mut front = store.data_mut().sockets_front();
            front.policy.close_socket();
            HostUdpSocket::drop(&mut front.sockets, Resource::new_own(rep))
        },
    )?;
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

impl Front<'_> {
    /// wasmtime-wasi's accept, counted: past the limit the new client is closed at once.
    fn accept(&mut self, listener: Resource<TcpSocket>) -> Result<Accepted, SocketError> {
        let (socket, input, output) = HostTcpSocket::accept(&mut self.sockets, listener)?;
        if self.policy.open_socket("accepting a tcp connection") {
            return Ok((socket, input, output));
        }
        // Children first: a socket with live streams cannot be deleted.
        let table = &mut *self.sockets.table;
        table.delete(input)?;
        table.delete(output)?;
        drop(table.delete(socket)?);
        Err(ErrorCode::NewSocketLimit.into())
    }

    /// A socket is about to be created: counted, unless it is refused.
    fn open(&mut self, protocol: Protocol) -> Result<(), SocketError> {
        self.check_protocol(protocol)?;
        if !self
            .policy
            .open_socket(&format!("creating a {protocol} socket"))
        {
            return Err(ErrorCode::NewSocketLimit.into());
        }
        Ok(())
    }
}

impl tcp_create_socket::Host for Front<'_> {
    fn create_tcp_socket(
        &mut self,
        family: IpAddressFamily,
    ) -> Result<Resource<TcpSocket>, SocketError> {
        self.open(Protocol::Tcp)?;
        self.sockets
            .create_tcp_socket(family)
            .inspect_err(|_| self.policy.close_socket())
    }
}

impl udp_create_socket::Host for Front<'_> {
    async fn create_udp_socket(
        &mut self,
        family: IpAddressFamily,
    ) -> Result<Resource<UdpSocket>, SocketError> {
        self.open(Protocol::Udp)?;
        let created = self.sockets.create_udp_socket(family).await;
        created.inspect_err(|_| self.policy.close_socket())
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
