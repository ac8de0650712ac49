use super::*;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn grants(connect: &[&str], listen: &[&str]) -> SocketGrants {
    SocketGrants::parse(connect, listen).unwrap()
}

#[test]
fn an_address_grant_covers_its_protocol_address_and_ports_only() {
    let g = grants(&["tcp://10.0.0.5:502", "udp://10.0.0.0/24:4000-4010"], &[]);
    assert!(g.may_connect(Protocol::Tcp, addr("10.0.0.5:502")));
    assert!(
        !g.may_connect(Protocol::Tcp, addr("10.0.0.5:503")),
        "other port"
    );
    assert!(
        !g.may_connect(Protocol::Tcp, addr("10.0.0.6:502")),
        "other host"
    );
    assert!(
        !g.may_connect(Protocol::Udp, addr("10.0.0.5:502")),
        "other protocol"
    );
    assert!(g.may_connect(Protocol::Udp, addr("10.0.0.77:4000")));
    assert!(g.may_connect(Protocol::Udp, addr("10.0.0.77:4010")));
    assert!(!g.may_connect(Protocol::Udp, addr("10.0.0.77:4011")));
    assert!(
        !g.may_connect(Protocol::Udp, addr("10.0.1.1:4000")),
        "outside the /24"
    );
    assert!(
        !g.may_listen(Protocol::Tcp, addr("10.0.0.5:502")),
        "connect is not listen"
    );
}

#[test]
fn ipv6_grants_and_the_unspecified_listen_address() {
    let g = grants(
        &["tcp://[::1]:9000"],
        &["tcp://0.0.0.0:5020", "udp://[::]:6000"],
    );
    assert!(g.may_connect(Protocol::Tcp, addr("[::1]:9000")));
    assert!(!g.may_connect(Protocol::Tcp, addr("127.0.0.1:9000")));
    assert!(g.may_listen(Protocol::Tcp, addr("0.0.0.0:5020")));
    assert!(g.may_listen(Protocol::Tcp, addr("127.0.0.1:5020")));
    assert!(
        !g.may_listen(Protocol::Tcp, addr("[::]:5020")),
        "0.0.0.0 is IPv4 only"
    );
    assert!(g.may_listen(Protocol::Udp, addr("[::1]:6000")));
    assert!(!g.may_listen(Protocol::Udp, addr("[::1]:6001")));
}

#[test]
fn host_names_are_kept_for_resolution_and_cover_no_address() {
    let g = grants(&["tcp://PLC.local.:502"], &[]);
    assert_eq!(g.for_name("plc.local").count(), 1);
    assert_eq!(g.for_name("other.local").count(), 0);
    assert!(!g.may_connect(Protocol::Tcp, addr("127.0.0.1:502")));
}

#[test]
fn entries_print_back_to_the_same_grants() {
    let connect = [
        "tcp://10.0.0.5:502",
        "udp://10.0.0.0/24:4000-4010",
        "tcp://[::1]:9000",
        "tcp://plc.local:502",
    ];
    let listen = ["tcp://0.0.0.0:5020", "udp://[fd00::/64]:6000"];
    let g = grants(&connect, &listen);
    let (c, l) = g.entries();
    assert_eq!(c, connect);
    assert_eq!(l, listen);
    assert_eq!(SocketGrants::parse(&c, &l).unwrap(), g);
}

#[test]
fn listen_grants_overlap_when_two_modules_could_bind_the_same_address() {
    let one = |s: &str| SocketGrant::parse(s).unwrap();
    let a = one("tcp://0.0.0.0:5020");
    assert!(a.overlaps(&one("tcp://127.0.0.1:5020")));
    assert!(a.overlaps(&one("tcp://127.0.0.1:5000-5030")));
    assert!(!a.overlaps(&one("tcp://127.0.0.1:5021")));
    assert!(
        !a.overlaps(&one("udp://0.0.0.0:5020")),
        "TCP and UDP ports are apart"
    );
    assert!(
        !a.overlaps(&one("tcp://[::1]:5020")),
        "an IPv4 wildcard takes no IPv6"
    );
    assert!(
        one("tcp://[::]:5020").overlaps(&one("tcp://10.0.0.1:5020")),
        "dual stack"
    );
    assert!(!one("tcp://10.0.0.1:5020").overlaps(&one("tcp://10.0.0.2:5020")));
    assert!(one("tcp://10.0.0.0/24:5020").overlaps(&one("tcp://10.0.0.2:5020")));
}

#[test]
fn bad_entries_are_refused_with_a_reason() {
    for (entry, needle) in [
        ("10.0.0.5:502", "no protocol"),
        ("http://10.0.0.5:502", "protocol must be tcp or udp"),
        ("tcp://10.0.0.5", "a port is required"),
        ("tcp://10.0.0.5:0", "invalid port"),
        ("tcp://10.0.0.5:70000", "invalid port"),
        ("tcp://10.0.0.5:10-5", "invalid port"),
        ("tcp://[::1:502", "without `]`"),
        ("tcp://10.0.0.0/33:502", "not a network"),
        ("tcp://bad_name!:502", "neither an IP"),
        ("tcp://:502", "an address is required"),
    ] {
        let err = SocketGrant::parse(entry).unwrap_err();
        assert!(err.contains(needle), "{entry}: {err}");
    }
    let (field, err) = SocketGrants::parse(&[] as &[&str], &["tcp://plc.local:502"]).unwrap_err();
    assert_eq!(field, "listen");
    assert!(err.contains("not a host name"), "{err}");
}
