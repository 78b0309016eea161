//! End to end over a private loopback Tor network: an Arti onion service
//! serving HTTP with hyper, a second Arti client reaching it, a restart that
//! keeps the address, and a dial to an unpublished address that fails in
//! time.
//!
//! Needs `tor` and `tor-gencert` (Debian package `tor`) on `PATH`. Wall
//! time is about 30-60 s on two cores, most of it waiting for the test
//! network's first consensus. Measurements are printed; run with
//! `--nocapture` to see them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mimix_tor::testnet::{TestNetConfig, TestNetwork};
use mimix_tor::{
    BootstrapProgress, IncomingStreams, OnionService, PublishState, TorError, TorTransport,
};
use safelog::DisplayRedacted;

/// How long the client keeps retrying a freshly published service.
const REACH_DEADLINE: Duration = Duration::from_secs(90);

/// The dial timeout used for the unpublished address.
const SHORT_DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole test, so that a hang fails instead of blocking CI.
const TEST_BUDGET: Duration = Duration::from_secs(420);

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "warn,tor_netdir=error,tor_guardmgr=error".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// The resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Answers every request with `hello <path>`.
async fn hello(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from(format!(
        "hello {}",
        req.uri().path()
    )))))
}

/// The rendezvous circuit of every stream served, in arrival order.
type Circuits = std::sync::Arc<std::sync::Mutex<Vec<mimix_tor::CircuitId>>>;

/// Serve HTTP/1.1 on every incoming onion stream until the service stops,
/// noting each stream's circuit in `circuits`.
fn spawn_http_server(
    mut incoming: IncomingStreams,
    circuits: Circuits,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some((stream, circuit)) = incoming.accept_with_circuit().await {
            circuits.lock().unwrap().push(circuit);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(hello))
                    .await;
            });
        }
    })
}

/// One GET over a fresh stream; returns the body.
async fn get(client: &TorTransport, onion: &str, path: &str) -> Result<String, String> {
    let stream = client.dial(onion, 80).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let req = Request::get(path)
        .header(hyper::header::HOST, onion)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    // Closing our side first lets the service see end of file.
    drop(sender);
    conn.abort();
    if !status.is_success() {
        return Err(format!("status {status}"));
    }
    String::from_utf8(body.to_bytes().to_vec()).map_err(|e| e.to_string())
}

/// Retry `get` until it succeeds or [`REACH_DEADLINE`] passes.
async fn get_with_retry(client: &TorTransport, onion: &str, path: &str) -> (String, u32) {
    let deadline = Instant::now() + REACH_DEADLINE;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match get(client, onion, path).await {
            Ok(body) => return (body, attempts),
            Err(e) if Instant::now() < deadline => {
                eprintln!("attempt {attempts} failed: {e}");
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
            Err(e) => panic!("service not reachable within {REACH_DEADLINE:?}: {e}"),
        }
    }
}

/// A valid v3 onion address nobody has published: a random ed25519 point.
fn unpublished_onion() -> String {
    loop {
        let bytes: [u8; 32] = rand::random();
        if let Ok(pk) = tor_llcrypto::pk::ed25519::PublicKey::from_bytes(&bytes) {
            let key = tor_hscrypto::pk::HsIdKey::from(pk);
            return key.id().display_unredacted().to_string();
        }
    }
}

async fn start_service(
    dir: &Path,
    network: &mimix_tor::TorConfig,
) -> (
    TorTransport,
    String,
    IncomingStreams,
    OnionService,
    Duration,
) {
    let t = Instant::now();
    let config = network
        .clone()
        .with_dirs(dir.join("state"), dir.join("cache"));
    let transport = TorTransport::start(&config).await.unwrap();
    let bootstrap = t.elapsed();
    let (onion, incoming, service) = transport.launch_onion_service("mimix-test").await.unwrap();
    (transport, onion, incoming, service, bootstrap)
}

#[test]
fn onion_service_over_a_private_tor_network() {
    init_logging();
    // Arti's background tasks write their state when the runtime shuts
    // down, so the Arti directories must outlive the runtime.
    let svc_dir = tempfile::tempdir().unwrap();
    let cli_dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(TEST_BUDGET, scenario(svc_dir.path(), cli_dir.path()))
            .await
            .expect("the scenario finished within its budget");
    });
    drop(runtime);
}

/// Assert that the service's identity key exists under `state` and is
/// private.
fn assert_private_identity_key(state: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let dir = state.join("keystore").join("hss").join("mimix-test");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    let keys: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("ks_hs_id")
        })
        .collect();
    assert!(!keys.is_empty(), "no identity key in {}", dir.display());
    for key in keys {
        assert_eq!(mode(&key), 0o600, "{}", key.display());
    }
}

async fn scenario(svc_dir: &Path, cli_dir: &Path) {
    let wall = Instant::now();
    let net = TestNetwork::start(&TestNetConfig::default()).await.unwrap();
    let timings = net.timings();
    eprintln!(
        "testnet: keygen {:?}, consensus after launch {:?}, total {:?}",
        timings.keygen,
        timings.consensus,
        wall.elapsed()
    );
    let pids = net.pids();
    let net_dir = net.dir().to_owned();
    assert_eq!(pids.len(), 5);

    // The service.
    let rss_before = rss_kib();
    let (svc, onion, incoming, service, svc_bootstrap) =
        start_service(svc_dir, net.network()).await;
    let rss_after = rss_kib();
    eprintln!(
        "service bootstrap {svc_bootstrap:?}; RSS {rss_before} KiB before, {rss_after} KiB after"
    );
    assert!(onion.ends_with(".onion") && onion.len() == 62, "{onion}");
    assert_eq!(service.onion_address(), onion);
    assert_private_identity_key(&svc_dir.join("state"));
    let launched = Instant::now();
    let circuits = Circuits::default();
    let server = spawn_http_server(incoming, circuits.clone());
    service
        .wait_published(Duration::from_secs(60))
        .await
        .unwrap();
    eprintln!(
        "publish state {:?} after {:?}",
        service.publish_state(),
        launched.elapsed()
    );

    // The client, reporting its progress.
    let t = Instant::now();
    let (progress_tx, mut progress) = tokio::sync::watch::channel(BootstrapProgress::default());
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        while progress.changed().await.is_ok() {
            let p = progress.borrow_and_update().clone();
            seen.push(p.percent);
            if p.ready {
                break;
            }
        }
        seen
    });
    let cli_config = net
        .network()
        .clone()
        .with_dirs(cli_dir.join("state"), cli_dir.join("cache"));
    let client = TorTransport::start_with_progress(&cli_config, progress_tx)
        .await
        .unwrap()
        .with_dial_timeout(SHORT_DIAL_TIMEOUT);
    eprintln!("client bootstrap {:?}", t.elapsed());
    assert!(client.progress().borrow().ready);
    let seen = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("progress reached ready")
        .unwrap();
    eprintln!("client bootstrap progress: {seen:?}");
    assert_eq!(seen.last(), Some(&100));

    let (body, attempts) = get_with_retry(&client, &onion, "/first").await;
    assert_eq!(body, "hello /first");
    eprintln!(
        "first response {:?} after launch ({attempts} attempt(s))",
        launched.elapsed()
    );

    // Warm requests: a new stream and HTTP connection each, as the
    // transport does.
    let mut lat = Vec::new();
    for i in 0..10 {
        let t = Instant::now();
        let path = format!("/warm/{i}");
        assert_eq!(
            get(&client, &onion, &path).await.unwrap(),
            format!("hello {path}")
        );
        lat.push(t.elapsed());
    }
    lat.sort();
    eprintln!(
        "warm request latency: min {:?} median {:?} max {:?}",
        lat[0],
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );
    // One client's streams come over one rendezvous circuit (a new one
    // only if Arti had to rebuild it): the circuit is what the node's
    // per-source limit counts on the onion service.
    let seen = circuits.lock().unwrap().clone();
    let mut distinct = seen.clone();
    distinct.sort();
    distinct.dedup();
    eprintln!(
        "{} streams arrived on {} rendezvous circuit(s)",
        seen.len(),
        distinct.len()
    );
    assert!(seen.len() >= 11, "{seen:?}");
    assert!(distinct.len() <= 3, "one client, many circuits: {seen:?}");

    // Only port 80 is served.
    assert!(
        client.dial(&onion, 81).await.is_err(),
        "port 81 was accepted"
    );
    let (body, _) = get_with_retry(&client, &onion, "/after-81").await;
    assert_eq!(body, "hello /after-81");

    // An address nobody published fails, and within the dial timeout.
    let t = Instant::now();
    let err = client
        .dial(&unpublished_onion(), 80)
        .await
        .err()
        .expect("dial must fail");
    let failed_after = t.elapsed();
    eprintln!("unpublished address failed after {failed_after:?}: {err}");
    assert!(matches!(
        err,
        TorError::Connect(_) | TorError::DialTimeout(_)
    ));
    assert!(failed_after <= SHORT_DIAL_TIMEOUT + Duration::from_secs(2));
    // And a dial slower than the timeout is cut off by it.
    let client = client.with_dial_timeout(Duration::from_millis(1));
    let err = client
        .dial(&unpublished_onion(), 80)
        .await
        .err()
        .expect("dial must fail");
    assert!(matches!(err, TorError::DialTimeout(_)), "{err}");
    let client = client.with_dial_timeout(SHORT_DIAL_TIMEOUT);

    // Restart the service on the same state directory: same address, and
    // reachable again.
    drop(service);
    server.abort();
    drop(svc);
    let (svc2, onion2, incoming2, service2, _) = start_service(svc_dir, net.network()).await;
    assert_eq!(onion2, onion, "the address changed across a restart");
    let relaunched = Instant::now();
    let server2 = spawn_http_server(incoming2, Circuits::default());
    let (body, attempts) = get_with_retry(&client, &onion, "/again").await;
    assert_eq!(body, "hello /again");
    eprintln!(
        "after restart: reachable {:?} after relaunch ({attempts} attempt(s))",
        relaunched.elapsed()
    );
    assert_ne!(service2.publish_state(), PublishState::Broken);

    // Tear down: no tor process and no file may outlive the network.
    drop(service2);
    server2.abort();
    drop(svc2);
    drop(client);
    drop(net);
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "tor process {pid} outlived the test network"
        );
    }
    assert!(
        !net_dir.exists(),
        "the test network directory was left behind"
    );
    eprintln!("total wall time {:?}", wall.elapsed());
}
