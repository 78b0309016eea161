//! What the node shows the operator: the admin listener's view of it
//! ([`NodeView`]), and the status file `mimix status` reads when the
//! admin listener is off (the store is locked by the running node).

use crate::admin::{History, NodeView, Source, StatusReport};

use super::Shared;

/// The status file, in the data directory.
pub const STATUS_FILE: &str = "status.json";

impl NodeView for Shared {
    fn address(&self) -> String {
        self.address.clone()
    }

    fn remailer_conf(&self) -> String {
        self.conf_text()
    }

    fn pinger(&self) -> Option<serde_json::Value> {
        if !self.config.pinger.enabled {
            return None;
        }
        let rows: Vec<_> = self
            .directory
            .stats_rows(self.unix_now())
            .into_values()
            .collect();
        serde_json::to_value(rows).ok()
    }
}

/// Writes the status report, as the store has it, to
/// `<data_dir>/status.json` (through a temporary file, so a reader never
/// sees half of it).
pub(crate) fn write(shared: &Shared) -> Result<(), std::io::Error> {
    let store = &shared.store;
    let history = History::load(store).unwrap_or_default();
    let mut report = StatusReport::from_store(
        store,
        &shared.config,
        shared.clock.now(),
        &history,
        Source::StatusFile,
    )
    .map_err(std::io::Error::other)?;
    report.address = Some(shared.address.clone());
    for (name, n) in shared.tally.pending() {
        *report.counters.entry(name).or_default() += n;
    }
    let doc = serde_json::to_string(&report).map_err(std::io::Error::other)?;
    let path = shared.config.data_dir().join(STATUS_FILE);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, doc)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}
