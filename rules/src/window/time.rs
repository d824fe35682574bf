//! Event time: which column holds an event's timestamp and how to read
//! it. A profile declares it for its sources (the built-in Windows profile
//! knows both Windows shapes); an input can override it.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use chrono::{DateTime, NaiveDateTime};
use serde::Deserialize;

use super::spec::Millis;

/// How timestamps are written: `auto`, `rfc3339`, `unix_seconds`,
/// `unix_millis`, or a chrono pattern such as `"%d/%m/%Y %H:%M:%S"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum TimeFormat {
    /// RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff]` (UTC), or a Unix time in
    /// seconds or milliseconds (told apart by magnitude).
    #[default]
    Auto,
    /// RFC 3339 / ISO 8601 with an offset.
    Rfc3339,
    /// Seconds since the Unix epoch (fractions allowed).
    UnixSeconds,
    /// Milliseconds since the Unix epoch.
    UnixMillis,
    /// A chrono `strftime` pattern, read as UTC unless it has an offset.
    Pattern(String),
}

impl TryFrom<String> for TimeFormat {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Ok(match text.as_str() {
            "auto" => TimeFormat::Auto,
            "rfc3339" => TimeFormat::Rfc3339,
            "unix_seconds" => TimeFormat::UnixSeconds,
            "unix_millis" => TimeFormat::UnixMillis,
            p if p.contains('%') => TimeFormat::Pattern(text),
            other => {
                return Err(format!(
                    "unknown time format '{other}' (auto, rfc3339, unix_seconds, unix_millis, or a pattern with % fields)"
                ))
            }
        })
    }
}

/// Where an event's time is and how it is written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampSpec {
    /// Columns to try, in order; the first present and non-null is used.
    pub fields: Vec<String>,
    /// Their format.
    #[serde(default)]
    pub format: TimeFormat,
}

/// The earliest event time accepted: year 1.
pub const MIN_EVENT_TIME: Millis = -62_135_596_800_000;
/// The latest event time accepted: the end of year 9999.
pub const MAX_EVENT_TIME: Millis = 253_402_300_799_999;

/// Why a row has no usable event time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// None of the fields is present.
    #[error("event has no timestamp (looked for {0})")]
    Missing(String),
    /// The value cannot be read in the declared format.
    #[error("timestamp '{value}' in {field} is not {format}")]
    Unparsable {
        /// Column.
        field: String,
        /// The value.
        value: String,
        /// What was expected.
        format: String,
    },
}

impl TimestampSpec {
    /// Reads the time of each of `rows`.
    pub fn read(&self, batch: &RecordBatch, rows: &[usize]) -> Vec<Result<Millis, TimeError>> {
        let schema = batch.schema();
        let columns: Vec<(&String, &dyn Array)> = self
            .fields
            .iter()
            .filter_map(|f| {
                schema
                    .column_with_name(f)
                    .map(|(i, _)| (f, batch.column(i).as_ref()))
            })
            .collect();
        rows.iter()
            .map(|&row| {
                for (name, array) in &columns {
                    if array.is_null(row) {
                        continue;
                    }
                    return self
                        .parse_cell(*array, row)
                        .filter(|t| (MIN_EVENT_TIME..=MAX_EVENT_TIME).contains(t))
                        .ok_or_else(|| TimeError::Unparsable {
                            field: (*name).clone(),
                            value: cell_text(*array, row),
                            format: self.format_name(),
                        });
                }
                Err(TimeError::Missing(self.fields.join(", ")))
            })
            .collect()
    }

    fn format_name(&self) -> String {
        match &self.format {
            TimeFormat::Auto => "a recognised timestamp".into(),
            TimeFormat::Rfc3339 => "RFC 3339".into(),
            TimeFormat::UnixSeconds => "Unix seconds".into(),
            TimeFormat::UnixMillis => "Unix milliseconds".into(),
            TimeFormat::Pattern(p) => format!("in the format '{p}'"),
        }
    }

    fn parse_cell(&self, array: &dyn Array, row: usize) -> Option<Millis> {
        let number = match array.data_type() {
            DataType::Int64 => Some(array.as_primitive::<Int64Type>().value(row) as f64),
            DataType::UInt64 => Some(array.as_primitive::<UInt64Type>().value(row) as f64),
            DataType::Float64 => Some(array.as_primitive::<Float64Type>().value(row)),
            DataType::Utf8 => None,
            _ => return None,
        };
        if let Some(n) = number {
            return self.millis_of_number(n);
        }
        self.parse_text(array.as_string::<i32>().value(row).trim())
    }

    fn millis_of_number(&self, n: f64) -> Option<Millis> {
        if !n.is_finite() {
            return None;
        }
        match self.format {
            TimeFormat::UnixSeconds => Some((n * 1000.0).round() as i64),
            TimeFormat::UnixMillis => Some(n.round() as i64),
            // Seconds until the year 5138; beyond that, milliseconds.
            TimeFormat::Auto if n.abs() < 1e11 => Some((n * 1000.0).round() as i64),
            TimeFormat::Auto => Some(n.round() as i64),
            _ => None,
        }
    }

    /// Parses one timestamp text in this spec's format.
    pub fn parse_text(&self, text: &str) -> Option<Millis> {
        match &self.format {
            TimeFormat::Rfc3339 => rfc3339(text),
            TimeFormat::UnixSeconds | TimeFormat::UnixMillis => text
                .parse::<f64>()
                .ok()
                .and_then(|n| self.millis_of_number(n)),
            TimeFormat::Pattern(p) => DateTime::parse_from_str(text, p)
                .map(|d| d.timestamp_millis())
                .ok()
                .or_else(|| {
                    NaiveDateTime::parse_from_str(text, p)
                        .ok()
                        .map(|n| n.and_utc().timestamp_millis())
                }),
            TimeFormat::Auto => rfc3339(text)
                .or_else(|| {
                    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
                        .iter()
                        .find_map(|f| {
                            NaiveDateTime::parse_from_str(text.trim_end_matches('Z'), f).ok()
                        })
                        .map(|n| n.and_utc().timestamp_millis())
                })
                .or_else(|| {
                    text.parse::<f64>()
                        .ok()
                        .and_then(|n| self.millis_of_number(n))
                }),
        }
    }
}

fn rfc3339(text: &str) -> Option<Millis> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|d| d.timestamp_millis())
}

fn cell_text(array: &dyn Array, row: usize) -> String {
    match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).to_string(),
        DataType::Float64 => array.as_primitive::<Float64Type>().value(row).to_string(),
        other => format!("({other})"),
    }
}

/// Formats event time as RFC 3339 UTC with milliseconds.
pub fn format_millis(t: Millis) -> String {
    DateTime::from_timestamp_millis(t)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_reads_the_common_shapes() {
        let spec = TimestampSpec {
            fields: vec!["t".into()],
            format: TimeFormat::Auto,
        };
        let expect = 1_600_044_263_000;
        assert_eq!(spec.parse_text("2020-09-14T00:44:23.000Z"), Some(expect));
        assert_eq!(spec.parse_text("2020-09-14T02:44:23+02:00"), Some(expect));
        assert_eq!(spec.parse_text("2020-09-14 00:44:23.000"), Some(expect));
        assert_eq!(spec.parse_text("1600044263"), Some(expect));
        assert_eq!(spec.parse_text("1600044263000"), Some(expect));
        assert_eq!(spec.parse_text("yesterday"), None);
    }

    #[test]
    fn a_pattern_is_read_as_utc() {
        let spec = TimestampSpec {
            fields: vec!["t".into()],
            format: TimeFormat::Pattern("%d/%m/%Y %H:%M:%S".into()),
        };
        assert_eq!(
            spec.parse_text("14/09/2020 00:44:23"),
            Some(1_600_044_263_000)
        );
    }
}
