//! The rules that span tables; each table checks its own fields.

use mimix_settings::{Checked, Invalid, check};

use super::{Config, SUPPORTED_VERSION};
use crate::admin::{Endpoint, MAX_SOCKET_PATH};
use crate::transport::{PeerPolicy, PeerUrl, TransportKind};

/// Check the whole configuration; the first problem found is returned.
pub(super) fn validate(c: &Config) -> Checked {
    check(
        c.config_version == SUPPORTED_VERSION,
        "config_version",
        || {
            format!(
                "{} is not supported: this mimix reads config_version = {SUPPORTED_VERSION}",
                c.config_version
            )
        },
    )?;
    let tables: [(&str, Checked); 13] = [
        ("node", c.node.validate()),
        ("transport", c.transport.validate()),
        ("tor", c.tor.validate()),
        ("pool", c.pool.validate()),
        ("dummies", c.dummies.validate()),
        ("replay", c.replay.validate()),
        ("store", c.store.validate()),
        ("keys", c.keys.validate()),
        ("outbound", c.outbound.validate()),
        ("exit", c.exit.validate()),
        ("directory", c.directory.validate()),
        ("pinger", c.pinger.validate()),
        ("admin", c.admin.validate()),
    ];
    for (table, checked) in tables {
        checked.map_err(|e| e.within(table))?;
    }
    published_address(c)?;
    remailers_reachable(c)?;
    admin_socket_fits(c)
}

/// The admin socket's path (in the data directory) fits a unix socket
/// address.
fn admin_socket_fits(c: &Config) -> Checked {
    let Some(Endpoint::Unix(path)) = c.admin.endpoint(c.data_dir()) else {
        return Ok(());
    };
    let len = path.as_os_str().len();
    check(len <= MAX_SOCKET_PATH, "admin.listen", || {
        format!(
            "the socket {} would be {len} bytes long, more than the {MAX_SOCKET_PATH} a unix \
             socket allows; use a shorter node.data_dir, a loopback address or \"off\"",
            path.display()
        )
    })
}

/// The peers the configured transport reaches.
fn peer_policy(c: &Config) -> PeerPolicy {
    match c.transport.kind {
        TransportKind::Direct => PeerPolicy::LoopbackOnly,
        TransportKind::Tor if c.transport.allow_clearnet_hops => PeerPolicy::OnionOrClearnet,
        TransportKind::Tor => PeerPolicy::OnionOnly,
    }
}

/// `node.address` is a base URL of the transport in use.
fn published_address(c: &Config) -> Checked {
    let Some(address) = &c.node.address else {
        return Ok(());
    };
    let field = "node.address";
    let url =
        PeerUrl::parse(address).map_err(|e| Invalid::new(field, format!("{address:?}: {e}")))?;
    let policy = match c.transport.kind {
        TransportKind::Tor => PeerPolicy::OnionOnly,
        TransportKind::Direct => PeerPolicy::LoopbackOnly,
    };
    check(policy.check(&url).is_ok(), field, || {
        match c.transport.kind {
            TransportKind::Tor => {
                "with the tor transport the published address must be our .onion \
                               address (or leave it out to have it filled in)"
                    .into()
            }
            TransportKind::Direct => {
                "with the direct transport the address must be on 127.0.0.1 or localhost".into()
            }
        }
    })
}

/// Every configured remailer is reachable over the transport in use.
fn remailers_reachable(c: &Config) -> Checked {
    let policy = peer_policy(c);
    let listed = c.directory.remailers.iter().map(|r| r.address.as_str());
    let fields = (0..c.directory.remailers.len())
        .map(|i| format!("directory.remailers[{i}].address"))
        .chain((0..c.directory.seeds.len()).map(|i| format!("directory.seeds[{i}]")));
    let addresses = listed.chain(c.directory.seeds.iter().map(String::as_str));
    for (field, address) in fields.zip(addresses) {
        let reachable = PeerUrl::parse(address).is_ok_and(|u| policy.check(&u).is_ok());
        check(reachable, &field, || match c.transport.kind {
            TransportKind::Direct => {
                "the direct transport only reaches 127.0.0.1 and localhost".into()
            }
            TransportKind::Tor => "not a .onion address; set transport.allow_clearnet_hops \
                                       to reach clearnet remailers over Tor"
                .into(),
        })?;
    }
    Ok(())
}
