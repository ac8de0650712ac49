use super::*;
use std::sync::atomic::AtomicU64;

fn policy(connect: &[&str], listen: &[&str]) -> (Arc<SocketPolicy>, Arc<AtomicU64>) {
    let denied = Arc::new(AtomicU64::new(0));
    let grants = SocketGrants::parse(connect, listen).unwrap();
    let policy = SocketPolicy::new(grants, 2, Arc::new(Denials::new("m", denied.clone())));
    (policy, denied)
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn without_grants_every_use_is_refused_and_counted() {
    let (p, denied) = policy(&[], &[]);
    for (a, usage) in [
        ("0.0.0.0:0", SocketAddrUse::TcpBind),
        ("127.0.0.1:5020", SocketAddrUse::TcpBind),
        ("127.0.0.1:5020", SocketAddrUse::TcpListen),
        ("127.0.0.1:80", SocketAddrUse::TcpConnect),
        ("[::1]:80", SocketAddrUse::TcpConnect),
        ("0.0.0.0:0", SocketAddrUse::UdpBind),
        ("127.0.0.1:53", SocketAddrUse::UdpSend),
    ] {
        assert!(!p.allows(addr(a), usage), "{usage:?} {a}");
    }
    assert_eq!(denied.load(Ordering::Relaxed), 7);
    assert!(!p.allows(addr("127.0.0.1:53"), SocketAddrUse::UdpReceive));
    assert_eq!(
        denied.load(Ordering::Relaxed),
        7,
        "stray datagrams are not the module's"
    );
}

#[test]
fn a_client_may_bind_an_ephemeral_port_and_connect_only_where_granted() {
    let (p, _) = policy(&["tcp://127.0.0.1:502"], &[]);
    assert!(p.allows(addr("0.0.0.0:0"), SocketAddrUse::TcpBind));
    assert!(p.allows(addr("127.0.0.1:502"), SocketAddrUse::TcpConnect));
    assert!(!p.allows(addr("127.0.0.1:503"), SocketAddrUse::TcpConnect));
    assert!(
        !p.allows(addr("127.0.0.1:502"), SocketAddrUse::TcpBind),
        "a fixed port is a server's"
    );
    assert!(
        !p.allows(addr("0.0.0.0:0"), SocketAddrUse::UdpBind),
        "no UDP grant"
    );
}

#[test]
fn a_server_listens_on_its_grant_and_accepts_anyone() {
    let (p, _) = policy(&[], &["tcp://0.0.0.0:5020", "udp://127.0.0.1:6000"]);
    assert!(p.allows(addr("127.0.0.1:5020"), SocketAddrUse::TcpBind));
    assert!(p.allows(addr("0.0.0.0:5020"), SocketAddrUse::TcpListen));
    assert!(!p.allows(addr("0.0.0.0:5021"), SocketAddrUse::TcpListen));
    assert!(
        !p.allows(addr("0.0.0.0:0"), SocketAddrUse::TcpListen),
        "an ephemeral listener"
    );
    assert!(p.allows(addr("10.1.2.3:40000"), SocketAddrUse::TcpAccept));
    assert!(!p.allows(addr("127.0.0.1:80"), SocketAddrUse::TcpConnect));
    // UDP: it may answer whoever it heard from, and nobody else.
    assert!(p.allows(addr("127.0.0.1:6000"), SocketAddrUse::UdpBind));
    assert!(!p.allows(addr("127.0.0.1:7000"), SocketAddrUse::UdpSend));
    assert!(p.allows(addr("127.0.0.1:7000"), SocketAddrUse::UdpReceive));
    assert!(p.allows(addr("127.0.0.1:7000"), SocketAddrUse::UdpSend));
    assert!(!p.allows(addr("127.0.0.1:7001"), SocketAddrUse::UdpSend));
}

#[test]
fn a_granted_name_opens_the_addresses_it_resolved_to_on_its_ports() {
    let (p, _) = policy(&["tcp://plc.local:502"], &[]);
    assert!(p.may_resolve("plc.local"));
    assert!(!p.may_resolve("other.local"));
    assert!(!p.allows(addr("10.0.0.9:502"), SocketAddrUse::TcpConnect));
    p.learn("plc.local", "10.0.0.9".parse().unwrap());
    assert!(p.allows(addr("10.0.0.9:502"), SocketAddrUse::TcpConnect));
    assert!(!p.allows(addr("10.0.0.9:503"), SocketAddrUse::TcpConnect));
    assert!(!p.allows(addr("10.0.0.9:502"), SocketAddrUse::UdpSend));
}

#[test]
fn open_sockets_are_counted_against_the_limit() {
    let (p, denied) = policy(&["tcp://127.0.0.1:502"], &[]);
    assert!(p.open_socket("a"));
    assert!(p.open_socket("b"));
    assert!(!p.open_socket("c"), "the limit is 2");
    assert_eq!(denied.load(Ordering::Relaxed), 1);
    p.close_socket();
    assert!(p.open_socket("d"), "a closed one makes room");
}
