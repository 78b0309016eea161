//! The packaged unit is `Type=notify`: the node tells systemd it is ready
//! (`READY=1`, once it serves its conf) and that it is stopping
//! (`STOPPING=1`, on SIGTERM) over the datagram socket named by
//! `NOTIFY_SOCKET`, as systemd would pass it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use support::net::Network;

fn next_message(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("a notification within 30 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_once_serving_and_stopping_on_sigterm() {
    let mut net = Network::start(&[("a", false)], support::net::free_port(), false);
    let sock_path = net.root.path().join("notify.sock");
    let socket = UnixDatagram::bind(&sock_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    let a = net.node("a");
    a.terminate();
    a.spawn_env(&[("NOTIFY_SOCKET", &sock_path)]);
    let ready = next_message(&socket);
    assert_eq!(ready.trim_end(), "READY=1");
    // Ready means serving: the conf is there without waiting.
    assert!(
        support::net::get_conf(a.port).is_some(),
        "READY=1 before the conf is served"
    );

    a.terminate();
    let stopping = next_message(&socket);
    assert_eq!(stopping.trim_end(), "STOPPING=1");
}
