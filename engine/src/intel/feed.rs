//! Reading an indicator feed: a CSV file (`kind,value[,valid_from,
//! valid_until,revoked]`), a plain list (one value per line, of the
//! feed's kind), or a STIX 2.1 bundle (its `indicator` objects with
//! simple patterns). Each indicator keeps its validity; what does not
//! read is named with its line or object, and the feed is refused whole.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What an indicator is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An IPv4 or IPv6 address or network.
    Ip,
    /// A domain (its subdomains match too).
    Domain,
    /// A URL (matched whole, or as a prefix ending at a `/`).
    Url,
    /// A file hash (MD5, SHA-1, SHA-256), as hexadecimal.
    Hash,
    /// An HTTP user agent, whole.
    UserAgent,
    /// A TLS certificate's fingerprint (SHA-1, SHA-256, MD5), as
    /// hexadecimal with or without colons.
    Certificate,
}

impl Kind {
    /// Its name in feeds and alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ip => "ip",
            Kind::Domain => "domain",
            Kind::Url => "url",
            Kind::Hash => "hash",
            Kind::UserAgent => "user_agent",
            Kind::Certificate => "certificate",
        }
    }

    fn parse(text: &str) -> Option<Kind> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "ip" | "ipv4" | "ipv6" | "ip-src" | "ip-dst" | "cidr" => Kind::Ip,
            "domain" | "hostname" | "fqdn" => Kind::Domain,
            "url" | "uri" => Kind::Url,
            "hash" | "md5" | "sha1" | "sha256" | "sha-1" | "sha-256" => Kind::Hash,
            "user_agent" | "user-agent" | "useragent" => Kind::UserAgent,
            "certificate" | "x509" | "x509-fingerprint" | "cert" | "tls_fingerprint" => {
                Kind::Certificate
            }
            _ => return None,
        })
    }
}

/// The format of a feed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `kind,value[,valid_from,valid_until,revoked]` with a header line.
    Csv,
    /// One value per line, all of the feed's `kind`; `#` starts a comment.
    Lines,
    /// A STIX 2.1 bundle.
    Stix,
    /// A MISP JSON export: an event (`{"Event": …}`), a list of them, or
    /// a search's `{"response": [...]}`; its attributes meant for
    /// detection (`to_ids`), and those in its objects.
    Misp,
}

/// One indicator, as the feed gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indicator {
    pub kind: Kind,
    /// As the feed wrote it.
    pub value: String,
    /// Milliseconds since the epoch; `None`: always.
    pub valid_from: Option<i64>,
    pub valid_until: Option<i64>,
    pub revoked: bool,
    /// Where in the feed (line, or STIX object id).
    pub origin: String,
}

impl Indicator {
    /// Whether it is in force at `now` (milliseconds).
    pub fn valid_at(&self, now: i64) -> bool {
        !self.revoked
            && self.valid_from.is_none_or(|f| f <= now)
            && self.valid_until.is_none_or(|u| now < u)
    }
}

/// Why a feed does not read.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The file cannot be read.
    #[error("feed {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line or object is not an indicator.
    #[error("feed {path}, {at}: {message}")]
    Bad {
        path: PathBuf,
        at: String,
        message: String,
    },
}

fn time(text: &str) -> Option<i64> {
    let text = text.trim();
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc().timestamp_millis())
        })
}

/// Reads the feed at `path` in `format`; `kind` is that of a `lines` feed.
///
/// # Errors
/// The file cannot be read, or an entry is not an indicator.
pub fn read(path: &Path, format: Format, kind: Option<Kind>) -> Result<Vec<Indicator>, FeedError> {
    let text = std::fs::read_to_string(path).map_err(|source| FeedError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |at: String, message: String| FeedError::Bad {
        path: path.to_path_buf(),
        at,
        message,
    };
    match format {
        Format::Lines => {
            let kind = kind.ok_or_else(|| {
                bad(
                    "its settings".into(),
                    "a `lines` feed needs its `kind`".into(),
                )
            })?;
            Ok(text
                .lines()
                .enumerate()
                .map(|(n, l)| (n, l.split('#').next().unwrap_or_default().trim()))
                .filter(|(_, l)| !l.is_empty())
                .map(|(n, l)| Indicator {
                    kind,
                    value: l.to_string(),
                    valid_from: None,
                    valid_until: None,
                    revoked: false,
                    origin: format!("line {}", n + 1),
                })
                .collect())
        }
        Format::Csv => read_csv(&text, &bad),
        Format::Stix => read_stix(&text, &bad),
        Format::Misp => read_misp(&text, &bad),
    }
}

fn read_csv(
    text: &str,
    bad: &dyn Fn(String, String) -> FeedError,
) -> Result<Vec<Indicator>, FeedError> {
    let mut out = Vec::new();
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Ok(out);
    };
    let columns: Vec<String> = header
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let at = |name: &str| columns.iter().position(|c| c == name);
    let (Some(kind_at), Some(value_at)) = (at("kind"), at("value")) else {
        return Err(bad(
            "line 1".into(),
            "the header must name `kind` and `value` columns".into(),
        ));
    };
    let (from_at, until_at, revoked_at) = (at("valid_from"), at("valid_until"), at("revoked"));
    for (n, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let where_ = format!("line {}", n + 1);
        let cell = |i: Option<usize>| {
            i.and_then(|i| cells.get(i))
                .copied()
                .filter(|c| !c.is_empty())
        };
        let kind_text = cell(Some(kind_at)).unwrap_or_default();
        let kind = Kind::parse(kind_text).ok_or_else(|| {
            bad(
                where_.clone(),
                format!("unknown kind '{kind_text}' (ip, domain, url, hash, user_agent)"),
            )
        })?;
        let value = cell(Some(value_at)).ok_or_else(|| bad(where_.clone(), "no value".into()))?;
        let when = |i: Option<usize>, what: &str| -> Result<Option<i64>, FeedError> {
            cell(i)
                .map(|t| {
                    time(t).ok_or_else(|| {
                        bad(
                            where_.clone(),
                            format!("{what} '{t}' is not a date or time"),
                        )
                    })
                })
                .transpose()
        };
        out.push(Indicator {
            kind,
            value: value.to_string(),
            valid_from: when(from_at, "valid_from")?,
            valid_until: when(until_at, "valid_until")?,
            revoked: cell(revoked_at).is_some_and(|r| r.eq_ignore_ascii_case("true") || r == "1"),
            origin: where_,
        });
    }
    Ok(out)
}

/// The comparisons of a simple STIX pattern, ORed:
/// `[ipv4-addr:value = '1.2.3.4' OR domain-name:value = 'x.example']`.
fn stix_pattern(pattern: &str) -> Option<Vec<(Kind, String)>> {
    let inner = pattern.trim().strip_prefix('[')?.strip_suffix(']')?;
    inner
        .split(" OR ")
        .map(|comparison| {
            let (path, value) = comparison.split_once('=')?;
            let value = value.trim().strip_prefix('\'')?.strip_suffix('\'')?;
            let kind = match path.trim() {
                "ipv4-addr:value" | "ipv6-addr:value" => Kind::Ip,
                "domain-name:value" => Kind::Domain,
                "url:value" => Kind::Url,
                p if p.starts_with("file:hashes.") => Kind::Hash,
                p if p.starts_with("x509-certificate:hashes.") => Kind::Certificate,
                "network-traffic:extensions.'http-request-ext'.request_header.'User-Agent'" => {
                    Kind::UserAgent
                }
                _ => return None,
            };
            Some((kind, value.replace("\\'", "'")))
        })
        .collect()
}

fn read_stix(
    text: &str,
    bad: &dyn Fn(String, String) -> FeedError,
) -> Result<Vec<Indicator>, FeedError> {
    let bundle: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| bad("the bundle".into(), format!("not JSON: {e}")))?;
    let objects = bundle["objects"]
        .as_array()
        .ok_or_else(|| bad("the bundle".into(), "no `objects` list".into()))?;
    stix_indicators(objects, bad)
}

/// The kind of a MISP attribute type, and which part of a composite
/// value (`filename|sha256`, `ip-dst|port`) is the indicator.
fn misp_kind(kind: &str) -> Option<(Kind, usize)> {
    Some(match kind {
        "ip-src" | "ip-dst" => (Kind::Ip, 0),
        "ip-src|port" | "ip-dst|port" => (Kind::Ip, 0),
        "domain" | "hostname" => (Kind::Domain, 0),
        "domain|ip" | "hostname|port" => (Kind::Domain, 0),
        "url" | "uri" | "link" => (Kind::Url, 0),
        "md5" | "sha1" | "sha256" | "sha512" | "imphash" => (Kind::Hash, 0),
        "filename|md5" | "filename|sha1" | "filename|sha256" => (Kind::Hash, 1),
        "user-agent" => (Kind::UserAgent, 0),
        "x509-fingerprint-sha1" | "x509-fingerprint-sha256" | "x509-fingerprint-md5" => {
            (Kind::Certificate, 0)
        }
        _ => return None,
    })
}

fn read_misp(
    text: &str,
    bad: &dyn Fn(String, String) -> FeedError,
) -> Result<Vec<Indicator>, FeedError> {
    let export: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| bad("the export".into(), format!("not JSON: {e}")))?;
    let events: Vec<&serde_json::Value> = match &export {
        serde_json::Value::Array(items) => items.iter().collect(),
        serde_json::Value::Object(o) if o.contains_key("response") => export["response"]
            .as_array()
            .map(|r| r.iter().collect())
            .unwrap_or_default(),
        _ => vec![&export],
    };
    let mut out = Vec::new();
    for (n, wrapped) in events.into_iter().enumerate() {
        let event = wrapped.get("Event").unwrap_or(wrapped);
        if !event.is_object() || event.get("Attribute").is_none() && event.get("Object").is_none() {
            return Err(bad(
                format!("event {}", n + 1),
                "not a MISP event (no Attribute or Object list)".into(),
            ));
        }
        let in_objects = event["Object"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|o| o["Attribute"].as_array().into_iter().flatten());
        let attributes = event["Attribute"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(in_objects);
        for a in attributes {
            // Only what the producer meant for detection.
            if a["to_ids"] == false {
                continue;
            }
            let Some((kind, part)) = a["type"].as_str().and_then(misp_kind) else {
                continue;
            };
            let value = a["value"].as_str().unwrap_or_default();
            let Some(value) = value.split('|').nth(part).filter(|v| !v.is_empty()) else {
                return Err(bad(
                    a["uuid"].as_str().unwrap_or("an attribute").to_string(),
                    format!("value {value:?} is not a {}", a["type"]),
                ));
            };
            let when = |field: &str| a[field].as_str().and_then(time);
            out.push(Indicator {
                kind,
                value: value.to_string(),
                valid_from: when("first_seen"),
                valid_until: when("last_seen"),
                revoked: a["deleted"] == true,
                origin: a["uuid"].as_str().unwrap_or("an attribute").to_string(),
            });
        }
    }
    Ok(out)
}

/// The indicators of STIX 2.1 `objects` (other types are passed over).
///
/// # Errors
/// An indicator's pattern is not one vagt matches.
pub fn stix_indicators(
    objects: &[serde_json::Value],
    bad: &dyn Fn(String, String) -> FeedError,
) -> Result<Vec<Indicator>, FeedError> {
    let mut out = Vec::new();
    for object in objects.iter().filter(|o| o["type"] == "indicator") {
        let id = object["id"].as_str().unwrap_or("an indicator").to_string();
        let pattern = object["pattern"].as_str().unwrap_or_default();
        let comparisons = stix_pattern(pattern).ok_or_else(|| {
            bad(
                id.clone(),
                format!("pattern {pattern:?} is not one vagt matches (ORed comparisons of addresses, domains, URLs, file hashes, user agents, certificate hashes)"),
            )
        })?;
        let when = |field: &str| object[field].as_str().and_then(time);
        for (kind, value) in comparisons {
            out.push(Indicator {
                kind,
                value,
                valid_from: when("valid_from"),
                valid_until: when("valid_until"),
                revoked: object["revoked"].as_bool().unwrap_or(false),
                origin: id.clone(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stix_patterns_of_the_kinds_vagt_matches_read() {
        assert_eq!(
            stix_pattern(
                "[ipv4-addr:value = '198.51.100.7' OR domain-name:value = 'evil.example']"
            ),
            Some(vec![
                (Kind::Ip, "198.51.100.7".into()),
                (Kind::Domain, "evil.example".into())
            ])
        );
        assert_eq!(
            stix_pattern("[file:hashes.'SHA-256' = 'abc']"),
            Some(vec![(Kind::Hash, "abc".into())])
        );
        assert_eq!(
            stix_pattern("[x509-certificate:hashes.'SHA-1' = 'AA:BB']"),
            Some(vec![(Kind::Certificate, "AA:BB".into())])
        );
        assert_eq!(stix_pattern("[process:name = 'x']"), None);
        assert_eq!(
            stix_pattern("[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [x]"),
            None
        );
    }

    #[test]
    fn a_misp_export_gives_its_detection_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("misp.json");
        let export = serde_json::json!({"response": [{"Event": {
            "info": "phishing wave",
            "Attribute": [
                {"uuid": "a1", "type": "ip-dst", "value": "198.51.100.7", "to_ids": true},
                {"uuid": "a2", "type": "domain", "value": "evil.example", "to_ids": false},
                {"uuid": "a3", "type": "url", "value": "http://x.example/k/", "to_ids": true, "deleted": true},
                {"uuid": "a4", "type": "comment", "value": "ignore", "to_ids": true},
                {"uuid": "a6", "type": "x509-fingerprint-sha1", "value": "AA:BB", "to_ids": true}
            ],
            "Object": [{"Attribute": [
                {"uuid": "a5", "type": "filename|sha256", "value": "evil.exe|ABCD", "to_ids": true, "last_seen": "2030-01-01T00:00:00Z"}
            ]}]
        }}]});
        std::fs::write(&path, export.to_string()).unwrap();
        let indicators = read(&path, Format::Misp, None).unwrap();
        let got: Vec<(Kind, &str, bool)> = indicators
            .iter()
            .map(|i| (i.kind, i.value.as_str(), i.revoked))
            .collect();
        assert_eq!(
            got,
            [
                (Kind::Ip, "198.51.100.7", false),
                (Kind::Url, "http://x.example/k/", true),
                (Kind::Certificate, "AA:BB", false),
                (Kind::Hash, "ABCD", false)
            ]
        );
        assert!(indicators[3].valid_until.is_some());
        std::fs::write(&path, "{\"nothing\": 1}").unwrap();
        let e = read(&path, Format::Misp, None).unwrap_err().to_string();
        assert!(e.contains("not a MISP event"), "{e}");
    }

    #[test]
    fn a_csv_feed_names_its_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(
            &path,
            "kind,value,valid_until\nip,10.0.0.1,2030-01-01\nbogus,x,\n",
        )
        .unwrap();
        let e = read(&path, Format::Csv, None).unwrap_err().to_string();
        assert!(
            e.contains("line 3") && e.contains("unknown kind 'bogus'"),
            "{e}"
        );
        std::fs::write(
            &path,
            "kind,value,valid_until,revoked\nip,10.0.0.1,2030-01-01,\ndomain,x.example,,true\n",
        )
        .unwrap();
        let read = read(&path, Format::Csv, None).unwrap();
        assert_eq!(read.len(), 2);
        assert!(read[0].valid_at(0) && !read[0].valid_at(time("2030-01-02").unwrap()));
        assert!(!read[1].valid_at(0));
    }
}
