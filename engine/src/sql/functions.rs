//! SQL functions that speak the rules' language:
//!
//! | function | returns |
//! |---|---|
//! | `sigma_match(value, pattern)` | whether `value` matches the Sigma wildcard `pattern` (`*`, `?`, `\` escapes), case-insensitively, as rules match |
//! | `cidr_contains(cidr, address)` | whether the address (IPv4, IPv6, IPv4-mapped) lies in the network |
//! | `event_field(raw, path)` | a field of the event's JSON text (`IpAddress`, `Event.System.Computer`) as text; null when absent |
//! | `catalog_actor(host_or_address)` | the catalog's owner of the host (or address) |
//! | `catalog_processes(host_or_address)` | the critical processes at risk there, as a list |
//!
//! A null argument gives null.

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, Field};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    create_udf, ColumnarValue, ScalarFunctionImplementation, Volatility,
};
use datafusion::prelude::SessionContext;
use vagt_rules::{LogSource, Wildcard};

use crate::alert::parse_ip;
use crate::catalog::{Catalog, EventFacts};

/// Registers every function on `ctx`, the catalog ones with `catalog`.
pub fn register(ctx: &SessionContext, catalog: Arc<Catalog>) {
    let two = || vec![DataType::Utf8, DataType::Utf8];
    ctx.register_udf(create_udf(
        "sigma_match",
        two(),
        DataType::Boolean,
        Volatility::Immutable,
        binary_bool(|value, pattern, cache: &mut Option<(String, Wildcard)>| {
            if cache.as_ref().is_none_or(|(p, _)| p != pattern) {
                let compiled = Wildcard::new(pattern, false).map_err(|e| {
                    DataFusionError::Execution(format!("sigma_match pattern '{pattern}': {e}"))
                })?;
                *cache = Some((pattern.to_string(), compiled));
            }
            Ok(cache.as_ref().is_some_and(|(_, w)| w.is_match(value)))
        }),
    ));
    ctx.register_udf(create_udf(
        "cidr_contains",
        two(),
        DataType::Boolean,
        Volatility::Immutable,
        binary_bool(
            |cidr, address, cache: &mut Option<(String, ipnet::IpNet)>| {
                if cache.as_ref().is_none_or(|(c, _)| c != cidr) {
                    let net: ipnet::IpNet = cidr.trim().parse().map_err(|e| {
                        DataFusionError::Execution(format!("cidr_contains network '{cidr}': {e}"))
                    })?;
                    *cache = Some((cidr.to_string(), net));
                }
                Ok(parse_ip(address)
                    .is_some_and(|ip| cache.as_ref().is_some_and(|(_, net)| net.contains(&ip))))
            },
        ),
    ));
    ctx.register_udf(create_udf(
        "event_field",
        two(),
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let (raw, path) = (strings(&arrays[0])?, strings(&arrays[1])?);
            let mut out = StringBuilder::new();
            for row in 0..raw.len() {
                if raw.is_null(row) || path.is_null(row) {
                    out.append_null();
                    continue;
                }
                out.append_option(event_field(raw.value(row), path.value(row)));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    ));
    let owners = catalog.clone();
    ctx.register_udf(create_udf(
        "catalog_actor",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let values = strings(&arrays[0])?;
            let mut out = StringBuilder::new();
            for row in 0..values.len() {
                let actor = (!values.is_null(row))
                    .then(|| impact(&owners, values.value(row)).actors.into_iter().next())
                    .flatten();
                out.append_option(actor);
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    ));
    ctx.register_udf(create_udf(
        "catalog_processes",
        vec![DataType::Utf8],
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let values = strings(&arrays[0])?;
            let mut out = ListBuilder::new(StringBuilder::new());
            for row in 0..values.len() {
                if values.is_null(row) {
                    out.append_null();
                    continue;
                }
                for process in impact(&catalog, values.value(row)).processes {
                    out.values().append_value(process);
                }
                out.append(true);
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    ));
}

/// The catalog's view of a host name or address.
fn impact(catalog: &Catalog, value: &str) -> crate::catalog::Impact {
    let facts = match parse_ip(value) {
        Some(ip) => EventFacts {
            ips: vec![ip],
            ..EventFacts::default()
        },
        None => EventFacts {
            hosts: vec![value.to_string()],
            ..EventFacts::default()
        },
    };
    catalog.impact(&facts, &LogSource::default(), None)
}

/// A field of an event's JSON text: a top-level key (which may hold
/// dots), else a dotted path through objects.
fn event_field(raw: &str, path: &str) -> Option<String> {
    let event: serde_json::Value = serde_json::from_str(raw).ok()?;
    let found = event.get(path).or_else(|| {
        path.split('.')
            .try_fold(&event, |value, key| value.get(key))
    })?;
    match found {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn strings(array: &ArrayRef) -> Result<&arrow_array::StringArray, DataFusionError> {
    array.as_string_opt::<i32>().ok_or_else(|| {
        DataFusionError::Execution(format!("expected text, got {}", array.data_type()))
    })
}

/// A two-text-argument function giving a boolean per row, with a cache
/// for what it compiles from its second (usually constant) argument.
fn binary_bool<C: Default + Send + 'static>(
    f: impl Fn(&str, &str, &mut C) -> Result<bool, DataFusionError> + Send + Sync + 'static,
) -> ScalarFunctionImplementation {
    Arc::new(move |args: &[ColumnarValue]| {
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let (first, second) = (strings(&arrays[0])?, strings(&arrays[1])?);
        let mut cache = C::default();
        let mut out = BooleanBuilder::with_capacity(first.len());
        for row in 0..first.len() {
            if first.is_null(row) || second.is_null(row) {
                out.append_null();
                continue;
            }
            out.append_value(f(first.value(row), second.value(row), &mut cache)?);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_fields_by_key_or_path() {
        let raw =
            r#"{"IpAddress": "10.1.2.3", "Event": {"System": {"EventID": 4625}}, "a.b": "dotted"}"#;
        assert_eq!(event_field(raw, "IpAddress").as_deref(), Some("10.1.2.3"));
        assert_eq!(
            event_field(raw, "Event.System.EventID").as_deref(),
            Some("4625")
        );
        assert_eq!(event_field(raw, "a.b").as_deref(), Some("dotted"));
        assert_eq!(event_field(raw, "Missing"), None);
        assert_eq!(event_field("not json", "a"), None);
    }
}
