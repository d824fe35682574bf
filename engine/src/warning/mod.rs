//! The warning service, between routing and the outputs: every alert
//! gets its TLP and the response guidance of what it puts at risk; each
//! output gets only the alerts its audience may see ([`tlp`]), without
//! repeats ([`suppress`]); alerts of one rule at several organisations
//! make a sector alert ([`campaign`]); what leaves for the sector can be
//! pseudonymised ([`pseudonym`]).
//!
//! Configured by `tlp`, `suppression`, `campaigns` and `pseudonyms` in
//! the run config, `audience` and `suppress` on outputs, and `tlp` and
//! `suppress` on routes (docs/warning.md).

pub mod campaign;
pub mod pseudonym;
pub mod suppress;
pub mod tlp;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::catalog::Catalog;
use crate::config::ConfigError;
use crate::sinks::config::OutputConfig;
use campaign::Campaigns;
use pseudonym::Pseudonymiser;
use suppress::{SuppressionPlan, Suppressor};
use tlp::{Audience, Tlp};

/// The warning service's state and settings for one run.
#[derive(Debug)]
pub struct Warning {
    /// TLP of alerts nothing else raises.
    pub default_tlp: Tlp,
    pub(crate) catalog: Arc<Catalog>,
    /// Each output's audience, by index.
    pub audiences: Vec<Audience>,
    /// Where suppression specs come from.
    pub plan: SuppressionPlan,
    /// Open suppression groups.
    pub suppressor: Suppressor,
    /// Campaign detection, if configured.
    pub campaigns: Option<Campaigns>,
    /// The key for pseudonyms, if configured.
    pub pseudonyms: Option<Pseudonymiser>,
}

/// What the state file keeps of the warning service.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WarningState {
    /// Open suppression groups.
    #[serde(default)]
    pub suppression: serde_json::Value,
    /// Campaign tracks.
    #[serde(default)]
    pub campaigns: serde_json::Value,
}

impl Warning {
    /// The warning service of a run config, over its outputs (in order)
    /// and catalog.
    ///
    /// # Errors
    /// A bad suppression spec, a campaign naming an unknown output, or
    /// pseudonyms asked for without a usable key; each names its setting.
    pub fn new(
        config: &crate::config::RunConfig,
        outputs: &[OutputConfig],
        catalog: Arc<Catalog>,
    ) -> Result<Warning, ConfigError> {
        let plan = SuppressionPlan::compile(
            &config.suppression,
            &outputs
                .iter()
                .map(|o| (o.name.clone(), o.suppress.clone()))
                .collect::<Vec<_>>(),
            &config
                .routes
                .iter()
                .map(|r| (r.name.clone(), r.suppress.clone()))
                .collect::<Vec<_>>(),
            &catalog,
        )
        .map_err(|(key, message)| config.locate(ConfigError::setting(key, message)))?;
        let pseudonyms = config
            .pseudonyms
            .as_ref()
            .map(Pseudonymiser::from_config)
            .transpose()
            .map_err(|m| config.locate(ConfigError::setting("pseudonyms", m)))?;
        let campaigns = match &config.campaigns {
            Some(c) => {
                let setting = |key: &str, m: String| {
                    config.locate(ConfigError::setting(format!("campaigns.{key}"), m))
                };
                if c.min_organisations < 2 {
                    return Err(setting(
                        "min_organisations",
                        "a campaign needs at least 2 organisations".into(),
                    ));
                }
                if c.outputs.is_empty() {
                    return Err(setting("outputs", "name at least one output".into()));
                }
                if c.pseudonymise && pseudonyms.is_none() {
                    return Err(setting(
                        "pseudonymise",
                        "needs `pseudonyms: {key_env: VAR}` for the key".into(),
                    ));
                }
                let mut indices = Vec::new();
                for name in &c.outputs {
                    let index = outputs
                        .iter()
                        .position(|o| &o.name == name)
                        .ok_or_else(|| setting("outputs", format!("no output named '{name}'")))?;
                    indices.push(index);
                }
                Some(Campaigns::new(c.clone(), indices, pseudonyms.clone()))
            }
            None => None,
        };
        let host_fields = catalog.fields().host.clone();
        Ok(Warning {
            default_tlp: config.tlp,
            catalog,
            audiences: outputs.iter().map(|o| o.audience).collect(),
            plan,
            suppressor: Suppressor::new(host_fields),
            campaigns,
            pseudonyms,
        })
    }

    /// Gives an alert the TLP its rule's tag and the catalog (its assets
    /// and organisation) set, the most restrictive of them (routes may
    /// raise it, then [`Warning::settle_tlp`] falls back to the default),
    /// and the response guidance of what it puts at risk.
    pub fn prepare(&self, alert: &mut Alert) {
        let catalog_tlp = self.catalog.tlp(&alert.assets, alert.actor.as_deref());
        alert.tlp = alert.tlp.max(catalog_tlp);
        if alert.response.is_empty() {
            alert.response = self.catalog.guidance(
                &alert.assets,
                &alert.critical_processes,
                alert.actor.as_deref(),
            );
        }
    }

    /// The TLP after routing: the most restrictive that the rule, the
    /// catalog and the routes set, else the config's default.
    pub fn settle_tlp(&self, alert: &mut Alert, routes: Option<Tlp>) -> Tlp {
        let tlp = alert.tlp.max(routes).unwrap_or(self.default_tlp);
        alert.tlp = Some(tlp);
        tlp
    }

    /// Event fields naming the host (the catalog's).
    pub fn catalog_host_fields(&self) -> Vec<String> {
        self.catalog.fields().host.clone()
    }

    /// Takes over the open suppression groups and campaign tracks of the
    /// version it replaces (a reload); `moved[o]` is the new index of old
    /// output `o`. Returns the follow-ups of groups whose output is gone,
    /// by old index.
    pub fn adopt(
        &mut self,
        old: &mut Warning,
        moved: &[Option<usize>],
        now_text: &str,
    ) -> Vec<(usize, Alert)> {
        let groups = std::mem::take(&mut old.suppressor);
        let closing = self.suppressor.adopt(groups, moved, now_text);
        if let (Some(new), Some(old)) = (&mut self.campaigns, &mut old.campaigns) {
            new.adopt(old);
        }
        closing
    }

    /// Whether there is no state to keep: no open suppression group and
    /// no campaign detection.
    pub fn keeps_nothing(&self) -> bool {
        self.suppressor.is_empty() && self.campaigns.is_none()
    }

    /// The state to keep.
    pub fn snapshot(&self, outputs: &[Arc<str>]) -> WarningState {
        WarningState {
            suppression: self.suppressor.snapshot(outputs),
            campaigns: self
                .campaigns
                .as_ref()
                .map_or(serde_json::Value::Null, Campaigns::snapshot),
        }
    }

    /// Restores what a state file kept; returns a note on what it dropped.
    ///
    /// # Errors
    /// The saved state cannot be read.
    pub fn restore(
        &mut self,
        state: WarningState,
        outputs: &[Arc<str>],
    ) -> Result<Option<String>, String> {
        let mut note = None;
        if !state.suppression.is_null() {
            let dropped = self.suppressor.restore(state.suppression, outputs)?;
            if dropped > 0 {
                note = Some(format!(
                    "{dropped} suppression groups of outputs no longer configured were dropped"
                ));
            }
        }
        if let (Some(campaigns), false) = (&mut self.campaigns, state.campaigns.is_null()) {
            campaigns.restore(state.campaigns)?;
        }
        Ok(note)
    }
}
