//! The critical-process catalog: which organisations (actors) own which
//! systems (assets), and which critical business processes depend on them.
//! An alert is enriched with the assets its event touches, so it says which
//! processes are at risk and whom to warn.
//!
//! When an event's sender is known (the input's actor, HTTP token or client
//! certificate), its host names, applications and logsource are looked up
//! only among the sender's own assets and those of the organisations it
//! forwards for: host names are not unique across organisations. Addresses
//! are looked up in every organisation's networks, since an address in
//! another organisation's network (say, a failed logon's source) makes that
//! organisation one that must act.
//!
//! The file is YAML (see `fixtures/catalog.yaml`); unknown keys, dangling
//! references, duplicate ids and invalid CIDRs or globs are rejected at
//! load with the offending entry named.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use vagt_connectors::ConfigDuration;
use vagt_rules::LogSource;

use crate::warning::tlp::Tlp;

/// Why a catalog cannot be used.
#[derive(Debug, Error)]
pub enum CatalogError {
    /// The file cannot be read.
    #[error("cannot read catalog {path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not parse or has unknown keys.
    #[error("catalog {path}: {message}")]
    Parse {
        /// Path.
        path: String,
        /// Parser message with line and column.
        message: String,
    },
    /// The content is inconsistent.
    #[error("catalog {path}: {what}: {message}")]
    Invalid {
        /// Path.
        path: String,
        /// The entry, e.g. `asset 'hn-lab'`.
        what: String,
        /// What is wrong.
        message: String,
    },
}

/// How critical a business process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Criticality {
    /// Can wait.
    Low,
    /// Degraded service is tolerable for a while.
    Medium,
    /// Patient care is affected.
    High,
    /// Patient safety is at stake within minutes to hours.
    Critical,
}

impl Criticality {
    /// How many steps an alert's severity is raised above the rule level.
    pub fn severity_raise(self) -> u8 {
        match self {
            Criticality::Low | Criticality::Medium => 0,
            Criticality::High => 1,
            Criticality::Critical => 2,
        }
    }
}

/// Kinds of organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A region.
    Region,
    /// A hospital.
    Hospital,
    /// A municipality.
    Municipality,
    /// A general practitioner's clinic.
    GpClinic,
    /// A supplier.
    Supplier,
}

/// A critical business process.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    /// Stable id used in alerts (`critical_processes`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// How critical.
    pub criticality: Criticality,
    /// What to do when it is at risk.
    #[serde(default)]
    pub response: Option<Response>,
}

/// What to do when a process, asset or organisation is at risk: whom to
/// call, how fast, and the procedure.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    /// Whom to call: the on-call arrangement (a rota, a number).
    #[serde(default)]
    pub on_call: Option<String>,
    /// How soon the response must start (`15m`, `1h`).
    #[serde(default, serialize_with = "display_duration")]
    pub within: Option<ConfigDuration>,
    /// The procedure, step by step.
    #[serde(default)]
    pub steps: Vec<String>,
    /// Where the procedure is written down (a link).
    #[serde(default)]
    pub procedure: Option<String>,
}

fn display_duration<S: serde::Serializer>(
    d: &Option<ConfigDuration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&d.to_string()),
        None => s.serialize_none(),
    }
}

/// The response an alert carries, for one thing at risk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Guidance {
    /// What it is for: `process:operation`, `asset:hn-theatre`,
    /// `actor:rnv-hospital-nord`.
    #[serde(rename = "for")]
    pub subject: String,
    /// The process's, asset's or organisation's name.
    pub name: String,
    /// Whom to call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_call: Option<String>,
    /// How soon (`15m`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
    /// The procedure, step by step.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub steps: Vec<String>,
    /// Where the procedure is written down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub procedure: Option<String>,
}

impl Guidance {
    fn new(subject: String, name: &str, response: &Response) -> Guidance {
        Guidance {
            subject,
            name: name.to_string(),
            on_call: response.on_call.clone(),
            within: response.within.map(|d| d.to_string()),
            steps: response.steps.clone(),
            procedure: response.procedure.clone(),
        }
    }
}

/// An organisation that must act on alerts about its assets.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// Stable id used in alerts (`actor`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Kind of organisation.
    pub kind: ActorKind,
    /// Where warnings go.
    #[serde(default)]
    pub contact: Option<String>,
    /// Organisations whose logs this one forwards (a region's IT for its
    /// hospitals): their host names and applications count as its own.
    #[serde(default)]
    pub forwards_for: Vec<String>,
    /// Its response when none of the processes at risk names one.
    #[serde(default)]
    pub response: Option<Response>,
    /// The least restrictive TLP its alerts may have.
    #[serde(default)]
    pub tlp: Option<Tlp>,
}

/// What identifies an asset in an event. Any one suffices.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetMatch {
    /// Networks the asset's addresses are in.
    #[serde(default)]
    pub cidrs: Vec<String>,
    /// Case-insensitive globs on the event's host name.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Case-insensitive globs on the event's process image / application.
    #[serde(default)]
    pub applications: Vec<String>,
    /// Rule logsources whose events come from this asset.
    #[serde(default)]
    pub logsources: Vec<LogSourceSpec>,
}

/// A logsource in the catalog (a subset match: unset keys match anything).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSourceSpec {
    /// Product.
    #[serde(default)]
    pub product: Option<String>,
    /// Category.
    #[serde(default)]
    pub category: Option<String>,
    /// Service.
    #[serde(default)]
    pub service: Option<String>,
}

/// A system that processes depend on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetSpec {
    /// Stable id.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// The owning actor's id.
    pub actor: String,
    /// Ids of the processes that depend on it.
    #[serde(default)]
    pub processes: Vec<String>,
    /// How to recognise it in events.
    #[serde(rename = "match")]
    pub matcher: AssetMatch,
    /// Its own response, before its processes'.
    #[serde(default)]
    pub response: Option<Response>,
    /// The least restrictive TLP alerts about it may have.
    #[serde(default)]
    pub tlp: Option<Tlp>,
}

/// Event fields the catalog reads (Sigma names, mapped by the profile).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFields {
    /// Fields holding the host name.
    #[serde(default = "default_host_fields")]
    pub host: Vec<String>,
    /// Fields holding IP addresses of the asset.
    #[serde(default = "default_ip_fields")]
    pub ip: Vec<String>,
    /// Fields holding the application / process image.
    #[serde(default = "default_application_fields")]
    pub application: Vec<String>,
}

impl Default for CatalogFields {
    fn default() -> Self {
        CatalogFields {
            host: default_host_fields(),
            ip: default_ip_fields(),
            application: default_application_fields(),
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn default_host_fields() -> Vec<String> {
    strings(&["Computer", "Hostname", "host.name", "hostname", "host"])
}

fn default_ip_fields() -> Vec<String> {
    strings(&[
        "IpAddress",
        "SourceIp",
        "SourceAddress",
        "DestinationIp",
        "src_ip",
        "dest_ip",
        "host.ip",
    ])
}

fn default_application_fields() -> Vec<String> {
    strings(&[
        "Image",
        "NewProcessName",
        "Application",
        "ProcessName",
        "process.executable",
    ])
}

/// The catalog file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    /// Critical business processes.
    #[serde(default)]
    pub processes: Vec<Process>,
    /// Organisations.
    #[serde(default)]
    pub actors: Vec<Actor>,
    /// Systems.
    #[serde(default)]
    pub assets: Vec<AssetSpec>,
    /// Which event fields name hosts, addresses and applications.
    #[serde(default)]
    pub fields: CatalogFields,
}

#[derive(Debug)]
struct Asset {
    id: String,
    actor: usize,
    processes: Vec<usize>,
    cidrs: Vec<IpNet>,
    hosts: GlobSet,
    applications: GlobSet,
    logsources: Vec<LogSourceSpec>,
}

/// What an event tells the catalog about itself.
#[derive(Debug, Default, Clone)]
pub struct EventFacts {
    /// Host names found in the event.
    pub hosts: Vec<String>,
    /// IP addresses found in the event.
    pub ips: Vec<IpAddr>,
    /// Applications / images found in the event.
    pub applications: Vec<String>,
}

/// The result of looking an event up in the catalog.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Impact {
    /// Matched asset ids: those matched by host first, then by
    /// application, address, logsource; catalog order within each.
    pub assets: Vec<String>,
    /// Owners of the matched assets, in the order of `assets`, without repeats.
    pub actors: Vec<String>,
    /// Processes at risk, in the order of `assets`, without repeats.
    pub processes: Vec<String>,
    /// Highest criticality among them.
    pub max_criticality: Option<Criticality>,
}

/// A loaded, validated catalog.
#[derive(Debug)]
pub struct Catalog {
    file: CatalogFile,
    assets: Vec<Asset>,
    /// Actor id → the actors whose assets it may name by host,
    /// application or logsource: itself and those it forwards for.
    scopes: BTreeMap<String, Vec<usize>>,
}

fn glob_set(path: &str, what: &str, patterns: &[String]) -> Result<GlobSet, CatalogError> {
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        let glob = GlobBuilder::new(p)
            .case_insensitive(true)
            .literal_separator(false)
            .backslash_escape(false)
            .build()
            .map_err(|e| CatalogError::Invalid {
                path: path.into(),
                what: what.into(),
                message: format!("invalid glob '{p}': {e}"),
            })?;
        builder.add(glob);
    }
    builder.build().map_err(|e| CatalogError::Invalid {
        path: path.into(),
        what: what.into(),
        message: e.to_string(),
    })
}

impl Catalog {
    /// An empty catalog (alerts carry no actor and no processes).
    pub fn empty() -> Catalog {
        Catalog {
            file: CatalogFile {
                processes: Vec::new(),
                actors: Vec::new(),
                assets: Vec::new(),
                fields: CatalogFields::default(),
            },
            assets: Vec::new(),
            scopes: BTreeMap::new(),
        }
    }

    /// Reads and validates a catalog file.
    pub fn from_file(path: &Path) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Catalog::from_yaml(&path.display().to_string(), &text)
    }

    /// Parses and validates catalog YAML; `origin` names it in errors.
    pub fn from_yaml(origin: &str, text: &str) -> Result<Catalog, CatalogError> {
        let file: CatalogFile = serde_yaml_ng::from_str(text).map_err(|e| CatalogError::Parse {
            path: origin.into(),
            message: e.to_string(),
        })?;
        let invalid = |what: String, message: String| CatalogError::Invalid {
            path: origin.into(),
            what,
            message,
        };
        let mut seen = HashSet::new();
        for (kind, id) in file
            .processes
            .iter()
            .map(|p| ("process", &p.id))
            .chain(file.actors.iter().map(|a| ("actor", &a.id)))
            .chain(file.assets.iter().map(|a| ("asset", &a.id)))
        {
            if id.trim().is_empty() {
                return Err(invalid(
                    format!("{kind} with empty id"),
                    "ids must not be empty".into(),
                ));
            }
            if !seen.insert((kind, id.clone())) {
                return Err(invalid(format!("{kind} '{id}'"), "duplicate id".into()));
            }
        }
        let process_index: BTreeMap<&str, usize> = file
            .processes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.as_str(), i))
            .collect();
        let actor_index: BTreeMap<&str, usize> = file
            .actors
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.as_str(), i))
            .collect();
        let mut scopes = BTreeMap::new();
        for (index, actor) in file.actors.iter().enumerate() {
            let mut scope = vec![index];
            for other in &actor.forwards_for {
                let other = *actor_index.get(other.as_str()).ok_or_else(|| {
                    invalid(
                        format!("actor '{}'", actor.id),
                        format!("forwards_for names unknown actor '{other}'"),
                    )
                })?;
                scope.push(other);
            }
            scopes.insert(actor.id.clone(), scope);
        }
        let mut assets = Vec::with_capacity(file.assets.len());
        for spec in &file.assets {
            let what = format!("asset '{}'", spec.id);
            let actor = *actor_index
                .get(spec.actor.as_str())
                .ok_or_else(|| invalid(what.clone(), format!("unknown actor '{}'", spec.actor)))?;
            let processes = spec
                .processes
                .iter()
                .map(|p| {
                    process_index
                        .get(p.as_str())
                        .copied()
                        .ok_or_else(|| invalid(what.clone(), format!("unknown process '{p}'")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let cidrs = spec
                .matcher
                .cidrs
                .iter()
                .map(|c| {
                    c.parse::<IpNet>()
                        .or_else(|_| c.parse::<IpAddr>().map(IpNet::from))
                        .map_err(|_| invalid(what.clone(), format!("invalid cidr '{c}'")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let m = &spec.matcher;
            if m.cidrs.is_empty()
                && m.hosts.is_empty()
                && m.applications.is_empty()
                && m.logsources.is_empty()
            {
                return Err(invalid(
                    what,
                    "match needs at least one of cidrs, hosts, applications, logsources".into(),
                ));
            }
            assets.push(Asset {
                id: spec.id.clone(),
                actor,
                processes,
                cidrs,
                hosts: glob_set(origin, &what, &m.hosts)?,
                applications: glob_set(origin, &what, &m.applications)?,
                logsources: m.logsources.clone(),
            });
        }
        Ok(Catalog {
            file,
            assets,
            scopes,
        })
    }

    /// Event fields to read hosts, addresses and applications from.
    pub fn fields(&self) -> &CatalogFields {
        &self.file.fields
    }

    /// The responses an alert carries: the matched assets' own, then the
    /// processes at risk's, in the alert's order; the organisation's only
    /// when none of those names one.
    pub fn guidance(
        &self,
        assets: &[String],
        processes: &[String],
        actor: Option<&str>,
    ) -> Vec<Guidance> {
        let mut out = Vec::new();
        for id in assets {
            if let Some(asset) = self.asset(id) {
                if let Some(response) = &asset.response {
                    let name = asset.name.as_deref().unwrap_or(&asset.id);
                    out.push(Guidance::new(format!("asset:{id}"), name, response));
                }
            }
        }
        for id in processes {
            if let Some(process) = self.process(id) {
                if let Some(response) = &process.response {
                    out.push(Guidance::new(
                        format!("process:{id}"),
                        &process.name,
                        response,
                    ));
                }
            }
        }
        if out.is_empty() {
            if let Some(actor) = actor.and_then(|a| self.actor(a)) {
                if let Some(response) = &actor.response {
                    out.push(Guidance::new(
                        format!("actor:{}", actor.id),
                        &actor.name,
                        response,
                    ));
                }
            }
        }
        out
    }

    /// The most restrictive TLP the matched assets and the organisation
    /// set, if any.
    pub fn tlp(&self, assets: &[String], actor: Option<&str>) -> Option<Tlp> {
        let of_assets = assets.iter().filter_map(|id| self.asset(id)?.tlp);
        let of_actor = actor.and_then(|a| self.actor(a)).and_then(|a| a.tlp);
        of_assets.chain(of_actor).max()
    }

    /// An asset as configured, by id.
    pub fn asset(&self, id: &str) -> Option<&AssetSpec> {
        self.file.assets.iter().find(|a| a.id == id)
    }

    /// An actor by id.
    pub fn actor(&self, id: &str) -> Option<&Actor> {
        self.file.actors.iter().find(|a| a.id == id)
    }

    /// Whether the catalog declares no actors (then any sender is
    /// accepted and nothing is known about it).
    pub fn has_actors(&self) -> bool {
        !self.file.actors.is_empty()
    }

    /// Every actor.
    pub fn actors(&self) -> &[Actor] {
        &self.file.actors
    }

    /// Every critical process.
    pub fn processes(&self) -> &[Process] {
        &self.file.processes
    }

    /// A process by id.
    pub fn process(&self, id: &str) -> Option<&Process> {
        self.file.processes.iter().find(|p| p.id == id)
    }

    /// Counts for summaries: (processes, actors, assets).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.file.processes.len(),
            self.file.actors.len(),
            self.assets.len(),
        )
    }

    /// Which assets, actors and processes an event of a rule touches.
    /// `sender` is the organisation the event came from, if known: host
    /// names, applications and logsources then name only its own assets
    /// and those of the organisations it forwards for (none, if the
    /// catalog does not know it); addresses name anyone's.
    pub fn impact(
        &self,
        facts: &EventFacts,
        logsource: &LogSource,
        sender: Option<&str>,
    ) -> Impact {
        let scope = sender.map(|s| self.scopes.get(s).map_or(&[][..], Vec::as_slice));
        // The host the event happened on says most about who must act; an
        // application next; an address may be the other end of a
        // connection (a failed logon's source); a logsource is weakest.
        let mut matched: Vec<(u8, &Asset)> = Vec::new();
        for asset in &self.assets {
            let own = scope.is_none_or(|owners| owners.contains(&asset.actor));
            let priority = if own && facts.hosts.iter().any(|h| asset.hosts.is_match(h)) {
                0
            } else if own
                && facts
                    .applications
                    .iter()
                    .any(|a| asset.applications.is_match(a))
            {
                1
            } else if facts
                .ips
                .iter()
                .any(|ip| asset.cidrs.iter().any(|n| n.contains(ip)))
            {
                2
            } else if own
                && asset
                    .logsources
                    .iter()
                    .any(|spec| logsource_matches(spec, logsource))
            {
                3
            } else {
                continue;
            };
            matched.push((priority, asset));
        }
        matched.sort_by_key(|(priority, _)| *priority);
        let mut impact = Impact::default();
        for (_, asset) in matched {
            impact.assets.push(asset.id.clone());
            let actor = &self.file.actors[asset.actor].id;
            if !impact.actors.contains(actor) {
                impact.actors.push(actor.clone());
            }
            for p in &asset.processes {
                let process = &self.file.processes[*p];
                if !impact.processes.contains(&process.id) {
                    impact.processes.push(process.id.clone());
                }
                impact.max_criticality = impact.max_criticality.max(Some(process.criticality));
            }
        }
        impact
    }
}

fn logsource_matches(spec: &LogSourceSpec, ls: &LogSource) -> bool {
    let eq = |want: &Option<String>, have: &Option<String>| match want {
        None => true,
        Some(w) => have.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(w)),
    };
    eq(&spec.product, &ls.product)
        && eq(&spec.category, &ls.category)
        && eq(&spec.service, &ls.service)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOG: &str = r#"
processes:
  - {id: lab, name: Lab, criticality: critical}
  - {id: ehr, name: EHR, criticality: high}
actors:
  - {id: hosp, name: Hospital, kind: hospital}
  - {id: muni, name: Municipality, kind: municipality}
assets:
  - id: lab-analysers
    actor: hosp
    processes: [lab]
    match: {hosts: ["LAB-*"], cidrs: [10.1.0.0/16]}
  - id: ehr-clients
    actor: muni
    processes: [ehr, lab]
    match: {applications: ['*\ehr\*']}
"#;

    #[test]
    fn impact_by_host_ip_and_application() {
        let c = Catalog::from_yaml("t", CATALOG).unwrap();
        let facts = EventFacts {
            hosts: vec!["lab-07.example".into()],
            ips: vec![],
            applications: vec!["C:\\Program Files\\EHR\\client.exe".into()],
        };
        let impact = c.impact(&facts, &LogSource::default(), None);
        assert_eq!(impact.assets, vec!["lab-analysers", "ehr-clients"]);
        assert_eq!(impact.actors, vec!["hosp", "muni"]);
        assert_eq!(impact.processes, vec!["lab", "ehr"]);
        assert_eq!(impact.max_criticality, Some(Criticality::Critical));
        let by_ip = EventFacts {
            ips: vec!["10.1.2.3".parse().unwrap()],
            ..EventFacts::default()
        };
        assert_eq!(
            c.impact(&by_ip, &LogSource::default(), None).assets,
            vec!["lab-analysers"]
        );
        assert!(c
            .impact(&EventFacts::default(), &LogSource::default(), None)
            .assets
            .is_empty());
        // The host wins over an address of another asset, whatever the catalog order.
        let both = EventFacts {
            hosts: vec!["lab-07".into()],
            ips: vec!["10.1.2.3".parse().unwrap()],
            applications: vec!["D:\\ehr\\x.exe".into()],
        };
        let c2 = Catalog::from_yaml(
            "t",
            &CATALOG.replace(
                "match: {hosts: [\"LAB-*\"], cidrs: [10.1.0.0/16]}",
                "match: {cidrs: [10.1.0.0/16]}",
            ),
        )
        .unwrap();
        assert_eq!(
            c2.impact(&both, &LogSource::default(), None).actors,
            vec!["muni", "hosp"]
        );
    }

    #[test]
    fn a_known_sender_names_only_its_own_hosts_but_anyones_addresses() {
        let c = Catalog::from_yaml(
            "t",
            &CATALOG.replace(
                "  - {id: muni, name: Municipality, kind: municipality}",
                "  - {id: muni, name: Municipality, kind: municipality}\n  - {id: region, name: Region, kind: region, forwards_for: [hosp]}",
            ),
        )
        .unwrap();
        let lab_host = EventFacts {
            hosts: vec!["LAB-01".into()],
            ..EventFacts::default()
        };
        let none = LogSource::default();
        let assets = |facts: &EventFacts, sender| c.impact(facts, &none, sender).assets;
        assert_eq!(assets(&lab_host, Some("hosp")), vec!["lab-analysers"]);
        assert_eq!(assets(&lab_host, Some("region")), vec!["lab-analysers"]);
        assert!(assets(&lab_host, Some("muni")).is_empty());
        assert!(assets(&lab_host, Some("not-in-catalog")).is_empty());
        assert_eq!(assets(&lab_host, None), vec!["lab-analysers"]);
        let ehr = EventFacts {
            applications: vec!["D:\\ehr\\x.exe".into()],
            ..EventFacts::default()
        };
        assert!(assets(&ehr, Some("hosp")).is_empty());
        assert_eq!(assets(&ehr, Some("muni")), vec!["ehr-clients"]);
        // The municipality's event names an address in the hospital's
        // network: the hospital must act too.
        let lab_address = EventFacts {
            ips: vec!["10.1.2.3".parse().unwrap()],
            ..EventFacts::default()
        };
        let impact = c.impact(&lab_address, &none, Some("muni"));
        assert_eq!(impact.actors, vec!["hosp"]);
    }

    #[test]
    fn invalid_catalogs_name_the_entry() {
        let bad_forward = CATALOG.replace(
            "kind: municipality}",
            "kind: municipality, forwards_for: [nobody]}",
        );
        let e = Catalog::from_yaml("t", &bad_forward)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("actor 'muni'") && e.contains("forwards_for names unknown actor 'nobody'"),
            "{e}"
        );
        let bad_actor = CATALOG.replace("actor: muni", "actor: nobody");
        let e = Catalog::from_yaml("t", &bad_actor).unwrap_err().to_string();
        assert!(
            e.contains("asset 'ehr-clients'") && e.contains("unknown actor 'nobody'"),
            "{e}"
        );
        let bad_cidr = CATALOG.replace("10.1.0.0/16", "10.1.0.0/99");
        let e = Catalog::from_yaml("t", &bad_cidr).unwrap_err().to_string();
        assert!(e.contains("invalid cidr"), "{e}");
        let unknown_key = CATALOG.replace("criticality: high}", "criticality: high, colour: red}");
        let e = Catalog::from_yaml("t", &unknown_key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");
        let bad_level = CATALOG.replace("criticality: high}", "criticality: extreme}");
        assert!(Catalog::from_yaml("t", &bad_level).is_err());
    }
}
