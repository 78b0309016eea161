//! The status file `mimix status` reads while the node runs (the store is
//! locked by the running node).

use super::Shared;

/// The status file, in the data directory.
pub const STATUS_FILE: &str = "status.json";

/// Writes the counters and queue sizes to `<data_dir>/status.json`
/// (through a temporary file, so a reader never sees half of it).
pub(crate) fn write(shared: &Shared) -> Result<(), std::io::Error> {
    let store = &shared.store;
    let mut doc = serde_json::json!({
        "pool": store.pool_count().unwrap_or(0),
        "outbound": store.outbound_len().unwrap_or(0),
        "mail": store.mail_len().unwrap_or(0),
        "partials": store.partial_count(),
    });
    if let Ok(mut c) = store.counters() {
        for (name, n) in shared.tally.pending() {
            *c.entry(name).or_default() += n;
        }
        doc["counters"] = serde_json::json!(c);
    }
    let path = shared.config.data_dir().join(STATUS_FILE);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, doc.to_string())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}
