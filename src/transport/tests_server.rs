//! Server tests over real loopback sockets (and one in-memory stream).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::test_support::{
    BODY, PACKET, REQUEST, Running, TestCollector, expect_closed, post_request, raw_exchange,
    read_response, test_limits,
};
use super::{ClientError, ClientLimits, LoopbackDialer, ServeError, Server, ServerLimits};
use super::{fetch_conf, post_packet};

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn reference_request_is_accepted_and_replay_refused_on_the_same_connection() {
    let run = Running::start(test_limits()).await;
    let mut stream = run.connect().await;

    // The exact bytes python-requests sends (keep-alive).
    stream.write_all(REQUEST).await.unwrap();
    let first = read_response(&mut stream).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, b"Mimix message submitted");
    assert_eq!(run.collector.received(), vec![PACKET.to_owned()]);

    // Same connection, same packet again.
    stream.write_all(REQUEST).await.unwrap();
    let second = read_response(&mut stream).await;
    assert_eq!(second.status, 409);
    assert_eq!(run.collector.received().len(), 1);
}

#[tokio::test]
async fn client_post_delivers_exactly_the_armour() {
    let run = Running::start(test_limits()).await;
    post_packet(
        &LoopbackDialer,
        &run.base_url(),
        PACKET,
        &ClientLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(run.collector.received(), vec![PACKET.to_owned()]);
}

#[tokio::test]
async fn collector_rejections_map_to_statuses() {
    let run = Running::start(test_limits()).await;
    let limits = ClientLimits::default();
    let post = |armour: String| {
        let url = run.base_url();
        let limits = limits.clone();
        async move { post_packet(&LoopbackDialer, &url, &armour, &limits).await }
    };

    // Invalid (the collector finds no END line): 400, permanent.
    let truncated = PACKET.replace("-----END MIMIX MESSAGE-----", "");
    match post(truncated).await {
        Err(ref e @ ClientError::Rejected { status, ref reason }) => {
            assert_eq!(status, 400);
            assert_eq!(reason, "Invalid submission: no END line");
            assert!(!e.is_retryable());
        }
        other => panic!("{other:?}"),
    }

    // Replay: 409, permanent.
    post(PACKET.to_owned()).await.unwrap();
    match post(PACKET.to_owned()).await {
        Err(e @ ClientError::Rejected { status, .. }) => {
            assert_eq!(status, 409);
            assert!(!e.is_retryable());
        }
        other => panic!("{other:?}"),
    }

    // Overloaded: 503 with Retry-After, retryable.
    run.collector.overloaded.store(true, Ordering::SeqCst);
    let other_packet = PACKET.replace("Version: 0.1-alpha1", "Version: other");
    match post(other_packet.clone()).await {
        Err(
            e @ ClientError::Unavailable {
                status,
                retry_after,
            },
        ) => {
            assert_eq!(status, 503);
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(e.is_retryable());
        }
        other => panic!("{other:?}"),
    }
    run.collector.overloaded.store(false, Ordering::SeqCst);

    // Internal: 500, retryable.
    run.collector.broken.store(true, Ordering::SeqCst);
    match post(other_packet).await {
        Err(e @ ClientError::Unavailable { status, .. }) => {
            assert_eq!(status, 500);
            assert!(e.is_retryable());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(run.collector.received(), vec![PACKET.to_owned()]);
}

#[tokio::test]
async fn malformed_submissions_are_refused_before_the_collector() {
    let run = Running::start(test_limits()).await;
    let cases: [(Vec<u8>, u16); 5] = [
        (post_request(FORM, "base64=hello"), 400),
        (post_request(FORM, "mimix=x"), 400),
        (post_request("text/plain", BODY), 415),
        (post_request("application/json", BODY), 415),
        (
            b"GET /collector.py/msg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            405,
        ),
    ];
    for (request, want) in cases {
        let response = raw_exchange(run.addr, &request).await;
        assert_eq!(
            response.status,
            want,
            "{}",
            String::from_utf8_lossy(&request)
        );
    }
    // A charset parameter and upper case are fine.
    let ok = raw_exchange(
        run.addr,
        &post_request("Application/X-WWW-Form-Urlencoded; charset=utf-8", BODY),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(run.collector.received(), vec![PACKET.to_owned()]);

    let not_found = raw_exchange(
        run.addr,
        b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(not_found.status, 404);
    let wrong_method = raw_exchange(run.addr, &{
        let mut r = post_request(FORM, BODY);
        r.splice(0..22, b"POST /remailer-conf.txt".iter().copied());
        r
    })
    .await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("allow").as_deref(), Some("GET, HEAD"));
}

#[tokio::test]
async fn remailer_conf_is_served() {
    let run = Running::start(test_limits()).await;
    let conf = include_str!("../../tests/vectors/samples/remailer-conf.txt");
    *run.collector.conf.lock().unwrap() = conf.to_owned();
    let got = fetch_conf(&LoopbackDialer, &run.base_url(), &ClientLimits::default())
        .await
        .unwrap();
    assert_eq!(got, conf);
    let raw = raw_exchange(
        run.addr,
        b"GET /remailer-conf.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw.status, 200);
    assert!(
        raw.header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
}

#[tokio::test]
async fn oversized_body_is_refused_without_reading_it() {
    let run = Running::start(ServerLimits {
        body_read_timeout: Duration::from_secs(60),
        ..test_limits()
    })
    .await;
    // Announces 10 MB and sends none of it: the answer must come at once.
    let mut stream = run.connect().await;
    stream
        .write_all(
            b"POST /collector.py/msg HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 10000000\r\n\r\nbase64=",
        )
        .await
        .unwrap();
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.header("connection").as_deref(), Some("close"));
    expect_closed(&mut stream).await;

    // Chunked, without a length: cut off at the limit.
    let run = Running::start(ServerLimits {
        max_body_bytes: 1024,
        ..test_limits()
    })
    .await;
    let mut stream = run.connect().await;
    let chunk = "a".repeat(800);
    let request = format!(
        "POST /collector.py/msg HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Transfer-Encoding: chunked\r\n\r\n\
         320\r\n{chunk}\r\n320\r\n{chunk}\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut stream).await.status, 413);
    assert!(run.collector.received().is_empty());
}

#[tokio::test]
async fn incomplete_head_times_out() {
    let run = Running::start(ServerLimits {
        header_read_timeout: Duration::from_millis(200),
        ..test_limits()
    })
    .await;
    let mut stream = run.connect().await;
    stream
        .write_all(b"POST /collector.py/msg HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    expect_closed(&mut stream).await;
    assert!(started.elapsed() >= Duration::from_millis(150));

    // An idle connection is closed the same way.
    let mut idle = run.connect().await;
    expect_closed(&mut idle).await;
}

#[tokio::test]
async fn incomplete_body_times_out_with_408() {
    let run = Running::start(ServerLimits {
        body_read_timeout: Duration::from_millis(200),
        ..test_limits()
    })
    .await;
    let mut stream = run.connect().await;
    stream
        .write_all(
            b"POST /collector.py/msg HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 100\r\n\r\nbase64=---",
        )
        .await
        .unwrap();
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 408);
    expect_closed(&mut stream).await;
    assert!(run.collector.received().is_empty());
}

#[tokio::test]
async fn connections_beyond_the_limit_get_503() {
    let run = Running::start(ServerLimits {
        max_connections: 1,
        ..test_limits()
    })
    .await;
    // Holds the only slot (accepted first: the accept queue is in order).
    let holder = run.connect().await;

    match post_packet(
        &LoopbackDialer,
        &run.base_url(),
        PACKET,
        &ClientLimits::default(),
    )
    .await
    {
        Err(
            e @ ClientError::Unavailable {
                status,
                retry_after,
            },
        ) => {
            assert_eq!(status, 503);
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(e.is_retryable());
        }
        other => panic!("{other:?}"),
    }
    assert!(run.collector.received().is_empty());

    // Once the slot is free, the same packet goes through.
    drop(holder);
    tokio::time::timeout(Duration::from_secs(5), run.server.wait_idle())
        .await
        .unwrap();
    post_packet(
        &LoopbackDialer,
        &run.base_url(),
        PACKET,
        &ClientLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(run.collector.received(), vec![PACKET.to_owned()]);
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_stops_accepting() {
    let run = Running::start(test_limits()).await;
    let mut stream = run.connect().await;
    stream.write_all(REQUEST).await.unwrap();
    assert_eq!(read_response(&mut stream).await.status, 200);

    run.shutdown.cancel();
    expect_closed(&mut stream).await;
    tokio::time::timeout(Duration::from_secs(5), run.task)
        .await
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(run.addr).await.is_err());
}

#[tokio::test]
async fn serves_any_stream() {
    // The seam the onion service uses: no TCP at all.
    let collector = Arc::new(TestCollector::default());
    let server = Server::new(
        Arc::clone(&collector),
        test_limits(),
        CancellationToken::new(),
    );
    let (mut client, server_end) = tokio::io::duplex(4096);
    let serving = tokio::spawn(async move { server.serve_connection(server_end).await });
    client.write_all(REQUEST).await.unwrap();
    let response = read_response(&mut client).await;
    assert_eq!(response.status, 200);
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(collector.received(), vec![PACKET.to_owned()]);
}

#[tokio::test]
async fn serve_connection_refuses_beyond_the_limit() {
    let collector = Arc::new(TestCollector::default());
    let server = Server::new(
        collector,
        ServerLimits {
            max_connections: 1,
            ..test_limits()
        },
        CancellationToken::new(),
    );
    let (_first_client, first) = tokio::io::duplex(4096);
    let busy = server.serve_connection(first);
    tokio::pin!(busy);
    // Poll the first connection once: that admits it and takes the slot.
    tokio::select! {
        biased;
        result = &mut busy => panic!("first connection ended: {result:?}"),
        () = std::future::ready(()) => {}
    }
    let (mut second_client, second) = tokio::io::duplex(4096);
    let refused = tokio::spawn({
        let server = server.clone();
        async move { server.serve_connection(second).await }
    });
    second_client.write_all(REQUEST).await.unwrap();
    let response = read_response(&mut second_client).await;
    assert_eq!(response.status, 503);
    assert_eq!(response.header("retry-after").as_deref(), Some("7"));
    drop(second_client);
    let result = refused.await.unwrap();
    assert!(
        matches!(result, Err(ServeError::TooManyConnections)),
        "{result:?}"
    );
}

#[tokio::test]
async fn one_source_gets_at_most_its_share_of_the_slots() {
    let run = Running::start(ServerLimits {
        max_connections_per_source: 2,
        ..test_limits()
    })
    .await;
    // Two idle connections from 127.0.0.2 hold that source's share.
    let from = |ip: &str| {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        socket.connect(run.addr)
    };
    let _a = from("127.0.0.2").await.unwrap();
    let _b = from("127.0.0.2").await.unwrap();
    let mut third = from("127.0.0.2").await.unwrap();
    third.write_all(REQUEST).await.unwrap();
    assert_eq!(read_response(&mut third).await.status, 503);
    // Another source is served.
    let mut other = from("127.0.0.3").await.unwrap();
    other.write_all(REQUEST).await.unwrap();
    assert_eq!(read_response(&mut other).await.status, 200);
}

#[tokio::test]
async fn a_peer_below_the_minimum_rate_is_cut_off() {
    let run = Running::start(ServerLimits {
        min_rate: super::MinRate {
            rate: 1000,
            grace: Duration::from_millis(300),
        },
        ..test_limits()
    })
    .await;
    // A head trickled at 20 bytes a second: closed soon after the grace,
    // long before the 30 s head timeout.
    let mut slow = run.connect().await;
    let started = tokio::time::Instant::now();
    let trickle = async {
        for b in b"POST /collector.py/msg HTTP/1.1\r\nHost: x\r\n".iter() {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    trickle.await;
    expect_closed(&mut slow).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // A body trickled the same way gets 408.
    let mut body = run.connect().await;
    body.write_all(
        b"POST /collector.py/msg HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 1000\r\n\r\nbase64=",
    )
    .await
    .unwrap();
    let writer = tokio::spawn(async move {
        for _ in 0..100 {
            if body.write_all(b"a").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        body
    });
    let mut body = writer.await.unwrap();
    let response = read_response(&mut body).await;
    assert_eq!(response.status, 408);

    // A normal request on a fresh connection is unaffected.
    let mut ok = run.connect().await;
    ok.write_all(REQUEST).await.unwrap();
    assert_eq!(read_response(&mut ok).await.status, 200);
}
