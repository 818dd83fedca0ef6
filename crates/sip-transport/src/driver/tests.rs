//! Driver tests over loopback: real sockets, ports chosen by the kernel.

use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket as StdUdpSocket};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener as TokioTcpListener, TcpStream};

use super::*;

/// Bounds every wait so a broken test fails instead of hanging.
const WAIT: Duration = Duration::from_secs(5);

fn msg(body: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn config() -> TransportConfig {
    TransportConfig {
        max_message_size: 4096,
        tls: None,
        max_connections: 16,
        idle_timeout: Duration::from_secs(30),
        channel_capacity: 64,
    }
}

fn v4() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, 0).into()
}

async fn bind(
    specs: &[(Transport, SocketAddr)],
    cfg: TransportConfig,
) -> (TransportLayer, mpsc::Receiver<TransportEvent>) {
    let specs: Vec<ListenerSpec> = specs
        .iter()
        .map(|&(transport, addr)| ListenerSpec { transport, addr })
        .collect();
    TransportLayer::bind(&specs, cfg).await.unwrap()
}

async fn next_event(rx: &mut mpsc::Receiver<TransportEvent>) -> TransportEvent {
    timeout(WAIT, rx.recv())
        .await
        .expect("an event in time")
        .expect("channel open")
}

async fn next_message(rx: &mut mpsc::Receiver<TransportEvent>) -> (Bytes, Source) {
    match next_event(rx).await {
        TransportEvent::Message { data, source } => (data, source),
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn read_exact_n(s: &mut (impl AsyncRead + Unpin), n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    timeout(WAIT, s.read_exact(&mut buf))
        .await
        .expect("bytes in time")
        .unwrap();
    buf
}

/// Reads until EOF (or a reset); true if the peer closed in time.
async fn closed_by_peer(s: &mut (impl AsyncRead + Unpin)) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match timeout(WAIT, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn udp_round_trip() {
    let (layer, mut rx) = bind(&[(Transport::Udp, v4())], config()).await;
    let server = layer.local_addr(0);
    assert_ne!(server.port(), 0);
    let client = StdUdpSocket::bind(v4()).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.send_to(&msg(""), server).unwrap();

    let (data, source) = next_message(&mut rx).await;
    assert_eq!(&data[..], &msg("")[..]);
    assert_eq!(source.transport, Transport::Udp);
    assert_eq!(source.remote, client.local_addr().unwrap());
    assert_eq!(source.local, server);
    assert_eq!(source.listener, 0);
    assert_eq!(source.flow, None);

    layer.send(Target::reply_to(&source), Bytes::from_static(b"reply"));
    let mut buf = [0u8; 64];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"reply");
    assert_eq!(from, server);
    let st = layer.stats();
    assert_eq!((st.datagrams_in, st.datagrams_out), (1, 1));
}

#[tokio::test]
async fn udp_ipv6_round_trip() {
    let specs = [
        (Transport::Udp, v4()),
        (Transport::Udp, SocketAddr::from((Ipv6Addr::LOCALHOST, 0))),
    ];
    let specs: Vec<ListenerSpec> = specs
        .iter()
        .map(|&(transport, addr)| ListenerSpec { transport, addr })
        .collect();
    let (layer, mut rx) = match TransportLayer::bind(&specs, config()).await {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
            eprintln!("no IPv6 loopback here; skipped: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let server6 = layer.local_addr(1);
    assert!(server6.is_ipv6());
    let client = StdUdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.send_to(&msg("v6"), server6).unwrap();
    let (_, source) = next_message(&mut rx).await;
    assert_eq!(source.listener, 1);
    assert_eq!(source.remote, client.local_addr().unwrap());
    // A target without a listener goes out of the socket of its family.
    let target = Target {
        listener: None,
        ..Target::reply_to(&source)
    };
    layer.send(target, Bytes::from_static(b"six"));
    let mut buf = [0u8; 16];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"six"[..], server6));
}

#[tokio::test]
async fn udp_v6_wildcard_coexists_with_v4_wildcard() {
    // IPV6_V6ONLY: [::]:P binds while 0.0.0.0:P is taken (no traffic is sent).
    let v4_any = StdUdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let port = v4_any.local_addr().unwrap().port();
    let spec = [ListenerSpec {
        transport: Transport::Udp,
        addr: (Ipv6Addr::UNSPECIFIED, port).into(),
    }];
    match TransportLayer::bind(&spec, config()).await {
        Ok((layer, _rx)) => assert_eq!(layer.local_addr(0).port(), port),
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => eprintln!("no IPv6 here; skipped: {e}"),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn udp_keepalive_and_oversize_are_not_forwarded() {
    let cfg = TransportConfig {
        max_message_size: 100,
        ..config()
    };
    let (layer, mut rx) = bind(&[(Transport::Udp, v4())], cfg).await;
    let client = StdUdpSocket::bind(v4()).unwrap();
    let server = layer.local_addr(0);
    client.send_to(b"\r\n\r\n", server).unwrap();
    client.send_to(&[b'x'; 101], server).unwrap();
    client.send_to(&[b'y'; 100], server).unwrap(); // exactly the max: kept
    let (data, _) = next_message(&mut rx).await;
    assert_eq!(&data[..], &[b'y'; 100][..]);
    let st = layer.stats();
    assert_eq!(st.dropped_oversize, 1);
    assert_eq!(st.datagrams_in, 2);
}

#[tokio::test]
async fn full_event_channel_drops_and_counts() {
    let cfg = TransportConfig {
        channel_capacity: 1,
        ..config()
    };
    let (layer, mut rx) = bind(&[(Transport::Udp, v4())], cfg).await;
    let client = StdUdpSocket::bind(v4()).unwrap();
    for _ in 0..3 {
        client.send_to(&msg(""), layer.local_addr(0)).unwrap();
    }
    timeout(WAIT, async {
        while layer.stats().datagrams_in < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(layer.stats().events_dropped, 2);
    next_message(&mut rx).await;
}

#[tokio::test]
async fn tcp_framing_ping_and_reply_on_the_flow() {
    let (layer, mut rx) = bind(&[(Transport::Udp, v4()), (Transport::Tcp, v4())], config()).await;
    let server = layer.local_addr(1);
    let mut client = TcpStream::connect(server).await.unwrap();
    let me = client.local_addr().unwrap();

    // Two messages in one write.
    let two = [msg("one"), msg("two")].concat();
    client.write_all(&two).await.unwrap();
    let (d1, s1) = next_message(&mut rx).await;
    let (d2, s2) = next_message(&mut rx).await;
    assert_eq!((&d1[..], &d2[..]), (&msg("one")[..], &msg("two")[..]));
    assert_eq!(s1, s2);
    assert_eq!(s1.transport, Transport::Tcp);
    assert_eq!(s1.listener, 1);
    assert_eq!(s1.remote, me);
    assert_eq!(s1.local, server);
    assert!(s1.flow.is_some());

    // One message split across writes.
    let three = msg("three");
    client.write_all(&three[..10]).await.unwrap();
    client.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    client.write_all(&three[10..]).await.unwrap();
    let (d3, s3) = next_message(&mut rx).await;
    assert_eq!(&d3[..], &three[..]);
    assert_eq!(s3.flow, s1.flow);

    // Double-CRLF ping: a single CRLF pong, no event.
    client.write_all(b"\r\n\r\n").await.unwrap();
    assert_eq!(read_exact_n(&mut client, 2).await, b"\r\n");

    // A reply over the same flow.
    layer.send(Target::reply_to(&s1), Bytes::from(msg("reply")));
    assert_eq!(read_exact_n(&mut client, msg("reply").len()).await, msg("reply"));
    // A target naming a closed-or-unknown flow falls back to the open flow to the remote.
    let by_addr = Target {
        flow: Some(FlowId(999_999)),
        ..Target::reply_to(&s1)
    };
    layer.send(by_addr, Bytes::from(msg("again")));
    assert_eq!(read_exact_n(&mut client, msg("again").len()).await, msg("again"));

    // Closing the client reports the flow closed.
    drop(client);
    match next_event(&mut rx).await {
        TransportEvent::FlowClosed(f) => assert_eq!(Some(f), s1.flow),
        other => panic!("expected FlowClosed, got {other:?}"),
    }
    assert!(rx.try_recv().is_err(), "the ping made no event");
    assert_eq!(layer.stats().stream_messages_in, 3);
    assert_eq!(layer.stats().connections_open, 0);
}

#[tokio::test]
async fn tcp_too_large_closes_the_connection() {
    let cfg = TransportConfig {
        max_message_size: 500,
        ..config()
    };
    let (layer, mut rx) = bind(&[(Transport::Tcp, v4())], cfg).await;
    let mut client = TcpStream::connect(layer.local_addr(0)).await.unwrap();
    client
        .write_all(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 5000\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_by_peer(&mut client).await);
    assert!(matches!(next_event(&mut rx).await, TransportEvent::FlowClosed(_)));
    assert_eq!(layer.stats().framing_errors, 1);

    // No Content-Length on a stream also closes it.
    let mut client = TcpStream::connect(layer.local_addr(0)).await.unwrap();
    client
        .write_all(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_by_peer(&mut client).await);
    assert!(matches!(next_event(&mut rx).await, TransportEvent::FlowClosed(_)));
    assert_eq!(layer.stats().framing_errors, 2);
}

#[tokio::test]
async fn tcp_outbound_connect_then_reuse() {
    let (layer, mut rx) = bind(&[(Transport::Udp, v4()), (Transport::Tcp, v4())], config()).await;
    let peer = TokioTcpListener::bind(v4()).await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let target = Target {
        transport: Transport::Tcp,
        remote: peer_addr,
        flow: None,
        listener: None,
    };

    layer.send(target, Bytes::from(msg("first")));
    layer.send(target, Bytes::from(msg("second"))); // queued behind the connect
    let (mut conn, _) = timeout(WAIT, peer.accept()).await.unwrap().unwrap();
    let want = [msg("first"), msg("second")].concat();
    assert_eq!(read_exact_n(&mut conn, want.len()).await, want);

    // The peer answers on that connection: stamped with the TCP listener's index.
    conn.write_all(&msg("answer")).await.unwrap();
    let (data, source) = next_message(&mut rx).await;
    assert_eq!(&data[..], &msg("answer")[..]);
    assert_eq!(source.transport, Transport::Tcp);
    assert_eq!(source.listener, 1);
    assert_eq!(source.local, layer.local_addr(1));
    assert_eq!(source.remote, peer_addr);
    assert!(source.flow.is_some());

    // Another send with no flow reuses the connection: no second accept.
    layer.send(target, Bytes::from(msg("third")));
    assert_eq!(read_exact_n(&mut conn, msg("third").len()).await, msg("third"));
    assert!(timeout(Duration::from_millis(100), peer.accept()).await.is_err());
    assert_eq!(layer.stats().connections_open, 1);
}

#[tokio::test]
async fn tcp_connect_failure_counts_a_send_error() {
    let (layer, _rx) = bind(&[(Transport::Tcp, v4())], config()).await;
    // A port nobody listens on: bind and drop a listener to find one.
    let free = TokioTcpListener::bind(v4()).await.unwrap().local_addr().unwrap();
    let target = Target {
        transport: Transport::Tcp,
        remote: free,
        flow: None,
        listener: None,
    };
    layer.send(target, Bytes::from(msg("x")));
    timeout(WAIT, async {
        while layer.stats().send_errors == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(layer.stats().connections_open, 0);
}

#[tokio::test]
async fn idle_connection_is_closed() {
    let cfg = TransportConfig {
        idle_timeout: Duration::from_millis(150),
        ..config()
    };
    let (layer, mut rx) = bind(&[(Transport::Tcp, v4())], cfg).await;
    let mut client = TcpStream::connect(layer.local_addr(0)).await.unwrap();
    assert!(closed_by_peer(&mut client).await);
    assert!(matches!(next_event(&mut rx).await, TransportEvent::FlowClosed(_)));
}

#[tokio::test]
async fn connections_over_the_limit_are_refused() {
    let cfg = TransportConfig {
        max_connections: 1,
        ..config()
    };
    let (layer, mut rx) = bind(&[(Transport::Tcp, v4())], cfg).await;
    let mut first = TcpStream::connect(layer.local_addr(0)).await.unwrap();
    first.write_all(&msg("")).await.unwrap();
    next_message(&mut rx).await; // the first is registered
    let mut second = TcpStream::connect(layer.local_addr(0)).await.unwrap();
    assert!(closed_by_peer(&mut second).await);
    assert_eq!(layer.stats().connections_refused, 1);
    // The first still works.
    first.write_all(&msg("still")).await.unwrap();
    next_message(&mut rx).await;
}

#[tokio::test]
async fn shutdown_closes_connections() {
    let (layer, mut rx) = bind(&[(Transport::Tcp, v4())], config()).await;
    let mut client = TcpStream::connect(layer.local_addr(0)).await.unwrap();
    client.write_all(&msg("")).await.unwrap();
    next_message(&mut rx).await;
    layer.shutdown();
    assert!(closed_by_peer(&mut client).await);
}

#[tokio::test]
async fn tls_listener_requires_a_config() {
    let specs = [ListenerSpec {
        transport: Transport::Tls,
        addr: v4(),
    }];
    let e = TransportLayer::bind(&specs, config()).await.err().expect("an error");
    assert!(e.to_string().contains("TLS listener"), "{e}");
}

#[tokio::test]
async fn tls_round_trip() {
    let dir = crate::tls::tests::temp_dir("tls-driver");
    let server_cfg = crate::tls::server_config(None, None, &dir).unwrap();
    let cfg = TransportConfig {
        tls: Some(server_cfg),
        ..config()
    };
    let (layer, mut rx) = bind(&[(Transport::Tcp, v4()), (Transport::Tls, v4())], cfg).await;

    // A client that trusts the generated certificate, checked against the name "localhost".
    let pem_bytes = std::fs::read(dir.join("tls/cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem_bytes) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client_cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
    let tcp = TcpStream::connect(layer.local_addr(1)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut client = timeout(WAIT, connector.connect(name, tcp)).await.unwrap().unwrap();

    client.write_all(&msg("secure")).await.unwrap();
    client.flush().await.unwrap();
    let (data, source) = next_message(&mut rx).await;
    assert_eq!(&data[..], &msg("secure")[..]);
    assert_eq!(source.transport, Transport::Tls);
    assert_eq!(source.listener, 1);
    assert!(source.flow.is_some());

    layer.send(Target::reply_to(&source), Bytes::from(msg("reply")));
    assert_eq!(read_exact_n(&mut client, msg("reply").len()).await, msg("reply"));

    client.write_all(b"\r\n\r\n").await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(read_exact_n(&mut client, 2).await, b"\r\n");

    // No open TLS flow to an address: dropped and counted, not connected.
    let nowhere = Target {
        transport: Transport::Tls,
        remote: "127.0.0.1:9".parse().unwrap(),
        flow: None,
        listener: None,
    };
    layer.send(nowhere, Bytes::from(msg("x")));
    assert_eq!(layer.stats().send_errors, 1);
    let _ = std::fs::remove_dir_all(&dir);
}
