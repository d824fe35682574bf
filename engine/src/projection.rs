//! The columns a running vagt reads of its events, as the projection the
//! inputs' decoders fill: the rules' fields, the windowed rules' group-by
//! and value fields, the catalog's facts (hosts, addresses, applications),
//! event time, the intel feeds' fields, and the host, channel and event id
//! the windows and the archive take. Everything else an event holds is
//! checked as JSON and kept in its text, not decoded into columns. A
//! column only the rules read, and only in the rows of logsources that
//! need a value of one field (a Windows event log channel), is decoded
//! only in rows that hold one of those values.
//!
//! ```text
//!  rules, windows, catalog, intel ─► Readers::projection ─► SharedProjection ─► every input's decoder
//!  reload ─► the same, anew ─► batches decoded for fewer columns are decoded again before evaluation
//! ```

use vagt_connectors::{Gate, Projection};
use vagt_rules::window::{TimestampSpec, WindowPlan};
use vagt_rules::{LogSource, Profile, RuleSet};

use crate::alert::FieldCandidates;
use crate::intel::Intel;

/// The readers of a run that do not change with a reload.
#[derive(Debug, Clone)]
pub(crate) struct Readers {
    /// Columns read whatever the rules: event time, hosts, channel and
    /// event id.
    fixed: Vec<String>,
}

impl Readers {
    /// The fixed readers of a run with these inputs' timestamps.
    pub(crate) fn new(profile: &Profile, timestamps: &[TimestampSpec]) -> Readers {
        let everywhere = LogSource::default();
        let mut fixed: Vec<String> = timestamps
            .iter()
            .chain([&profile.timestamp])
            .flat_map(|t| t.fields.iter().cloned())
            .collect();
        fixed.extend(profile.host.iter().cloned());
        fixed.extend(profile.columns_for("Channel", &everywhere));
        fixed.extend(profile.columns_for("EventID", &everywhere));
        Readers { fixed }
    }

    /// Every column one of them reads, with the rule set `set`, windowed
    /// rules `windows`, the catalog's `fields` and the feeds `intel`.
    pub(crate) fn projection(
        &self,
        set: &RuleSet,
        windows: Option<&WindowPlan>,
        fields: &FieldCandidates,
        intel: Option<&Intel>,
    ) -> Projection {
        // A gate the decoders cannot tell by ASCII case is every row.
        let mut everywhere = Vec::new();
        let mut gated = Vec::new();
        for (columns, gate) in set.fields_gated() {
            match gate.and_then(|g| Gate::new(&g.columns, &g.values)) {
                Some(gate) => gated.extend(columns.iter().map(|c| (c.clone(), gate.clone()))),
                None => everywhere.extend(columns.iter().map(String::as_str)),
            }
        }
        let columns = self
            .fixed
            .iter()
            .map(String::as_str)
            .chain(everywhere)
            .chain(windows.into_iter().flat_map(WindowPlan::columns_read))
            .chain(fields.columns())
            .chain(intel.into_iter().flat_map(Intel::columns));
        Projection::new(columns, vagt_rules::path_matches).gated(gated)
    }
}
