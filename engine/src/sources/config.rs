//! What an input is: its source (a file, stdin, a followed file, a syslog
//! or HTTP listener, Kafka), the records' format, the organisation it
//! stamps on its events and where their time is.
//!
//! ```yaml
//! inputs:                         # each has exactly one of path, tail, syslog, http, kafka, archive
//!   - path: logs/dc01.jsonl       # a file or folder read to its end (.gz read transparently), "-" for stdin
//!     actor: rnv-hospital-nord    # optional: stamp this actor on its events' alerts
//!     format: json                # json | windows | syslog | cef | leef | zeek | suricata | logfmt
//!   - tail: /var/log/fw.log       # a file followed as it grows and across rotation
//!   - syslog: {listen: 0.0.0.0:6514, protocol: tls, tls: {cert: c.pem, key: k.pem}}
//!   - http: {listen: 0.0.0.0:8088, tokens: [{actor: rnv-hospital-nord, token_env: NORD_TOKEN}]}
//!   - kafka: {brokers: "k1:9092", topics: [events], group_id: vagt}
//!   - archive: {dir: archive/, since: 7d, until: 2026-03-01, actors: [rnv-hospital-nord]}
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use vagt_connectors::live::http::HttpConfig;
use vagt_connectors::live::kafka::KafkaConfig;
use vagt_connectors::live::syslog::SyslogConfig;
use vagt_connectors::Format;
use vagt_rules::window::TimestampSpec;

/// An input of the pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "InputFields")]
pub struct InputConfig {
    /// What it reads.
    pub source: SourceConfig,
    /// The records' format (default `json`).
    pub format: Format,
    /// Actor stamped on this input's events, overriding the catalog's
    /// (not allowed for `http`, whose tokens say it).
    pub actor: Option<String>,
    /// Where this input's event time is, overriding the profile's.
    pub timestamp: Option<TimestampSpec>,
}

/// What an input reads.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// A file read to its end (`.gz` decompressed), or a folder (every
    /// file in it and its subfolders, in name order, except names starting
    /// with `.`).
    File(PathBuf),
    /// Standard input (`path: "-"`).
    Stdin,
    /// A file followed as it grows and across rotation.
    Tail(PathBuf),
    /// A syslog listener (UDP, TCP or TLS).
    Syslog(SyslogConfig),
    /// An HTTP bulk ingest listener; the actor comes from each token.
    Http(HttpConfig),
    /// Kafka topics consumed in a consumer group.
    Kafka(KafkaConfig),
    /// The events of an archive (some organisations, some time), read to
    /// the end: a hunt.
    Archive(crate::archive::input::ArchiveInput),
}

/// An input as written: exactly one of `path`, `tail`, `syslog`, `http`
/// and `kafka`, with the settings every input has.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputFields {
    /// A file or folder read to its end, or `-` for stdin.
    #[serde(default)]
    path: Option<PathBuf>,
    /// A file followed.
    #[serde(default)]
    tail: Option<PathBuf>,
    /// A syslog listener.
    #[serde(default)]
    syslog: Option<SyslogConfig>,
    /// An HTTP listener.
    #[serde(default)]
    http: Option<HttpConfig>,
    /// A Kafka consumer.
    #[serde(default)]
    kafka: Option<KafkaConfig>,
    /// An archive's events.
    #[serde(default)]
    archive: Option<crate::archive::input::ArchiveInput>,
    #[serde(default)]
    format: Format,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    timestamp: Option<TimestampSpec>,
}

impl TryFrom<InputFields> for InputConfig {
    type Error = String;

    fn try_from(f: InputFields) -> Result<Self, String> {
        let mut sources = Vec::new();
        if let Some(p) = f.path {
            sources.push(if p.as_os_str() == "-" {
                SourceConfig::Stdin
            } else {
                SourceConfig::File(p)
            });
        }
        sources.extend(f.tail.map(SourceConfig::Tail));
        sources.extend(f.syslog.map(SourceConfig::Syslog));
        sources.extend(f.http.map(SourceConfig::Http));
        sources.extend(f.kafka.map(SourceConfig::Kafka));
        sources.extend(f.archive.map(SourceConfig::Archive));
        let source =
            match sources.len() {
                1 => sources.pop().expect("one"),
                0 => {
                    return Err(
                        "no source: give one of path, tail, syslog, http, kafka, archive".into(),
                    )
                }
                _ => return Err(
                    "several sources: give only one of path, tail, syslog, http, kafka, archive"
                        .into(),
                ),
            };
        Ok(InputConfig {
            source,
            format: f.format,
            actor: f.actor,
            timestamp: f.timestamp,
        })
    }
}

impl InputConfig {
    /// A file input (or stdin for `-`) in JSON.
    pub fn file(path: PathBuf) -> InputConfig {
        InputConfig {
            source: if path.as_os_str() == "-" {
                SourceConfig::Stdin
            } else {
                SourceConfig::File(path)
            },
            format: Format::default(),
            actor: None,
            timestamp: None,
        }
    }

    /// The file it reads to its end, if it does.
    pub fn file_path(&self) -> Option<&Path> {
        match &self.source {
            SourceConfig::File(p) => Some(p),
            _ => None,
        }
    }

    /// The name dead letters, metrics and the state file use.
    pub fn name(&self) -> String {
        match &self.source {
            SourceConfig::File(p) | SourceConfig::Tail(p) => p.display().to_string(),
            SourceConfig::Stdin => "stdin".into(),
            SourceConfig::Syslog(s) => s.name(),
            SourceConfig::Http(h) => h.name(),
            SourceConfig::Kafka(k) => k.name(),
            SourceConfig::Archive(a) => a.name(),
        }
    }

    /// Every organisation this input stamps on events: its `actor`, its
    /// HTTP tokens' and its TLS client certificates'.
    pub fn actors(&self) -> Vec<&str> {
        let mut actors: Vec<&str> = self.actor.as_deref().into_iter().collect();
        match &self.source {
            SourceConfig::Http(http) => {
                actors.extend(http.tokens.iter().map(|t| t.actor.as_str()));
            }
            SourceConfig::Syslog(syslog) => {
                if let Some(tls) = &syslog.tls {
                    actors.extend(tls.client_actors.values().map(String::as_str));
                }
            }
            _ => {}
        }
        actors
    }

    /// Paths relative to `base` (the config file's folder) made absolute.
    pub(crate) fn resolve_relative_to(&mut self, base: &Path) {
        match &mut self.source {
            SourceConfig::File(p) | SourceConfig::Tail(p) if p.is_relative() => {
                *p = base.join(&*p);
            }
            SourceConfig::Syslog(s) => {
                if let Some(tls) = s.tls.as_mut() {
                    tls.resolve_relative_to(base);
                }
            }
            SourceConfig::Http(h) => {
                if let Some(tls) = h.tls.as_mut() {
                    tls.resolve_relative_to(base);
                }
            }
            SourceConfig::Archive(a) if a.dir.is_relative() => {
                a.dir = base.join(&a.dir);
            }
            _ => {}
        }
    }

    /// Cross-field checks of one input.
    pub(crate) fn validate(&self) -> Result<(), String> {
        match &self.source {
            SourceConfig::Syslog(s) => {
                if self.actor.is_some() && s.tls.as_ref().is_some_and(|t| t.names_clients()) {
                    return Err("a syslog input with client_actors takes the actor from each client certificate, not from 'actor'".into());
                }
                s.validate()
            }
            SourceConfig::Http(h) => {
                if self.actor.is_some() {
                    return Err(
                        "http inputs take the actor from each token, not from 'actor'".into(),
                    );
                }
                if let Some(tls) = &h.tls {
                    tls.validate().map_err(|e| e.to_string())?;
                    if tls.names_clients() {
                        return Err(
                            "http inputs take the actor from each token, not from client_actors"
                                .into(),
                        );
                    }
                }
                h.digests().map(|_| ())
            }
            SourceConfig::Kafka(k) => k.validate(),
            SourceConfig::Archive(a) => {
                if self.actor.is_some() {
                    return Err("archive inputs give each event the organisation it was archived with, not 'actor'".into());
                }
                a.range().map(|_| ()).map_err(|e| e.to_string())
            }
            _ => Ok(()),
        }
    }
}
