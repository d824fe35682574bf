//! Routes: which outputs each alert goes to.
//!
//! ```yaml
//! routes:
//!   - name: surgery-at-hospitals
//!     match:
//!       actor_kinds: [hospital]
//!       processes: [operation]
//!     outputs: [region-soc]
//!     continue: true               # look further down too
//!   - name: serious
//!     match: {min_severity: high}
//!     outputs: [sector-kafka]
//!   - name: everything-else        # no match: every alert
//!     outputs: [archive]
//! ```
//! Routes are tried in order; an alert goes to the outputs of the first
//! route it matches, and of further ones while the routes it matched say
//! `continue` (as in Alertmanager). A route without `match` matches every
//! alert: the default. Within `match`, every key given must hold; within a
//! key's list, any value. An alert no route takes goes to the dead
//! letters, counted; with no routes at all, every alert goes to every
//! output. Names in routes are checked against the outputs and the
//! catalog when the config is loaded.

use std::collections::HashSet;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use vagt_rules::Level;

use crate::alert::AlertFacts;
use crate::catalog::{ActorKind, Catalog, Criticality};
use crate::sinks::config::OutputConfig;
use crate::warning::tlp::Tlp;

/// One route as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Shown in errors and by `vagt routes test`.
    pub name: String,
    /// What an alert must be to take this route (every alert if absent).
    #[serde(default, rename = "match")]
    pub when: Option<RouteMatch>,
    /// Where its alerts go.
    pub outputs: Vec<String>,
    /// Whether alerts it takes are offered to the routes after it.
    #[serde(default, rename = "continue")]
    pub keep_going: bool,
    /// The least restrictive TLP its alerts may have.
    #[serde(default)]
    pub tlp: Option<Tlp>,
    /// Repeats held back at its outputs.
    #[serde(default)]
    pub suppress: Option<crate::warning::suppress::SuppressSpec>,
}

/// What a route matches.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// The alert's actor (the organisation that must act) is one of these.
    #[serde(default)]
    pub actors: Vec<String>,
    /// The actor is of one of these kinds.
    #[serde(default)]
    pub actor_kinds: Vec<ActorKind>,
    /// The alert has an actor (true) or none (false).
    #[serde(default)]
    pub has_actor: Option<bool>,
    /// One of the critical processes at risk is among these.
    #[serde(default)]
    pub processes: Vec<String>,
    /// One of the processes at risk has one of these criticalities.
    #[serde(default)]
    pub criticality: Vec<Criticality>,
    /// One of the processes at risk is at least this critical.
    #[serde(default)]
    pub min_criticality: Option<Criticality>,
    /// The alert's severity is one of these.
    #[serde(default)]
    pub severity: Vec<Level>,
    /// The alert's severity is at least this.
    #[serde(default)]
    pub min_severity: Option<Level>,
    /// The rule's level is one of these.
    #[serde(default)]
    pub level: Vec<Level>,
    /// The rule's level is at least this.
    #[serde(default)]
    pub min_level: Option<Level>,
    /// One of the rule's tags matches one of these globs
    /// (case-insensitive): `attack.credential_access`, `attack.t1003*`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// One of the rule's ATT&CK techniques is one of these or a
    /// sub-technique of one (`T1003` takes `T1003.001`).
    #[serde(default)]
    pub techniques: Vec<String>,
}

/// A route that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct RouteError {
    /// The setting: `routes[1].match.processes`.
    pub key: String,
    /// What is wrong, naming the route.
    pub message: String,
}

/// One condition of a compiled route (or suppression policy).
#[derive(Debug)]
pub enum Condition {
    ActorIn(HashSet<String>),
    HasActor(bool),
    /// Any process at risk is in the set.
    ProcessIn(HashSet<String>),
    Severity(Vec<Level>),
    MinSeverity(Level),
    Level(Vec<Level>),
    MinLevel(Level),
    Tags(GlobSet),
    Techniques(Vec<String>),
}

impl Condition {
    /// Whether the alert meets it.
    pub fn holds(&self, alert: &AlertFacts<'_>) -> bool {
        match self {
            Condition::ActorIn(ids) => alert.actor.is_some_and(|a| ids.contains(a)),
            Condition::HasActor(has) => alert.actor.is_some() == *has,
            Condition::ProcessIn(ids) => alert.processes.iter().any(|p| ids.contains(*p)),
            Condition::Severity(levels) => levels.contains(&alert.severity),
            Condition::MinSeverity(min) => alert.severity >= *min,
            Condition::Level(levels) => levels.contains(&alert.level),
            Condition::MinLevel(min) => alert.level >= *min,
            Condition::Tags(globs) => alert.tags.iter().any(|t| globs.is_match(t)),
            Condition::Techniques(wanted) => alert.techniques.iter().any(|t| {
                let t = t.to_ascii_uppercase();
                wanted.iter().any(|w| {
                    t == *w
                        || (t.starts_with(w.as_str()) && t.as_bytes().get(w.len()) == Some(&b'.'))
                })
            }),
        }
    }
}

#[derive(Debug)]
struct Route {
    name: String,
    conditions: Vec<Condition>,
    outputs: Vec<usize>,
    keep_going: bool,
    tlp: Option<Tlp>,
}

/// The compiled routes.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// With no routes: every output.
    everything: Option<Vec<usize>>,
}

/// Where an alert goes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Routing<'t> {
    /// Output indices, in configuration order, each once.
    pub outputs: Vec<usize>,
    /// The routes it took.
    pub routes: Vec<&'t str>,
    /// Their indices, with the outputs each leads to.
    pub taken: Vec<(usize, &'t [usize])>,
    /// The most restrictive TLP the routes it took set.
    pub tlp: Option<Tlp>,
}

impl RouteTable {
    /// Compiles the routes over the outputs (by name) and the catalog.
    ///
    /// # Errors
    /// A route names an unknown output, actor or process, a bad glob, or
    /// can never be reached.
    pub fn compile(
        routes: &[RouteConfig],
        outputs: &[OutputConfig],
        catalog: &Catalog,
    ) -> Result<RouteTable, RouteError> {
        if routes.is_empty() {
            return Ok(RouteTable {
                routes: Vec::new(),
                everything: Some((0..outputs.len()).collect()),
            });
        }
        let mut compiled = Vec::with_capacity(routes.len());
        let mut names = HashSet::new();
        for (i, route) in routes.iter().enumerate() {
            let error = |key: &str, message: String| RouteError {
                key: format!("routes[{i}]{key}"),
                message: format!("({}): {message}", route.name),
            };
            if route.name.trim().is_empty() {
                return Err(error("", "name is empty".into()));
            }
            if !names.insert(route.name.as_str()) {
                return Err(error("", "another route has this name".into()));
            }
            if let Some(earlier) = compiled
                .iter()
                .find(|r: &&Route| r.conditions.is_empty() && !r.keep_going)
            {
                return Err(error(
                    "",
                    format!(
                        "never reached: route '{}' before it takes every alert (give it a match, or continue: true)",
                        earlier.name
                    ),
                ));
            }
            if route.outputs.is_empty() {
                return Err(error(".outputs", "name at least one output".into()));
            }
            let mut indices = Vec::new();
            for name in &route.outputs {
                let Some(index) = outputs.iter().position(|o| &o.name == name) else {
                    let known: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
                    return Err(error(
                        ".outputs",
                        format!("no output named '{name}' (outputs: {})", known.join(", ")),
                    ));
                };
                if !indices.contains(&index) {
                    indices.push(index);
                }
            }
            let conditions = match &route.when {
                Some(when) => conditions(when, catalog)
                    .map_err(|(key, m)| error(&format!(".match.{key}"), m))?,
                None => Vec::new(),
            };
            compiled.push(Route {
                name: route.name.clone(),
                conditions,
                outputs: indices,
                keep_going: route.keep_going,
                tlp: route.tlp,
            });
        }
        Ok(RouteTable {
            routes: compiled,
            everything: None,
        })
    }

    /// Where `alert` goes; no outputs if no route takes it.
    pub fn route(&self, alert: &AlertFacts<'_>) -> Routing<'_> {
        let mut routing = Routing::default();
        if let Some(all) = &self.everything {
            routing.outputs.clone_from(all);
            return routing;
        }
        for (index, route) in self.routes.iter().enumerate() {
            if !route.conditions.iter().all(|c| c.holds(alert)) {
                continue;
            }
            routing.routes.push(&route.name);
            routing.taken.push((index, &route.outputs));
            routing.tlp = routing.tlp.max(route.tlp);
            for &o in &route.outputs {
                if !routing.outputs.contains(&o) {
                    routing.outputs.push(o);
                }
            }
            if !route.keep_going {
                break;
            }
        }
        routing.outputs.sort_unstable();
        routing
    }
}

/// The conditions of a `match`, or `(key, message)`.
pub(crate) fn conditions(
    when: &RouteMatch,
    catalog: &Catalog,
) -> Result<Vec<Condition>, (String, String)> {
    let mut out = Vec::new();
    if !when.actors.is_empty() {
        if catalog.has_actors() {
            if let Some(unknown) = when.actors.iter().find(|a| catalog.actor(a).is_none()) {
                return Err((
                    "actors".into(),
                    format!("'{unknown}' is not an actor in the catalog"),
                ));
            }
        }
        out.push(Condition::ActorIn(when.actors.iter().cloned().collect()));
    }
    if !when.actor_kinds.is_empty() {
        let ids = catalog
            .actors()
            .iter()
            .filter(|a| when.actor_kinds.contains(&a.kind))
            .map(|a| a.id.clone())
            .collect();
        out.push(Condition::ActorIn(ids));
    }
    if let Some(has) = when.has_actor {
        out.push(Condition::HasActor(has));
    }
    if !when.processes.is_empty() {
        if !catalog.processes().is_empty() {
            if let Some(unknown) = when.processes.iter().find(|p| catalog.process(p).is_none()) {
                return Err((
                    "processes".into(),
                    format!("'{unknown}' is not a process in the catalog"),
                ));
            }
        }
        out.push(Condition::ProcessIn(
            when.processes.iter().cloned().collect(),
        ));
    }
    let by_criticality = |keep: &dyn Fn(Criticality) -> bool| -> HashSet<String> {
        catalog
            .processes()
            .iter()
            .filter(|p| keep(p.criticality))
            .map(|p| p.id.clone())
            .collect()
    };
    if !when.criticality.is_empty() {
        out.push(Condition::ProcessIn(by_criticality(&|c| {
            when.criticality.contains(&c)
        })));
    }
    if let Some(min) = when.min_criticality {
        out.push(Condition::ProcessIn(by_criticality(&|c| c >= min)));
    }
    if !when.severity.is_empty() {
        out.push(Condition::Severity(when.severity.clone()));
    }
    if let Some(min) = when.min_severity {
        out.push(Condition::MinSeverity(min));
    }
    if !when.level.is_empty() {
        out.push(Condition::Level(when.level.clone()));
    }
    if let Some(min) = when.min_level {
        out.push(Condition::MinLevel(min));
    }
    if !when.tags.is_empty() {
        let mut globs = GlobSetBuilder::new();
        for tag in &when.tags {
            let glob = GlobBuilder::new(tag)
                .case_insensitive(true)
                .build()
                .map_err(|e| ("tags".to_string(), format!("'{tag}' is not a glob: {e}")))?;
            globs.add(glob);
        }
        let globs = globs
            .build()
            .map_err(|e| ("tags".to_string(), e.to_string()))?;
        out.push(Condition::Tags(globs));
    }
    if !when.techniques.is_empty() {
        let mut wanted = Vec::new();
        for t in &when.techniques {
            let upper = t.trim().to_ascii_uppercase();
            let valid = upper.len() >= 5
                && upper.starts_with('T')
                && upper[1..]
                    .split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if !valid {
                return Err((
                    "techniques".into(),
                    format!("'{t}' is not an ATT&CK technique id (T1003, T1059.001)"),
                ));
            }
            wanted.push(upper);
        }
        out.push(Condition::Techniques(wanted));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::from_yaml(
            "test",
            "processes:\n  - {id: operation, name: Surgery, criticality: critical}\n  - {id: booking, name: Booking, criticality: low}\nactors:\n  - {id: nord, name: Nord, kind: hospital}\n  - {id: fjord, name: Fjord, kind: municipality}\nassets: []\n",
        )
        .unwrap()
    }

    fn outputs(names: &[&str]) -> Vec<OutputConfig> {
        names
            .iter()
            .map(|n| serde_yaml_ng::from_str(&format!("{{name: {n}, type: stdout}}")).unwrap())
            .collect()
    }

    fn routes(yaml: &str) -> Vec<RouteConfig> {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn facts<'a>(
        actor: Option<&'a str>,
        severity: Level,
        processes: Vec<&'a str>,
        techniques: Vec<&'a str>,
    ) -> AlertFacts<'a> {
        AlertFacts {
            id: "a",
            actor,
            severity,
            level: Level::Medium,
            rule_id: "r",
            processes,
            tags: vec!["attack.credential_access"],
            techniques,
            tlp: None,
        }
    }

    #[test]
    fn routes_match_in_order_with_continue_and_a_default() {
        let table = RouteTable::compile(
            &routes(
                "- {name: surgery, match: {actor_kinds: [hospital], processes: [operation]}, outputs: [soc], continue: true}\n- {name: serious, match: {min_severity: high}, outputs: [kafka]}\n- {name: creds, match: {techniques: [T1003], tags: ['attack.credential_*']}, outputs: [kafka, archive]}\n- {name: rest, outputs: [archive]}\n",
            ),
            &outputs(&["soc", "kafka", "archive"]),
            &catalog(),
        )
        .unwrap();
        let r = table.route(&facts(
            Some("nord"),
            Level::Critical,
            vec!["operation"],
            vec![],
        ));
        assert_eq!(
            (r.outputs, r.routes),
            (vec![0, 1], vec!["surgery", "serious"])
        );
        let r = table.route(&facts(
            Some("fjord"),
            Level::Low,
            vec!["operation"],
            vec!["T1003.001"],
        ));
        assert_eq!((r.outputs, r.routes), (vec![1, 2], vec!["creds"]));
        let r = table.route(&facts(None, Level::Low, vec![], vec!["T10031"]));
        assert_eq!((r.outputs, r.routes), (vec![2], vec!["rest"]));
    }

    #[test]
    fn without_routes_every_alert_goes_everywhere_and_unmatched_alerts_go_nowhere() {
        let all = RouteTable::compile(&[], &outputs(&["a", "b"]), &catalog()).unwrap();
        assert_eq!(
            all.route(&facts(None, Level::Low, vec![], vec![])).outputs,
            [0, 1]
        );
        let some = RouteTable::compile(
            &routes("- {name: crit, match: {min_criticality: critical}, outputs: [a]}"),
            &outputs(&["a", "b"]),
            &catalog(),
        )
        .unwrap();
        assert!(some
            .route(&facts(Some("nord"), Level::High, vec!["booking"], vec![]))
            .outputs
            .is_empty());
        assert_eq!(
            some.route(&facts(Some("nord"), Level::Low, vec!["operation"], vec![]))
                .outputs,
            [0]
        );
    }

    #[test]
    fn errors_name_the_route_and_field() {
        let cases = [
            (
                "- {name: x, outputs: [nope]}",
                "routes[0].outputs: (x): no output named 'nope'",
            ),
            (
                "- {name: x, match: {processes: [operatoin]}, outputs: [a]}",
                "routes[0].match.processes: (x): 'operatoin' is not a process",
            ),
            (
                "- {name: x, match: {actors: [nrd]}, outputs: [a]}",
                "routes[0].match.actors: (x): 'nrd' is not an actor",
            ),
            (
                "- {name: x, match: {techniques: [credential]}, outputs: [a]}",
                "routes[0].match.techniques",
            ),
            (
                "- {name: all, outputs: [a]}\n- {name: y, outputs: [a]}",
                "routes[1]: (y): never reached: route 'all'",
            ),
            ("- {name: x, outputs: []}", "name at least one output"),
            (
                "- {name: x, outputs: [a]}\n- {name: x, match: {has_actor: true}, outputs: [a]}",
                "another route has this name",
            ),
        ];
        for (yaml, expected) in cases {
            let e = RouteTable::compile(&routes(yaml), &outputs(&["a"]), &catalog()).unwrap_err();
            assert!(e.to_string().contains(expected), "{yaml}: {e}");
        }
        let e = serde_yaml_ng::from_str::<Vec<RouteConfig>>(
            "- {name: x, match: {severty: high}, outputs: [a]}",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `severty`"), "{e}");
    }
}
