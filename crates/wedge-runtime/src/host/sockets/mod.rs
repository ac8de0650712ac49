//! `wasi:sockets` behind the module's grants (`connect`, `listen`): wasmtime-wasi's own
//! sockets, with [`SocketPolicy`] as its address check and [`front`] in front of socket creation
//! and name resolution. Everything not granted is refused with `access-denied`, and logged at the rate
//! of the module's denial warnings.

mod front;

pub(crate) use front::add_to_linker;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

use crate::limiter::Denials;
use crate::spec::{Protocol, SocketGrants};

/// Most addresses a module keeps from resolving its granted names, and most UDP peers it may
/// answer: a module that resolves or hears from without end must not grow the host's memory.
const MAX_LEARNED: usize = 1024;

/// The ports of the grants an address was learned for, by protocol.
type LearnedPorts = Vec<(Protocol, RangeInclusive<u16>)>;

/// One module instance's socket permissions.
pub(crate) struct SocketPolicy {
    grants: SocketGrants,
    /// Addresses its granted names resolved to, with the ports of those grants.
    learned: Mutex<HashMap<IpAddr, LearnedPorts>>,
    /// The name each open resolve-address stream resolves, by its handle.
    streams: Mutex<HashMap<u32, String>>,
    /// UDP peers that sent it a datagram on a listen grant: it may answer them.
    peers: Mutex<HashSet<SocketAddr>>,
    /// Where refusals are counted and warned about.
    denials: Arc<Denials>,
    /// Sockets the instance holds (created or accepted, not yet dropped), and its limit.
    open: AtomicUsize,
    max_open: usize,
}

impl SocketPolicy {
    pub(crate) fn new(grants: SocketGrants, max_open: usize, denials: Arc<Denials>) -> Arc<Self> {
        Arc::new(SocketPolicy {
            grants,
            learned: Mutex::default(),
            streams: Mutex::default(),
            peers: Mutex::default(),
            denials,
            open: AtomicUsize::new(0),
            max_open,
        })
    }

    /// Counts one more open socket, unless the instance holds its limit already (then the
    /// refusal is counted and logged).
    pub(crate) fn open_socket(&self, what: &str) -> bool {
        let taken = self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_open).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            self.refused_because(
                what,
                &format!(
                    "the module holds its limit of {} sockets (`sockets`)",
                    self.max_open
                ),
            );
        }
        taken
    }

    /// One socket fewer.
    pub(crate) fn close_socket(&self) {
        let _ = self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Gives `wasi` the module's sockets: TCP and UDP only if a grant uses them, name lookup
    /// only if a grant names a host, and every address through [`SocketPolicy::allows`].
    pub(crate) fn install(self: &Arc<Self>, wasi: &mut WasiCtxBuilder) {
        let grants = &self.grants;
        wasi.allow_tcp(grants.uses(Protocol::Tcp))
            .allow_udp(grants.uses(Protocol::Udp))
            .allow_ip_name_lookup(grants.has_names());
        let policy = self.clone();
        wasi.socket_addr_check(move |addr, usage| {
            let allowed = policy.allows(addr, usage);
            Box::pin(std::future::ready(allowed))
        });
    }

    /// Whether `usage` of `addr` is granted; a refusal is counted and logged.
    pub(crate) fn allows(&self, addr: SocketAddr, usage: SocketAddrUse) -> bool {
        let allowed = self.decide(addr, usage);
        // Datagrams from strangers are dropped silently by wasmtime-wasi; they are not the
        // module's doing, so they are neither counted nor logged.
        if !allowed && !matches!(usage, SocketAddrUse::UdpReceive) {
            self.refused(&format!("{} {addr}", describe(usage)));
        }
        allowed
    }

    fn decide(&self, addr: SocketAddr, usage: SocketAddrUse) -> bool {
        let g = &self.grants;
        match usage {
            // Port 0 is the ephemeral bind before a connect (implicit or explicit); a fixed
            // port is a server's and needs a listen grant.
            SocketAddrUse::TcpBind if addr.port() == 0 => g.connects(Protocol::Tcp),
            SocketAddrUse::TcpBind | SocketAddrUse::TcpListen => g.may_listen(Protocol::Tcp, addr),
            // Only reached on a listener that was granted.
            SocketAddrUse::TcpAccept => true,
            SocketAddrUse::TcpConnect => self.may_connect(Protocol::Tcp, addr),
            SocketAddrUse::UdpBind if addr.port() == 0 => g.connects(Protocol::Udp),
            SocketAddrUse::UdpBind => g.may_listen(Protocol::Udp, addr),
            SocketAddrUse::UdpSend => {
                self.may_connect(Protocol::Udp, addr) || self.lock_peers().contains(&addr)
            }
            SocketAddrUse::UdpReceive => {
                if self.may_connect(Protocol::Udp, addr) {
                    return true;
                }
                // A UDP server hears from anyone, and may answer who it heard from.
                let serving = g.listen.iter().any(|l| l.protocol == Protocol::Udp);
                if serving {
                    let mut peers = self.lock_peers();
                    if peers.len() >= MAX_LEARNED {
                        peers.clear();
                    }
                    peers.insert(addr);
                }
                serving
            }
        }
    }

    fn may_connect(&self, protocol: Protocol, addr: SocketAddr) -> bool {
        self.grants.may_connect(protocol, addr)
            || self
                .learned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&addr.ip())
                .is_some_and(|ports| {
                    ports
                        .iter()
                        .any(|(p, range)| *p == protocol && range.contains(&addr.port()))
                })
    }

    fn lock_peers(&self) -> std::sync::MutexGuard<'_, HashSet<SocketAddr>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the module may resolve `name` (lower case, no trailing dot).
    pub(crate) fn may_resolve(&self, name: &str) -> bool {
        self.grants.for_name(name).next().is_some()
    }

    /// A resolve-address stream for `name` was opened as handle `rep`.
    fn streams_insert(&self, rep: u32, name: String) {
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rep, name);
    }

    fn streams_remove(&self, rep: u32) {
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&rep);
    }

    /// Stream `rep` yielded `ip`: learned for the name it resolves.
    fn learn_for_stream(&self, rep: u32, ip: IpAddr) {
        let name = self
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&rep)
            .cloned();
        if let Some(name) = name {
            self.learn(&name, ip);
        }
    }

    /// `name` resolved to `ip`: the module may now reach `ip` on that name's grants.
    fn learn(&self, name: &str, ip: IpAddr) {
        let mut learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        if learned.len() >= MAX_LEARNED && !learned.contains_key(&ip) {
            return;
        }
        let ports = learned.entry(ip).or_default();
        for grant in self.grants.for_name(name) {
            let entry = (grant.protocol, grant.ports.clone());
            if !ports.contains(&entry) {
                ports.push(entry);
            }
        }
    }

    /// Counts and logs (rate-limited) one refused use of the network, `what` naming it.
    pub(crate) fn refused(&self, what: &str) {
        self.refused_because(what, "not in the module's `connect` or `listen` grants");
    }

    fn refused_because(&self, what: &str, why: &str) {
        self.denials.deny(
            "socket uses",
            |module| tracing::warn!(module = %module, "{what} denied: {why}"),
        );
    }
}

fn describe(usage: SocketAddrUse) -> &'static str {
    match usage {
        SocketAddrUse::TcpBind => "tcp bind to",
        SocketAddrUse::TcpListen => "tcp listen on",
        SocketAddrUse::TcpAccept => "tcp accept from",
        SocketAddrUse::TcpConnect => "tcp connect to",
        SocketAddrUse::UdpBind => "udp bind to",
        SocketAddrUse::UdpSend => "udp send to",
        SocketAddrUse::UdpReceive => "udp receive from",
    }
}

#[cfg(test)]
mod tests;
