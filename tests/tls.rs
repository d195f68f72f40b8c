//! Native TLS (`engine::tls`) over real loopback sockets, with the fixed test
//! certificates of `__test__/fixtures` (see `gen.sh` there).

use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use uhura::engine::tls::{TlsAcceptor, TlsConnector, TlsOptions};
use uhura::engine::transport::BoxStream;

const LIMIT: Duration = Duration::from_secs(10);

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/__test__/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn server_opts(name: &str) -> TlsOptions {
    TlsOptions {
        key: Some(fixture(&format!("{name}-key.pem"))),
        cert: Some(fixture(&format!("{name}-cert.pem"))),
        reject_unauthorized: true,
        ..Default::default()
    }
}

fn mtls_server_opts(reject_unauthorized: bool) -> TlsOptions {
    TlsOptions { ca: vec![fixture("ca-cert.pem")], request_cert: true, reject_unauthorized, ..server_opts("server") }
}

fn client_opts() -> TlsOptions {
    TlsOptions { ca: vec![fixture("ca-cert.pem")], reject_unauthorized: true, ..Default::default() }
}

fn with_client_cert(o: TlsOptions, name: &str) -> TlsOptions {
    TlsOptions { key: Some(fixture(&format!("{name}-key.pem"))), cert: Some(fixture(&format!("{name}-cert.pem"))), ..o }
}

/// Accepts one TCP connection on `addr`, runs the TLS handshake and echoes
/// everything back until EOF. Resolves to the handshake's or echo's result.
async fn echo_server(addr: &str, opts: &TlsOptions) -> (u16, JoinHandle<io::Result<()>>) {
    let acceptor = TlsAcceptor::new(opts).expect("acceptor");
    let listener = TcpListener::bind((addr, 0)).await.expect("bind");
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp, &mut None::<()>).await?;
        let mut buf = [0u8; 1024];
        loop {
            let n = tls.read(&mut buf).await?;
            if n == 0 {
                tls.shutdown().await?;
                return Ok(());
            }
            tls.write_all(&buf[..n]).await?;
            tls.flush().await?;
        }
    });
    (port, task)
}

async fn connect(addr: &str, port: u16, host: &str, opts: &TlsOptions) -> io::Result<BoxStream> {
    let connector = TlsConnector::new(opts).expect("connector");
    let tcp = TcpStream::connect((addr, port)).await?;
    Ok(Box::new(connector.connect(host, tcp, &mut None::<()>).await?))
}

/// Writes, reads the echo back, then closes cleanly.
async fn echo(mut s: BoxStream) -> io::Result<()> {
    let msg = b"[\n[\"ping\",{\"n\":1}]\n";
    s.write_all(msg).await?;
    s.flush().await?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).await?;
    assert_eq!(&back[..], &msg[..]);
    s.shutdown().await?;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await?;
    assert!(rest.is_empty());
    Ok(())
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("test took too long")
}

/// Full round trip; panics with both sides' errors on failure.
async fn round_trip(addr: &str, host: &str, server: &TlsOptions, client: &TlsOptions) {
    bounded(async {
        let (port, srv) = echo_server(addr, server).await;
        let s = connect(addr, port, host, client).await.expect("client handshake");
        echo(s).await.expect("client echo");
        srv.await.unwrap().expect("server side");
    })
    .await
}

/// A handshake that must fail: returns (client error text, server error text).
/// In TLS 1.3 the client may finish its handshake before the server rejects
/// its certificate; then the rejection shows on the client's first read.
async fn failed_handshake(host: &str, server: &TlsOptions, client: &TlsOptions) -> (io::Error, io::Error) {
    bounded(async {
        let (port, srv) = echo_server("127.0.0.1", server).await;
        let client_err = match connect("127.0.0.1", port, host, client).await {
            Err(e) => e,
            Ok(s) => echo(s).await.expect_err("the server should have refused the client"),
        };
        let server_err = srv.await.unwrap().expect_err("the server should have failed");
        (client_err, server_err)
    })
    .await
}

fn assert_tls_error(e: &io::Error, reason: &str) {
    assert!(e.to_string().contains(reason), "{e:?} should mention {reason:?}");
    assert!(matches!(e.kind(), io::ErrorKind::InvalidData | io::ErrorKind::Other), "{e:?}: kind {:?}", e.kind());
}

#[tokio::test]
async fn handshake_and_echo_with_ca_over_ipv4() {
    round_trip("127.0.0.1", "127.0.0.1", &server_opts("server"), &client_opts()).await;
}

#[tokio::test]
async fn verifies_dns_name_localhost() {
    round_trip("127.0.0.1", "localhost", &server_opts("server"), &client_opts()).await;
}

#[tokio::test]
async fn verifies_ipv6_address() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    }
    round_trip("::1", "::1", &server_opts("server"), &client_opts()).await;
    round_trip("::1", "[::1]", &server_opts("server"), &client_opts()).await;
}

#[tokio::test]
async fn servername_overrides_the_host() {
    let client = TlsOptions { servername: Some("localhost".into()), ..client_opts() };
    round_trip("127.0.0.1", "127.0.0.1", &server_opts("server"), &client).await;
    let wrong = TlsOptions { servername: Some("example.com".into()), ..client_opts() };
    let (c, _) = failed_handshake("127.0.0.1", &server_opts("server"), &wrong).await;
    assert_tls_error(&c, "invalid peer certificate");
    assert!(c.to_string().contains("example.com"), "{c}");
}

#[tokio::test]
async fn untrusted_server_certificate_is_refused() {
    let (c, s) = failed_handshake("127.0.0.1", &server_opts("untrusted"), &client_opts()).await;
    assert_tls_error(&c, "invalid peer certificate: UnknownIssuer");
    // The client tells the server why it hung up.
    assert_tls_error(&s, "UnknownCA");
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused() {
    let client = TlsOptions { ca: vec![fixture("untrusted-cert.pem")], ..client_opts() };
    let (c, _) = failed_handshake("127.0.0.1", &server_opts("server"), &client).await;
    assert_tls_error(&c, "invalid peer certificate: UnknownIssuer");
}

#[tokio::test]
async fn a_self_signed_certificate_listed_in_ca_is_trusted() {
    // A plain self-signed leaf, and what a bare `openssl req -x509` makes (a
    // CA certificate used as the server's own), as Node/OpenSSL allow.
    for name in ["untrusted", "selfsigned"] {
        let client = TlsOptions { ca: vec![fixture(&format!("{name}-cert.pem"))], ..client_opts() };
        round_trip("127.0.0.1", "127.0.0.1", &server_opts(name), &client).await;
        round_trip("127.0.0.1", "localhost", &server_opts(name), &client).await;
        // The name is still checked.
        let wrong = TlsOptions { servername: Some("example.com".into()), ..client.clone() };
        let (c, _) = failed_handshake("127.0.0.1", &server_opts(name), &wrong).await;
        assert_tls_error(&c, "example.com");
    }
    // Not listed: refused.
    let (c, _) = failed_handshake("127.0.0.1", &server_opts("selfsigned"), &client_opts()).await;
    assert_tls_error(&c, "invalid peer certificate");
}

#[tokio::test]
async fn default_roots_do_not_trust_the_test_ca() {
    let client = TlsOptions { reject_unauthorized: true, ..Default::default() };
    let (c, _) = failed_handshake("127.0.0.1", &server_opts("server"), &client).await;
    assert_tls_error(&c, "UnknownIssuer");
}

#[tokio::test]
async fn reject_unauthorized_false_takes_any_server_certificate() {
    let client = TlsOptions { reject_unauthorized: false, ..Default::default() };
    round_trip("127.0.0.1", "127.0.0.1", &server_opts("untrusted"), &client).await;
    // Even for a name the certificate does not cover, or one rustls cannot use.
    round_trip("127.0.0.1", "not-the-name.example", &server_opts("untrusted"), &client).await;
    round_trip("127.0.0.1", "bad_host_name", &server_opts("server"), &client).await;
}

#[tokio::test]
async fn mutual_tls_with_a_client_certificate() {
    round_trip("127.0.0.1", "127.0.0.1", &mtls_server_opts(true), &with_client_cert(client_opts(), "client")).await;
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_certificate() {
    let (c, s) = failed_handshake("127.0.0.1", &mtls_server_opts(true), &client_opts()).await;
    assert_tls_error(&s, "peer sent no certificates");
    assert_tls_error(&c, "CertificateRequired");
}

#[tokio::test]
async fn mutual_tls_refuses_an_untrusted_client_certificate() {
    let (c, s) =
        failed_handshake("127.0.0.1", &mtls_server_opts(true), &with_client_cert(client_opts(), "untrusted")).await;
    assert_tls_error(&s, "invalid peer certificate: UnknownIssuer");
    assert_tls_error(&c, "UnknownCA");
}

#[tokio::test]
async fn mutual_tls_with_a_client_certificate_pinned_in_ca() {
    let server =
        TlsOptions { ca: vec![fixture("ca-cert.pem"), fixture("selfsigned-cert.pem")], ..mtls_server_opts(true) };
    round_trip("127.0.0.1", "127.0.0.1", &server, &with_client_cert(client_opts(), "selfsigned")).await;
    round_trip("127.0.0.1", "127.0.0.1", &server, &with_client_cert(client_opts(), "client")).await;
}

#[tokio::test]
async fn request_cert_without_reject_unauthorized_takes_anything() {
    let server = mtls_server_opts(false);
    round_trip("127.0.0.1", "127.0.0.1", &server, &client_opts()).await;
    round_trip("127.0.0.1", "127.0.0.1", &server, &with_client_cert(client_opts(), "client")).await;
    round_trip("127.0.0.1", "127.0.0.1", &server, &with_client_cert(client_opts(), "untrusted")).await;
}

#[tokio::test]
async fn close_without_close_notify_is_a_plain_end() {
    bounded(async {
        let acceptor = TlsAcceptor::new(&server_opts("server")).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let srv = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp, &mut None::<()>).await.unwrap();
            tls.write_all(b"bye").await.unwrap();
            tls.flush().await.unwrap();
            // Dropped without shutdown: the TCP socket closes with no close_notify.
        });
        let mut s = connect("127.0.0.1", port, "127.0.0.1", &client_opts()).await.unwrap();
        srv.await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.expect("EOF without close_notify reads as the end");
        assert_eq!(got, b"bye");
    })
    .await
}

#[tokio::test]
async fn plain_tcp_peer_is_refused_with_a_tls_error() {
    bounded(async {
        let (port, srv) = echo_server("127.0.0.1", &server_opts("server")).await;
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tcp.write_all(b"[\n[\"_set\",{}]\n").await.unwrap();
        let e = srv.await.unwrap().expect_err("not TLS");
        assert!(matches!(e.kind(), io::ErrorKind::InvalidData | io::ErrorKind::Other), "{e:?}");
    })
    .await
}

#[tokio::test]
async fn peer_vanishing_mid_handshake_is_an_error_not_a_hang() {
    bounded(async {
        let (port, srv) = echo_server("127.0.0.1", &server_opts("server")).await;
        drop(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
        let e = srv.await.unwrap().expect_err("no handshake");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e:?}");
    })
    .await
}

#[cfg(unix)]
#[tokio::test]
async fn works_over_unix_sockets() {
    bounded(async {
        let dir = std::env::temp_dir().join(format!("uhura-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let acceptor = TlsAcceptor::new(&server_opts("server")).unwrap();
        let srv = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(s, &mut None::<()>).await.unwrap();
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.unwrap();
            tls.write_all(&buf).await.unwrap();
            tls.shutdown().await.unwrap();
        });
        let connector = TlsConnector::new(&client_opts()).unwrap();
        let unix = tokio::net::UnixStream::connect(&path).await.unwrap();
        let mut s = connector.connect("localhost", unix, &mut None::<()>).await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping");
        srv.await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

#[test]
fn every_key_format_loads() {
    // PKCS#8 RSA (server), SEC1 EC (client), PKCS#1 RSA (untrusted), PKCS#8 EC (selfsigned).
    for name in ["server", "client", "untrusted", "selfsigned"] {
        TlsAcceptor::new(&server_opts(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        TlsConnector::new(&with_client_cert(client_opts(), name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // A key and certificate in one PEM file, and a CA bundle of several certs.
    let mut both = fixture("server-key.pem");
    both.extend(fixture("server-cert.pem"));
    TlsAcceptor::new(&TlsOptions { key: Some(both.clone()), cert: Some(both), ..Default::default() }).unwrap();
    let mut bundle = fixture("ca-cert.pem");
    bundle.extend(fixture("untrusted-cert.pem"));
    TlsConnector::new(&TlsOptions { ca: vec![bundle], reject_unauthorized: true, ..Default::default() }).unwrap();
}

#[test]
fn bad_options_give_clear_errors() {
    fn server_err(o: TlsOptions) -> String {
        TlsAcceptor::new(&o).err().expect("should fail")
    }
    fn client_err(o: TlsOptions) -> String {
        TlsConnector::new(&o).err().expect("should fail")
    }
    let garbage = b"this is not PEM".to_vec();

    let e = server_err(TlsOptions { key: Some(garbage.clone()), ..server_opts("server") });
    assert!(e.contains("no private key found in `key`"), "{e}");
    // A certificate where the key should be.
    let e = server_err(TlsOptions { key: Some(fixture("server-cert.pem")), ..server_opts("server") });
    assert!(e.contains("no private key found in `key`"), "{e}");
    let e = server_err(TlsOptions { cert: Some(garbage.clone()), ..server_opts("server") });
    assert!(e.contains("no certificate found in `cert`"), "{e}");
    let e = server_err(TlsOptions { key: None, ..server_opts("server") });
    assert!(e.contains("`key` and `cert`"), "{e}");
    let e = server_err(TlsOptions::default());
    assert!(e.contains("`key` and `cert`"), "{e}");
    let e = server_err(TlsOptions { cert: Some(fixture("untrusted-cert.pem")), ..server_opts("server") });
    assert!(e.contains("`key` does not match"), "mismatched key and cert: {e}");
    let e = server_err(TlsOptions { ca: vec![garbage.clone()], ..mtls_server_opts(true) });
    assert!(e.contains("no certificate found in `ca`"), "{e}");
    let broken = b"-----BEGIN CERTIFICATE-----\nnot base64!!\n-----END CERTIFICATE-----\n".to_vec();
    let e = server_err(TlsOptions { cert: Some(broken.clone()), ..server_opts("server") });
    assert!(e.contains("bad PEM in `cert`"), "{e}");
    let encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n".to_vec();
    let e = server_err(TlsOptions { key: Some(encrypted), ..server_opts("server") });
    assert!(e.contains("encrypted"), "{e}");

    let e = client_err(TlsOptions { ca: vec![garbage.clone()], ..client_opts() });
    assert!(e.contains("no certificate found in `ca`"), "{e}");
    let e = client_err(TlsOptions { ca: vec![broken], ..client_opts() });
    assert!(e.contains("`ca`"), "{e}");
    let e = client_err(TlsOptions { key: Some(fixture("client-key.pem")), ..client_opts() });
    assert!(e.contains("without `cert`"), "{e}");
    let e = client_err(TlsOptions { cert: Some(fixture("client-cert.pem")), ..client_opts() });
    assert!(e.contains("without `key`"), "{e}");
    let e = client_err(TlsOptions { servername: Some("bad name with spaces".into()), ..client_opts() });
    assert!(e.contains("invalid TLS server name"), "{e}");
}
