//! The listen addresses of a whole deployment (`listen` grants and `http-listen`): no two
//! modules may be granted the same address, and a port below the host's unprivileged start
//! (1024 unless `net.ipv4.ip_unprivileged_port_start` says otherwise) needs the host to hold
//! `CAP_NET_BIND_SERVICE`. Checked when a deployment is applied, so that the error names the
//! module and the field instead of showing up later as a failed bind.

use super::{ModuleSpec, SocketGrant};

/// `CAP_NET_BIND_SERVICE`'s bit in the capability sets (linux/capability.h).
const CAP_NET_BIND_SERVICE: u32 = 10;

/// The listen addresses each module is granted, with the field that grants them.
fn listens(spec: &ModuleSpec) -> impl Iterator<Item = (&'static str, SocketGrant)> + '_ {
    let grants = spec.sockets.listen.iter().map(|g| ("listen", g.clone()));
    grants.chain(spec.http.iter().map(|h| ("http-listen", h.as_grant())))
}

/// A listen address a deployment cannot have: `module` is the one whose field the message
/// (`modules.<module>.<field>: …`) names.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ListenError {
    /// The module at fault.
    pub module: String,
    message: String,
}

/// Checks the listen addresses of `modules` (name, settings): none granted twice, none this
/// host may not bind.
///
/// # Errors
/// The first conflict or privileged port.
pub fn check_listens<'a>(
    modules: impl IntoIterator<Item = (&'a str, &'a ModuleSpec)> + Clone,
) -> Result<(), ListenError> {
    check_unique(modules.clone())?;
    modules
        .into_iter()
        .try_for_each(|(name, spec)| check_privileged_ports(name, spec))
}

/// `modules.<b>.<field>: <grant> overlaps <grant> of module <a>` for the first conflict.
fn check_unique<'a>(
    modules: impl IntoIterator<Item = (&'a str, &'a ModuleSpec)>,
) -> Result<(), ListenError> {
    let mut seen: Vec<(&str, &str, SocketGrant)> = Vec::new();
    for (name, spec) in modules {
        for (field, grant) in listens(spec) {
            if let Some((other, other_field, theirs)) =
                seen.iter().find(|(_, _, g)| g.overlaps(&grant))
            {
                let whose = if *other == name {
                    format!("its own `{other_field}`")
                } else {
                    format!("module {other}'s `{other_field}`")
                };
                return Err(ListenError {
                    module: name.to_string(),
                    message: format!(
                        "modules.{name}.{field}: `{grant}` overlaps `{theirs}` in {whose}: two \
                         listeners cannot share an address"
                    ),
                });
            }
            seen.push((name, field, grant));
        }
    }
    Ok(())
}

/// `modules.<name>.<field>: port N is below M …`, naming the capability to grant, unless this
/// host may bind every port module `name` listens on.
fn check_privileged_ports(name: &str, spec: &ModuleSpec) -> Result<(), ListenError> {
    let unprivileged = unprivileged_port_start();
    let Some((field, grant)) = listens(spec).find(|(_, g)| *g.ports.start() < unprivileged) else {
        return Ok(());
    };
    if has_capability(CAP_NET_BIND_SERVICE) {
        return Ok(());
    }
    Err(ListenError {
        module: name.to_string(),
        message: format!(
            "modules.{name}.{field}: `{grant}`: port {} is below {unprivileged} \
             (net.ipv4.ip_unprivileged_port_start) and this wedge process lacks \
             CAP_NET_BIND_SERVICE; give it the capability \
             (AmbientCapabilities=CAP_NET_BIND_SERVICE in wedge.service) or choose a port from \
             {unprivileged} up",
            grant.ports.start()
        ),
    })
}

/// The first port an unprivileged process may bind.
fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// Whether capability `bit` is in this process's effective set (`CapEff` of
/// `/proc/self/status`). Unknown counts as absent: the bind would then fail anyway.
fn has_capability(bit: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << bit) != 0)
}
