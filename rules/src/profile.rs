//! Profiles: how Sigma field names and logsources map onto the events of
//! one kind of source. A profile is data (YAML), so users can write their
//! own; vagt ships a built-in Windows profile that lets SigmaHQ rules run
//! unmodified over nested evtx_dump events and flat Winlogbeat/OTRF events.
//!
//! ```yaml
//! name: windows
//! field_prefixes: ["Event.EventData.", "Event.System.", ""]
//! fields:
//!   Provider_Name: [Event.System.Provider.#attributes.Name, Provider_Name, SourceName]
//! logsources:
//!   - category: process_creation
//!     when:                      # a Sigma search: list of maps (OR) of maps (AND)
//!       - {EventID: 1, Channel: Microsoft-Windows-Sysmon/Operational}
//!       - {EventID: 4688, Channel: Security}
//!     fields: {Image: [NewProcessName]}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::error::ProfileError;
use crate::sigma::detection::lower_search;
use crate::sigma::{Cond, LogSource, Placeholders};
use crate::window::{TimeFormat, TimestampSpec};

/// The built-in Windows profile's YAML text.
pub const WINDOWS_PROFILE_YAML: &str = include_str!("../profiles/windows.yaml");

/// A logsource entry of a profile file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSourceEntry {
    /// Defines `product: <value>`.
    #[serde(default)]
    pub product: Option<String>,
    /// Defines `category: <value>`.
    #[serde(default)]
    pub category: Option<String>,
    /// Defines `service: <value>`.
    #[serde(default)]
    pub service: Option<String>,
    /// Which events belong to it, as a Sigma search (map = AND, list of
    /// maps = OR). Absent: every event of this profile.
    #[serde(default)]
    pub when: Option<Value>,
    /// Extra column candidates for the rules of this logsource, tried after
    /// the profile-wide ones (e.g. `Image: [NewProcessName]` for 4688).
    #[serde(default)]
    pub fields: BTreeMap<String, Vec<String>>,
}

/// A profile file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    /// Name shown in messages.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Prefixes tried, in order, for a Sigma field without an explicit
    /// `fields` entry: `CommandLine` → `Event.EventData.CommandLine`, ...
    /// Use `""` for the field name itself.
    #[serde(default = "default_prefixes")]
    pub field_prefixes: Vec<String>,
    /// Sigma field name → event columns to try, in order. A `*` in a column
    /// name matches one path segment (`Event.UserData.*.SubjectUserName`).
    #[serde(default)]
    pub fields: BTreeMap<String, Vec<String>>,
    /// How rule logsources select events.
    #[serde(default)]
    pub logsources: Vec<LogSourceEntry>,
    /// Where the event time is (for windowed rules); absent: the common
    /// names `@timestamp`, `timestamp`, `time`, `ts`, `EventTime`.
    #[serde(default)]
    pub timestamp: Option<TimestampSpec>,
    /// Columns naming the host an event comes from, in order: with the
    /// input and the organisation it makes the event's source, whose
    /// event-time progress windowed rules track on their own. Absent: the
    /// common names `host.name`, `hostname`, `host`, `Hostname`,
    /// `Computer`.
    #[serde(default)]
    pub host: Option<Vec<String>>,
}

/// The event-time columns tried when a profile declares none.
pub fn default_timestamp() -> TimestampSpec {
    TimestampSpec {
        fields: ["@timestamp", "timestamp", "time", "ts", "EventTime"]
            .map(String::from)
            .to_vec(),
        format: TimeFormat::Auto,
    }
}

/// The host columns tried when a profile declares none.
pub fn default_host() -> Vec<String> {
    ["host.name", "hostname", "host", "Hostname", "Computer"]
        .map(String::from)
        .to_vec()
}

fn default_prefixes() -> Vec<String> {
    vec![String::new()]
}

/// A logsource condition, compiled.
#[derive(Debug, Clone)]
pub struct LogSourceRoute {
    /// Which key/value it defines.
    pub key: LogSourceKey,
    /// The value, lowercase.
    pub value: String,
    /// The event condition (None: all events).
    pub when: Option<Cond>,
    /// Extra field candidates.
    pub fields: BTreeMap<String, Vec<String>>,
}

/// The three logsource attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogSourceKey {
    /// `product`.
    Product,
    /// `category`.
    Category,
    /// `service`.
    Service,
}

/// A loaded, validated profile.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Name.
    pub name: String,
    prefixes: Vec<String>,
    fields: BTreeMap<String, Vec<String>>,
    routes: Vec<LogSourceRoute>,
    /// Where the event time is.
    pub timestamp: TimestampSpec,
    /// Where the host an event comes from is.
    pub host: Vec<String>,
}

/// How a rule's logsource resolves under a profile.
#[derive(Debug, Clone)]
pub enum Routing {
    /// Events for which the condition holds (None: every event).
    Events(Option<Cond>),
    /// The profile cannot recognise events of this logsource; the rule
    /// never matches under it. The string names the unknown part.
    Unroutable(String),
}

impl Profile {
    /// The built-in Windows profile.
    pub fn windows() -> Result<Profile, ProfileError> {
        Profile::from_yaml("built-in windows", WINDOWS_PROFILE_YAML)
    }

    /// A profile with no mapping and no routing: Sigma field names are
    /// column names and every rule sees every event.
    pub fn passthrough() -> Profile {
        Profile {
            name: "passthrough".into(),
            prefixes: default_prefixes(),
            fields: BTreeMap::new(),
            routes: Vec::new(),
            timestamp: default_timestamp(),
            host: default_host(),
        }
    }

    /// Reads a profile file.
    pub fn from_file(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Profile::from_yaml(&path.display().to_string(), &text)
    }

    /// Parses and validates profile YAML.
    pub fn from_yaml(origin: &str, text: &str) -> Result<Profile, ProfileError> {
        let file: ProfileFile = serde_yaml_ng::from_str(text).map_err(|e| ProfileError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let mut routes = Vec::with_capacity(file.logsources.len());
        for entry in file.logsources {
            let set: Vec<(LogSourceKey, &String)> = [
                (LogSourceKey::Product, &entry.product),
                (LogSourceKey::Category, &entry.category),
                (LogSourceKey::Service, &entry.service),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
            .collect();
            let [(key, value)] = set.as_slice() else {
                return Err(ProfileError::Parse {
                    origin: origin.to_string(),
                    message: format!(
                        "each logsource entry sets exactly one of product, category, service; found {}",
                        set.len()
                    ),
                });
            };
            let label = format!("{key:?}={value}").to_lowercase();
            let when = match &entry.when {
                None | Some(Value::Null) => None,
                Some(v) => Some(lower_search("when", v, &Placeholders::new()).map_err(
                    |source| ProfileError::Condition {
                        origin: origin.to_string(),
                        logsource: label.clone(),
                        source,
                    },
                )?),
            };
            routes.push(LogSourceRoute {
                key: *key,
                value: value.to_ascii_lowercase(),
                when,
                fields: entry.fields.clone(),
            });
        }
        Ok(Profile {
            name: file.name,
            prefixes: file.field_prefixes,
            fields: file.fields,
            routes,
            timestamp: file.timestamp.unwrap_or_else(default_timestamp),
            host: file.host.unwrap_or_else(default_host),
        })
    }

    /// True if the profile routes by logsource at all.
    pub fn routes_logsources(&self) -> bool {
        !self.routes.is_empty()
    }

    /// The event condition for a rule's logsource.
    pub fn route(&self, logsource: &LogSource) -> Routing {
        if self.routes.is_empty() {
            return Routing::Events(None);
        }
        let mut conjuncts = Vec::new();
        for (key, value) in [
            (LogSourceKey::Product, &logsource.product),
            (LogSourceKey::Category, &logsource.category),
            (LogSourceKey::Service, &logsource.service),
        ] {
            let Some(value) = value else { continue };
            let matching: Vec<&LogSourceRoute> = self
                .routes
                .iter()
                .filter(|r| r.key == key && r.value == *value)
                .collect();
            if matching.is_empty() {
                return Routing::Unroutable(format!("{key:?}={value}").to_lowercase());
            }
            if matching.iter().any(|r| r.when.is_none()) {
                continue;
            }
            conjuncts.push(Cond::or(
                matching.iter().filter_map(|r| r.when.clone()).collect(),
            ));
        }
        if logsource.product.is_none()
            && logsource.category.is_none()
            && logsource.service.is_none()
        {
            return Routing::Unroutable("empty logsource".into());
        }
        Routing::Events(if conjuncts.is_empty() {
            None
        } else {
            Some(Cond::and(conjuncts))
        })
    }

    /// Candidate columns for a Sigma field in rules of `logsource`, in the
    /// order they are tried.
    pub fn columns_for(&self, field: &str, logsource: &LogSource) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |c: String| {
            if !out.contains(&c) {
                out.push(c);
            }
        };
        if let Some(explicit) = self.fields.get(field) {
            explicit.iter().cloned().for_each(&mut push);
        } else {
            for prefix in &self.prefixes {
                push(format!("{prefix}{field}"));
            }
        }
        for route in &self.routes {
            let applies = match route.key {
                LogSourceKey::Product => logsource.product.as_deref() == Some(route.value.as_str()),
                LogSourceKey::Category => {
                    logsource.category.as_deref() == Some(route.value.as_str())
                }
                LogSourceKey::Service => logsource.service.as_deref() == Some(route.value.as_str()),
            };
            if !applies {
                continue;
            }
            if let Some(extra) = route.fields.get(field) {
                for name in extra {
                    if self.fields.contains_key(name) {
                        // An extra candidate may itself be a mapped Sigma field.
                        for c in self.fields.get(name).into_iter().flatten() {
                            push(c.clone());
                        }
                    } else {
                        for prefix in &self.prefixes {
                            push(format!("{prefix}{name}"));
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_windows_profile_loads_and_routes() {
        let p = Profile::windows().unwrap();
        let ls = LogSource {
            product: Some("windows".into()),
            category: Some("process_creation".into()),
            service: None,
        };
        assert!(matches!(p.route(&ls), Routing::Events(Some(_))));
        let cols = p.columns_for("CommandLine", &ls);
        assert!(cols.contains(&"Event.EventData.CommandLine".to_string()));
        assert!(cols.contains(&"CommandLine".to_string()));
        let image = p.columns_for("Image", &ls);
        assert!(image.iter().any(|c| c.ends_with("NewProcessName")));
        let linux = LogSource {
            product: Some("linux".into()),
            ..LogSource::default()
        };
        assert!(matches!(p.route(&linux), Routing::Unroutable(_)));
    }

    #[test]
    fn entries_must_set_one_key() {
        let e = Profile::from_yaml("t", "name: t\nlogsources:\n  - {product: a, service: b}\n")
            .unwrap_err();
        assert!(e.to_string().contains("exactly one"));
        let e = Profile::from_yaml("t", "name: t\nbogus: 1\n").unwrap_err();
        assert!(e.to_string().contains("unknown field"));
    }
}
