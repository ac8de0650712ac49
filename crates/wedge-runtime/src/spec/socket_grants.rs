//! A module's socket grants: the `connect` and `listen` entries of its deployment,
//! `tcp|udp://address:ports`, deny by default.
//!
//! - `address` is an IP (`10.0.0.5`, `[::1]`), a network (`10.0.0.0/24`, `[fd00::/64]`) or,
//!   for `connect` only, a host name (`plc.local`): the module may resolve that name, and
//!   connect to the addresses it resolved to.
//! - `ports` is one port (`502`) or an inclusive range (`4000-4010`).
//! - In `listen`, the unspecified address (`0.0.0.0`, `[::]`) grants every address of its
//!   family on those ports.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

use ipnet::IpNet;

/// TCP or UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `tcp://`.
    Tcp,
    /// `udp://`.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// What a grant's address names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantHost {
    /// Addresses: one (a /32 or /128) or a network.
    Net(IpNet),
    /// A host name, lower case, without a trailing dot.
    Name(String),
}

/// One entry of `connect` or `listen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketGrant {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The addresses, or the name, it grants.
    pub host: GrantHost,
    /// The ports it grants, inclusive.
    pub ports: RangeInclusive<u16>,
}

/// Longest host name (RFC 1035).
const MAX_NAME: usize = 253;

impl SocketGrant {
    /// Parses one entry.
    ///
    /// # Errors
    /// A message naming what is wrong with `entry`.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or_else(|| format!("`{entry}` has no protocol; write e.g. `tcp://{entry}`"))?;
        let protocol = match scheme.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return Err(format!("`{entry}`: protocol must be tcp or udp")),
        };
        let (host, ports) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6
                    .split_once(']')
                    .ok_or_else(|| format!("`{entry}`: `[` without `]`"))?;
                (host, after.strip_prefix(':'))
            }
            None => match rest.rsplit_once(':') {
                Some((host, ports)) => (host, Some(ports)),
                None => (rest, None),
            },
        };
        let ports = ports.ok_or_else(|| {
            format!("`{entry}`: a port is required, e.g. `{scheme}://{rest}:502`")
        })?;
        let ports = parse_ports(ports).ok_or_else(|| {
            format!(
                "`{entry}`: invalid port `{ports}`: write a port (1-65535) or a range `4000-4010`"
            )
        })?;
        Ok(SocketGrant {
            protocol,
            host: parse_host(host).map_err(|e| format!("`{entry}`: {e}"))?,
            ports,
        })
    }

    /// Whether this grant covers `addr` over `protocol`.
    fn covers(&self, protocol: Protocol, addr: SocketAddr) -> bool {
        self.protocol == protocol
            && self.ports.contains(&addr.port())
            && match &self.host {
                GrantHost::Net(net) => {
                    net.contains(&addr.ip())
                        || (net.addr().is_unspecified()
                            && net.addr().is_ipv4() == addr.ip().is_ipv4())
                }
                GrantHost::Name(_) => false,
            }
    }

    /// Whether this grant and `other` could let two modules bind the same address: same
    /// protocol, overlapping ports and overlapping addresses (an unspecified address overlaps
    /// every address of its family, and IPv6's also IPv4's: a dual-stack socket takes both).
    pub fn overlaps(&self, other: &SocketGrant) -> bool {
        let (GrantHost::Net(a), GrantHost::Net(b)) = (&self.host, &other.host) else {
            return false;
        };
        let nets_overlap = a.contains(&b.addr())
            || b.contains(&a.addr())
            || [a, b].iter().any(|n| {
                n.addr().is_unspecified()
                    && (n.addr().is_ipv6() || a.addr().is_ipv4() == b.addr().is_ipv4())
            });
        self.protocol == other.protocol
            && self.ports.start() <= other.ports.end()
            && other.ports.start() <= self.ports.end()
            && nets_overlap
    }
}

fn parse_ports(text: &str) -> Option<RangeInclusive<u16>> {
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0);
    let (start, end) = match text.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(text)?, port(text)?),
    };
    (start <= end).then_some(start..=end)
}

fn parse_host(host: &str) -> Result<GrantHost, String> {
    if host.is_empty() {
        return Err("an address is required".into());
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(GrantHost::Net(IpNet::from(ip)));
    }
    if host.contains('/') {
        return host
            .parse::<IpNet>()
            .map(|net| GrantHost::Net(net.trunc()))
            .map_err(|_| format!("`{host}` is not a network; write e.g. `10.0.0.0/24`"));
    }
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > MAX_NAME || !name.split('.').all(label_ok) {
        return Err(format!(
            "`{host}` is neither an IP address, a network nor a host name"
        ));
    }
    Ok(GrantHost::Name(name))
}

impl fmt::Display for SocketGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.protocol)?;
        match &self.host {
            GrantHost::Net(net) if net.prefix_len() == net.max_prefix_len() => match net.addr() {
                IpAddr::V4(ip) => write!(f, "{ip}")?,
                IpAddr::V6(ip) => write!(f, "[{ip}]")?,
            },
            GrantHost::Net(IpNet::V4(net)) => write!(f, "{net}")?,
            GrantHost::Net(IpNet::V6(net)) => write!(f, "[{net}]")?,
            GrantHost::Name(name) => f.write_str(name)?,
        }
        match (self.ports.start(), self.ports.end()) {
            (a, b) if a == b => write!(f, ":{a}"),
            (a, b) => write!(f, ":{a}-{b}"),
        }
    }
}

/// A module's grants: where it may connect (and send datagrams) and where it may listen.
/// Empty means no sockets at all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SocketGrants {
    /// Where it may connect and send datagrams to.
    pub connect: Vec<SocketGrant>,
    /// Where it may bind and listen.
    pub listen: Vec<SocketGrant>,
}

impl SocketGrants {
    /// Parses the `connect` and `listen` entries. A host name in `listen` is refused: a
    /// module listens on the device's own addresses.
    ///
    /// # Errors
    /// `(field, message)` for the first entry that does not parse.
    pub fn parse<S: AsRef<str>>(
        connect: &[S],
        listen: &[S],
    ) -> Result<Self, (&'static str, String)> {
        let parse_all = |entries: &[S], field| {
            entries
                .iter()
                .map(|e| SocketGrant::parse(e.as_ref()).map_err(|m| (field, m)))
                .collect::<Result<Vec<_>, _>>()
        };
        let connect = parse_all(connect, "connect")?;
        let listen = parse_all(listen, "listen")?;
        if let Some(named) = listen.iter().find(|g| matches!(g.host, GrantHost::Name(_))) {
            return Err((
                "listen",
                format!("`{named}`: listen on an IP address (`0.0.0.0` for all), not a host name"),
            ));
        }
        Ok(SocketGrants { connect, listen })
    }

    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.connect.is_empty() && self.listen.is_empty()
    }

    /// Whether any grant uses `protocol`.
    pub fn uses(&self, protocol: Protocol) -> bool {
        self.connect
            .iter()
            .chain(&self.listen)
            .any(|g| g.protocol == protocol)
    }

    /// Whether a connect grant uses `protocol`.
    pub fn connects(&self, protocol: Protocol) -> bool {
        self.connect.iter().any(|g| g.protocol == protocol)
    }

    /// Whether a connect grant names a host (so the module may resolve names at all).
    pub fn has_names(&self) -> bool {
        self.connect
            .iter()
            .any(|g| matches!(g.host, GrantHost::Name(_)))
    }

    /// Whether a connect grant covers `addr` (by address; names are resolved elsewhere).
    pub fn may_connect(&self, protocol: Protocol, addr: SocketAddr) -> bool {
        self.connect.iter().any(|g| g.covers(protocol, addr))
    }

    /// Whether a listen grant covers `addr`.
    pub fn may_listen(&self, protocol: Protocol, addr: SocketAddr) -> bool {
        self.listen.iter().any(|g| g.covers(protocol, addr))
    }

    /// The connect grants naming host `name` (lower case, no trailing dot).
    pub fn for_name<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a SocketGrant> {
        self.connect
            .iter()
            .filter(move |g| matches!(&g.host, GrantHost::Name(n) if n == name))
    }

    /// The entries as written back (`connect`, `listen`), which parse to the same grants.
    pub fn entries(&self) -> (Vec<String>, Vec<String>) {
        let text = |v: &[SocketGrant]| v.iter().map(ToString::to_string).collect();
        (text(&self.connect), text(&self.listen))
    }
}

#[cfg(test)]
mod tests;
