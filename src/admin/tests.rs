//! The admin listener in-process, on a real store and real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::client::{ClientError, get};
use super::*;
use crate::clock::ManualClock;
use crate::store::counter;

struct View;

impl NodeView for View {
    fn address(&self) -> String {
        "http://example.onion".into()
    }

    fn remailer_conf(&self) -> String {
        "Name: test\n".into()
    }

    fn pinger(&self) -> Option<serde_json::Value> {
        None
    }
}

struct Running {
    dir: tempfile::TempDir,
    store: Store,
    config: Config,
    clock: ManualClock,
    stop: CancellationToken,
    handle: AdminHandle,
}

async fn start(listen: AdminListen, metrics: bool) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default_for(dir.path());
    config.admin = AdminConfig { listen, metrics };
    let store = Store::open(&config.store_dir()).unwrap();
    let clock = ManualClock::at_epoch_day(20_000);
    let stop = CancellationToken::new();
    let handle = Admin::start(
        &config,
        store.clone(),
        Arc::new(clock.clone()),
        stop.clone(),
    )
    .await
    .unwrap();
    Running {
        dir,
        store,
        config,
        clock,
        stop,
        handle,
    }
}

impl Running {
    fn endpoint(&self) -> Endpoint {
        self.config.admin.endpoint(self.config.data_dir()).unwrap()
    }

    async fn report(&self) -> StatusReport {
        // Past the report cache.
        tokio::time::sleep(REPORT_CACHE + Duration::from_millis(50)).await;
        let body = get(&self.endpoint(), "/status.json").await.unwrap();
        serde_json::from_str(&body).unwrap()
    }

    async fn stop(self) {
        self.stop.cancel();
        for t in self.handle.into_tasks() {
            t.await.unwrap();
        }
    }
}

#[tokio::test]
async fn starting_then_running() {
    let r = start(AdminListen::Unix, false).await;
    let s = r.report().await;
    assert_eq!(
        (s.state, s.source, s.running),
        (NodeState::Starting, Source::Live, true)
    );
    assert_eq!(s.address, None);
    let tor = s.tor.as_ref().unwrap();
    assert_eq!((tor.bootstrap_percent, tor.ready), (0, false));
    assert!(matches!(
        get(&r.endpoint(), "/remailer-conf.txt").await,
        Err(ClientError::Status { status, .. }) if status == 503
    ));

    r.handle.tor_progress().send_replace(BootstrapProgress {
        percent: 40,
        description: "loading a consensus".into(),
        ready: false,
        blocked: None,
    });
    r.clock.advance(Duration::from_secs(90));
    let s = r.report().await;
    let tor = s.tor.as_ref().unwrap();
    assert_eq!(tor.bootstrap_percent, 40);
    assert_eq!(tor.bootstrap, "loading a consensus");
    assert_eq!(tor.onion_service, None, "not launched yet");
    assert_eq!(s.uptime_secs, Some(90));

    r.handle.attach(Arc::new(View), None);
    let s = r.report().await;
    assert_eq!(s.state, NodeState::Running);
    assert_eq!(s.address.as_deref(), Some("http://example.onion"));
    let conf = get(&r.endpoint(), "/remailer-conf.txt").await.unwrap();
    assert_eq!(conf, "Name: test\n");
    r.stop().await;
}

#[tokio::test]
async fn the_socket_is_private_replaced_when_stale_and_removed_at_stop() {
    let r = start(AdminListen::Unix, false).await;
    let Endpoint::Unix(path) = r.endpoint() else {
        panic!()
    };
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let (config, store) = (r.config.clone(), r.store.clone());
    let Running {
        dir, stop, handle, ..
    } = r;
    stop.cancel();
    for t in handle.into_tasks() {
        t.await.unwrap();
    }
    assert!(!path.exists(), "removed at stop");

    // A socket left by a killed node is replaced; anything else is not.
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale);
    let clock = Arc::new(ManualClock::at_epoch_day(20_000));
    let stop = CancellationToken::new();
    let h = Admin::start(&config, store.clone(), clock.clone(), stop.clone()).await;
    assert!(h.is_ok(), "a stale socket is replaced");
    stop.cancel();
    for t in h.unwrap().into_tasks() {
        t.await.unwrap();
    }
    std::fs::write(&path, b"not a socket").unwrap();
    let err = Admin::start(&config, store, clock, CancellationToken::new())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("not a socket"), "{err}");
    drop(dir);
}

/// One raw HTTP exchange with `port`; the status code.
async fn raw(port: u16, request: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn tcp_answers_gets_for_loopback_names_only() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let r = start(AdminListen::Tcp(addr), false).await;
    let req = |method: &str, path: &str, host: &str| {
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };
    assert_eq!(
        raw(port, &req("GET", "/status.json", "127.0.0.1")).await,
        200
    );
    assert_eq!(raw(port, &req("GET", "/", "localhost")).await, 200);
    assert_eq!(raw(port, &req("GET", "/history.json", "[::1]")).await, 200);
    assert_eq!(
        raw(port, &req("GET", "/status.json", "evil.example")).await,
        403
    );
    assert_eq!(
        raw(port, &req("POST", "/status.json", "127.0.0.1")).await,
        405
    );
    assert_eq!(
        raw(port, &req("GET", "/metrics", "127.0.0.1")).await,
        404,
        "off"
    );
    assert_eq!(
        raw(port, &req("GET", "/collector.py/msg", "127.0.0.1")).await,
        404
    );
    r.stop().await;
}

#[tokio::test]
async fn the_start_is_sampled_into_the_stored_history() {
    let r = start(AdminListen::Off, false).await;
    r.store.incr(counter::ACCEPTED, 4).unwrap();
    let sampled = async {
        loop {
            let h = History::load(&r.store).unwrap();
            if !h.samples().is_empty() {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let h = tokio::time::timeout(Duration::from_secs(10), sampled)
        .await
        .unwrap();
    assert_eq!(h.samples().len(), 1);
    r.stop().await;
}

#[test]
fn every_series_is_there_from_the_start() {
    let m = metrics::Metrics::new(1_700_000_000).unwrap();
    let text = m.render().unwrap();
    for family in [
        "mimix_packets_accepted_total",
        "mimix_packets_rejected_total",
        "mimix_outbound_total",
        "mimix_mail_total",
        "mimix_exit_recipients_total",
        "mimix_pool_packets",
        "mimix_queue_items",
        "mimix_tor_bootstrap_percent",
        "mimix_onion_service_state",
        "mimix_key_expiry_timestamp_seconds",
        "mimix_build_info",
    ] {
        assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
    }
    assert!(text.contains("mimix_packets_rejected_total{reason=\"replay\"} 0\n"));
    assert!(text.contains("mimix_start_time_seconds 1700000000\n"));
    assert!(text.contains("mimix_onion_service_state{state=\"published\"} 0\n"));

    let dir = tempfile::tempdir().unwrap();
    let config = Config::default_for(dir.path());
    let store = Store::open(&config.store_dir()).unwrap();
    store.incr(counter::ACCEPTED, 3).unwrap();
    store.incr("rejected_something_new", 2).unwrap();
    let now = std::time::UNIX_EPOCH + Duration::from_secs(86_400 * 20_000);
    let mut report =
        StatusReport::from_store(&store, &config, now, &History::default(), Source::Live).unwrap();
    m.update(&report, 5);
    report.counters.insert(counter::ACCEPTED.into(), 7);
    m.update(&report, 5);
    let text = m.render().unwrap();
    assert!(text.contains("mimix_packets_accepted_total 7\n"), "{text}");
    assert!(text.contains("{reason=\"something_new\"} 2\n"), "{text}");
    assert!(
        text.contains("mimix_admin_connections_refused_total 5\n"),
        "{text}"
    );
}

#[test]
fn every_news_and_gzip_refusal_has_its_series() {
    use crate::exit::PolicyError;
    use crate::exit::gzip::GzipError;
    use crate::exit::news::NewsRefusal;
    let m = metrics::Metrics::new(0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default_for(dir.path());
    let store = Store::open(&config.store_dir()).unwrap();
    let news = [
        NewsRefusal::Control,
        NewsRefusal::Approved,
        NewsRefusal::Crosspost { found: 4, max: 3 },
        NewsRefusal::Blocked,
        NewsRefusal::BadGroups,
        NewsRefusal::WithRecipients,
    ];
    let gzip = [
        GzipError::BadHeader,
        GzipError::Truncated,
        GzipError::Corrupt,
        GzipError::TooLarge { limit: 1 },
        GzipError::MultipleMembers,
        GzipError::TrailingData,
    ];
    let errors = news
        .iter()
        .map(|r| PolicyError::News(*r))
        .chain(gzip.iter().map(|g| PolicyError::Gzip(*g)));
    for e in errors {
        store.incr(&e.counter().unwrap(), 1).unwrap();
    }
    store.incr("news_posted", 2).unwrap();
    let now = std::time::UNIX_EPOCH + Duration::from_secs(86_400 * 20_000);
    let report =
        StatusReport::from_store(&store, &config, now, &History::default(), Source::Live).unwrap();
    m.update(&report, 0);
    let text = m.render().unwrap();
    for r in news {
        let line = format!("mimix_news_refused_total{{reason=\"{}\"}} 1\n", r.reason());
        assert!(text.contains(&line), "{line}");
    }
    for g in gzip {
        let line = format!("mimix_gzip_refused_total{{reason=\"{}\"}} 1\n", g.reason());
        assert!(text.contains(&line), "{line}");
    }
    assert!(text.contains("mimix_news_total{outcome=\"posted\"} 2\n"));
    assert!(text.contains("mimix_news_total{outcome=\"dropped\"} 0\n"));
}
