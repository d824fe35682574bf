//! Parsers: each log format, chosen per input, turns one record into the
//! JSON object the [`crate::BatchDecoder`] reads, so that every format ends
//! up as the same kind of Arrow batch.
//!
//! ```text
//!  record (a line, a datagram, a Kafka message)
//!      │
//!      ├─ json, windows, suricata ──► the JSON text itself (checked for the
//!      │                              format's key fields, not rewritten)
//!      ├─ zeek ──► JSON lines as they are; TSV lines with the stream's
//!      │           `#fields`/`#types` header into typed values
//!      └─ syslog, cef, leef, logfmt ──► fields, written as a JSON object
//!                                       with the text kept in `event.original`
//! ```
//!
//! The column names each format produces are listed in the README
//! ("Formats and their columns"). A record a parser cannot read comes back
//! as the reason, which the caller turns into a dead letter; a Zeek header
//! line or a blank line yields nothing.
//!
//! ```
//! use std::sync::Arc;
//! use vagt_connectors::{Format, Origin, Parsed, Record, RecordParser};
//!
//! let mut parser = RecordParser::new(Format::Logfmt);
//! let source: Arc<str> = Arc::from("example");
//! let record = Record {
//!     bytes: b"level=warn user=\"ann b\" attempts=3".to_vec(),
//!     origin: Origin { line: 1, offset: 0 },
//! };
//! let Parsed::Text(text) = parser.parse(&record, &source).unwrap() else { panic!() };
//! let json: serde_json::Value = serde_json::from_str(&text).unwrap();
//! assert_eq!(json["user"], "ann b");
//! assert_eq!(json["attempts"], 3);
//! ```

mod cef;
mod json;
mod kv;
mod leef;
mod object;
mod syslog;
mod zeek;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::framing::Record;
use object::Object;

/// A log format, chosen per input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// JSON objects in any layout (lines, pretty-printed, arrays).
    #[default]
    Json,
    /// Windows events as JSON, nested (`Event.System.EventID`) or flat
    /// (`EventID`); an object that is neither is refused.
    Windows,
    /// Syslog, RFC 5424 (with structured data) or RFC 3164.
    Syslog,
    /// ArcSight Common Event Format, alone or after a syslog header.
    Cef,
    /// IBM QRadar Log Event Extended Format 1.0 and 2.0, alone or after a
    /// syslog header.
    Leef,
    /// Zeek logs: TSV with their `#fields` header, or JSON lines.
    Zeek,
    /// Suricata EVE JSON.
    Suricata,
    /// `key=value` pairs (logfmt).
    Logfmt,
}

impl Format {
    /// All formats, as named in configs.
    pub const ALL: [Format; 8] = [
        Format::Json,
        Format::Windows,
        Format::Syslog,
        Format::Cef,
        Format::Leef,
        Format::Zeek,
        Format::Suricata,
        Format::Logfmt,
    ];

    /// Whether a stream of this format is split into JSON objects (any
    /// layout) rather than into lines.
    pub fn json_framed(self) -> bool {
        matches!(self, Format::Json | Format::Windows | Format::Suricata)
    }

    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Windows => "windows",
            Format::Syslog => "syslog",
            Format::Cef => "cef",
            Format::Leef => "leef",
            Format::Zeek => "zeek",
            Format::Suricata => "suricata",
            Format::Logfmt => "logfmt",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(name: &str) -> Result<Format, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                format!("unknown format '{name}' (one of {})", names.join(", "))
            })
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a record parses into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The record is a JSON object of the format, to decode as it is.
    Same,
    /// The JSON object text of the parsed fields.
    Text(String),
    /// The record carries no event (a blank line, a Zeek header line).
    Nothing,
}

/// Turns records of one format into JSON object records. Holds the state a
/// format needs across records (the Zeek header of each stream).
#[derive(Debug)]
pub struct RecordParser {
    format: Format,
    zeek_headers: HashMap<Arc<str>, zeek::Header>,
}

impl RecordParser {
    /// A parser for `format`.
    pub fn new(format: Format) -> Self {
        RecordParser {
            format,
            zeek_headers: HashMap::new(),
        }
    }

    /// The format parsed.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Parses one record of the stream `source`.
    ///
    /// # Errors
    /// The record is not valid in the format; the message says where and
    /// why.
    pub fn parse(&mut self, record: &Record, source: &Arc<str>) -> Result<Parsed, String> {
        self.parse_bytes(&record.bytes, source)
    }

    /// As [`RecordParser::parse`], for a record's text.
    ///
    /// # Errors
    /// As [`RecordParser::parse`].
    pub fn parse_bytes(&mut self, bytes: &[u8], source: &Arc<str>) -> Result<Parsed, String> {
        match self.format {
            Format::Json => Ok(Parsed::Same),
            Format::Windows => {
                json::checked(bytes, &["Event", "EventID", "winlog"], "a Windows event")
            }
            Format::Suricata => json::checked(bytes, &["event_type"], "a Suricata EVE event"),
            Format::Syslog => text(bytes, syslog::parse),
            Format::Cef => text(bytes, cef::parse),
            Format::Leef => text(bytes, leef::parse),
            Format::Logfmt => text(bytes, kv::parse),
            Format::Zeek => self.zeek(bytes, source),
        }
    }

    fn zeek(&mut self, bytes: &[u8], source: &Arc<str>) -> Result<Parsed, String> {
        let line = text_line(bytes)?;
        if line.trim_start().starts_with('{') {
            return json::checked(bytes, &["ts"], "a Zeek JSON log entry");
        }
        if let Some(directive) = line.strip_prefix('#') {
            let header = self.zeek_headers.entry(source.clone()).or_default();
            header.directive(directive)?;
            return Ok(Parsed::Nothing);
        }
        if line.trim().is_empty() {
            return Ok(Parsed::Nothing);
        }
        let header = self
            .zeek_headers
            .get(source)
            .filter(|h| h.ready())
            .ok_or("Zeek TSV line before its #fields header (or not a Zeek log)")?;
        Ok(Parsed::Text(header.parse(line)?.finish(line)))
    }

    /// Forgets what was learnt about a stream (a closed connection, a
    /// rotated file).
    pub fn forget(&mut self, source: &Arc<str>) {
        self.zeek_headers.remove(source);
    }
}

/// The record's text without its line ending (and byte order mark).
fn text_line(bytes: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("invalid UTF-8 at byte {} of the record", e.valid_up_to()))?;
    Ok(text
        .trim_end_matches(['\r', '\n'])
        .trim_start_matches('\u{feff}'))
}

/// Parses a one-line text record with `parse`; blank lines carry nothing.
fn text(
    bytes: &[u8],
    parse: impl FnOnce(&str) -> Result<Object, String>,
) -> Result<Parsed, String> {
    let line = text_line(bytes)?;
    if line.trim().is_empty() {
        return Ok(Parsed::Nothing);
    }
    Ok(Parsed::Text(parse(line)?.finish(line)))
}

/// A quoted string whose opening quote was consumed: its value, with each
/// character after a backslash handed to `escaped` to add, and the bytes
/// used including the closing quote; `None` if it is not closed.
fn quoted(text: &str, escaped: impl Fn(char, &mut String)) -> Option<(String, usize)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, i + 1)),
            '\\' => escaped(chars.next()?.1, &mut value),
            _ => value.push(c),
        }
    }
    None
}
