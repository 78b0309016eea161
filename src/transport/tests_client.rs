//! Client tests: the request on the wire, URL policy, and how failures are
//! classified.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::test_support::{
    BODY, FnDialer, PACKET, TestCollector, boxed, read_request, scripted_peer, test_limits,
};
use super::{
    ClientError, ClientLimits, DialFuture, LoopbackDialer, PeerPolicy, Server, UrlError,
    fetch_conf, post_packet,
};

fn short_limits() -> ClientLimits {
    ClientLimits {
        connect_timeout: Duration::from_millis(200),
        request_timeout: Duration::from_millis(300),
        max_conf_bytes: 1024,
    }
}

/// A dialer that connects to `port` on 127.0.0.1 whatever host it is
/// asked for, under `policy`: stands in for a Tor dialer.
fn tcp_dialer(
    policy: PeerPolicy,
    port: u16,
) -> FnDialer<impl Fn(String, u16) -> DialFuture<'static> + Send + Sync> {
    FnDialer::new(
        policy,
        move |_host: String, _port: u16| -> DialFuture<'static> {
            Box::pin(async move { boxed(TcpStream::connect(("127.0.0.1", port)).await?) })
        },
    )
}

#[tokio::test]
async fn post_sends_the_reference_request() {
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 23\r\n\r\nMimix message submitted".to_vec();
    let (addr, mut requests) = scripted_peer(ok).await;
    let dialer = tcp_dialer(PeerPolicy::OnionOnly, addr.port());
    post_packet(
        &dialer,
        "http://alpha.example.onion",
        PACKET,
        &ClientLimits::default(),
    )
    .await
    .unwrap();
    let (head, body) = requests.recv().await.unwrap();
    assert_eq!(body, BODY.as_bytes());
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some("POST /collector.py/msg HTTP/1.1"));
    let headers: Vec<String> = lines
        .filter(|l| !l.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    for want in [
        "host: alpha.example.onion",
        "content-type: application/x-www-form-urlencoded",
        "content-length: 30302",
        "connection: close",
    ] {
        assert!(
            headers.iter().any(|h| h == want),
            "{want} missing in {headers:?}"
        );
    }
    assert!(!headers.iter().any(|h| h.starts_with("transfer-encoding")));
}

#[tokio::test]
async fn a_closed_port_is_a_retryable_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}");
    let err = post_packet(&LoopbackDialer, &url, PACKET, &short_limits())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect(_)), "{err:?}");
    assert!(err.is_retryable());
    let err = fetch_conf(&LoopbackDialer, &url, &short_limits())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect(_)), "{err:?}");
}

#[tokio::test]
async fn urls_are_checked_before_dialling() {
    let dialer = tcp_dialer(PeerPolicy::LoopbackOnly, 9);
    let cases = [
        (
            "http://example.com",
            UrlError::NotAllowed {
                policy: PeerPolicy::LoopbackOnly,
            },
        ),
        (
            "http://alpha.example.onion",
            UrlError::NotAllowed {
                policy: PeerPolicy::LoopbackOnly,
            },
        ),
        (
            "https://127.0.0.1",
            UrlError::UnsupportedScheme("https".into()),
        ),
        ("http://127.0.0.1/collector.py/msg", UrlError::PathOrQuery),
        ("127.0.0.1:80", UrlError::Malformed),
    ];
    for (url, want) in cases {
        let err = post_packet(&dialer, url, PACKET, &short_limits())
            .await
            .unwrap_err();
        match &err {
            ClientError::Url(got) => assert!(
                *got == want || *got == UrlError::Malformed,
                "{url}: {got:?}"
            ),
            other => panic!("{url}: {other:?}"),
        }
        assert!(!err.is_retryable());
    }
    assert_eq!(dialer.dials.load(Ordering::SeqCst), 0);

    // The loopback dialer refuses other hosts even when called directly.
    let direct = super::Dialer::dial(&LoopbackDialer, "192.0.2.1", 80).await;
    assert_eq!(
        direct.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::PermissionDenied)
    );
}

#[tokio::test]
async fn a_dial_that_hangs_is_a_connect_timeout() {
    let dialer = FnDialer::new(
        PeerPolicy::OnionOnly,
        |_: String, _: u16| -> DialFuture<'static> { Box::pin(std::future::pending()) },
    );
    let err = post_packet(&dialer, "http://a.onion", PACKET, &short_limits())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::ConnectTimeout), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_silent_peer_is_a_request_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        // Keep the connection open without answering.
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(stream);
    });
    let url = format!("http://127.0.0.1:{}", addr.port());
    let err = post_packet(&LoopbackDialer, &url, PACKET, &short_limits())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
    assert!(err.is_retryable());
    held.abort();
}

#[tokio::test]
async fn a_peer_closing_without_answer_is_retryable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let _ = read_request(&mut stream).await;
        stream.shutdown().await.unwrap();
    });
    let url = format!("http://127.0.0.1:{}", addr.port());
    let err = post_packet(&LoopbackDialer, &url, PACKET, &ClientLimits::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Http(_)), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn statuses_are_classified() {
    type Check = fn(&ClientError) -> bool;
    let cases: [(&str, Check, bool); 5] = [
        (
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 19\r\n\r\nbad\x1b[31m\r\nthing\n\x00 x",
            |e| matches!(e, ClientError::Rejected { status, reason } if *status == 400 && reason == "bad [31m thing x"),
            false,
        ),
        (
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\nContent-Length: 0\r\n\r\n",
            |e| {
                matches!(e, ClientError::Unavailable { status, retry_after }
                    if *status == 503 && *retry_after == Some(Duration::from_secs(30)))
            },
            true,
        ),
        (
            "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n",
            |e| matches!(e, ClientError::Unavailable { status, retry_after: None } if *status == 429),
            true,
        ),
        (
            "HTTP/1.1 302 Found\r\nLocation: http://x/\r\nContent-Length: 0\r\n\r\n",
            |e| matches!(e, ClientError::UnexpectedStatus(s) if *s == 302),
            true,
        ),
        (
            "HTTP/1.1 204 No Content\r\n\r\n",
            |e| matches!(e, ClientError::UnexpectedStatus(s) if *s == 204),
            true,
        ),
    ];
    for (response, check, retryable) in cases {
        let (addr, _requests) = scripted_peer(response.as_bytes().to_vec()).await;
        let url = format!("http://127.0.0.1:{}", addr.port());
        let err = post_packet(&LoopbackDialer, &url, PACKET, &ClientLimits::default())
            .await
            .unwrap_err();
        assert!(check(&err), "{response:?}: {err:?}");
        assert_eq!(err.is_retryable(), retryable, "{response:?}");
    }
}

#[tokio::test]
async fn a_huge_reason_is_cut_and_the_post_still_fails_cleanly() {
    // Chunked, so the client reads the first 4 KiB before it stops.
    let chunk = "x".repeat(0x4000);
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n\
         4000\r\n{chunk}\r\n4000\r\n{chunk}\r\n0\r\n\r\n"
    );
    let (addr, _requests) = scripted_peer(response.into_bytes()).await;
    let url = format!("http://127.0.0.1:{}", addr.port());
    let err = post_packet(&LoopbackDialer, &url, PACKET, &ClientLimits::default())
        .await
        .unwrap_err();
    match err {
        ClientError::Rejected { status, reason } => {
            assert_eq!(status, 400);
            assert_eq!(reason, "x".repeat(200));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn fetch_conf_bounds_and_checks_the_body() {
    // Larger than the limit, from the real server.
    let collector = Arc::new(TestCollector::default());
    *collector.conf.lock().unwrap() = "Name: big\n".repeat(200);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = Server::new(Arc::clone(&collector), test_limits(), shutdown.clone());
    let serving = tokio::spawn(async move { server.serve_tcp(listener).await });
    let err = fetch_conf(&LoopbackDialer, &url, &short_limits())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::ResponseTooLarge { limit: 1024 }),
        "{err:?}"
    );
    assert!(!err.is_retryable());

    // Within the limit.
    *collector.conf.lock().unwrap() = "Name: small\n".to_owned();
    assert_eq!(
        fetch_conf(&LoopbackDialer, &url, &short_limits())
            .await
            .unwrap(),
        "Name: small\n"
    );
    shutdown.cancel();
    serving.await.unwrap();

    // Chunked and too large: cut off while reading.
    let chunk = "y".repeat(600);
    let response = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let (addr, _requests) = scripted_peer(response.into_bytes()).await;
    let url = format!("http://127.0.0.1:{}", addr.port());
    let err = fetch_conf(&LoopbackDialer, &url, &short_limits())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::ResponseTooLarge { .. }),
        "{err:?}"
    );

    // Not UTF-8.
    let (addr, mut requests) =
        scripted_peer(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\na\xffb".to_vec()).await;
    let url = format!("http://127.0.0.1:{}", addr.port());
    let err = fetch_conf(&LoopbackDialer, &url, &short_limits())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotUtf8), "{err:?}");
    let (head, _) = requests.recv().await.unwrap();
    assert!(
        head.starts_with("GET /remailer-conf.txt HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("host: 127.0.0.1:{}\r\n", addr.port()))
    );
}
