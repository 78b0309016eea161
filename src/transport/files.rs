//! The open-files limit a server with many connection slots needs.

/// File descriptors the node needs besides its connections: the store's
/// files, Arti's, the exit's SMTP sessions, outbound posts.
const OTHER_FILES: u64 = 1024;

/// Raises the soft limit on open files (often 1024) so that
/// `max_connections` connections and the node's own files fit, as far as
/// the hard limit allows; warns if they do not.
pub fn raise_open_files(max_connections: usize) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let wanted = (max_connections as u64).saturating_add(OTHER_FILES);
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if current < wanted {
        let raised = Rlimit {
            current: Some(limit.maximum.map_or(wanted, |hard| hard.min(wanted))),
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!("raising the open-files limit: {e}");
        }
    }
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    if now < wanted {
        tracing::warn!(
            "the open-files limit is {now}: fewer than transport.max_connections ({max_connections}) \
             connections may be served; raise it (ulimit -n, LimitNOFILE=) to {wanted}"
        );
    }
}
