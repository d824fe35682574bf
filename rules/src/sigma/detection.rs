//! Lowering a Sigma `detection` section: search identifiers (maps, lists of
//! maps, keyword lists) and the condition that combines them.

use serde_yaml_ng::{Mapping, Value};

use crate::error::RuleError;
use crate::sigma::condition::{parse_condition, ConditionAst, OfSelection, Quantity};
use crate::sigma::modifiers::{lower_item, Placeholders};
use crate::sigma::predicate::Cond;

/// Values a rule's detection may hold. SigmaHQ's largest rule has 4,432
/// (a list of vulnerable drivers' hashes); the bound keeps one rule file
/// from taking the time and memory of thousands of rules. Lists larger
/// than this are indicator feeds, not rules.
pub const MAX_DETECTION_VALUES: usize = 20_000;

/// Scalars in a YAML value.
fn scalars(value: &Value) -> usize {
    match value {
        Value::Sequence(items) => items.iter().map(scalars).sum(),
        Value::Mapping(map) => map.values().map(scalars).sum(),
        Value::Tagged(tagged) => scalars(&tagged.value),
        _ => 1,
    }
}

/// Lowers a `detection` mapping into one condition tree.
pub fn lower_detection(detection: &Value, placeholders: &Placeholders) -> Result<Cond, RuleError> {
    let Value::Mapping(map) = detection else {
        return Err(RuleError::Attribute {
            attribute: "detection".into(),
            message: "must be a map of search identifiers and a condition".into(),
        });
    };
    let values = scalars(detection);
    if values > MAX_DETECTION_VALUES {
        return Err(RuleError::Attribute {
            attribute: "detection".into(),
            message: format!(
                "{values} values; a rule may hold at most {MAX_DETECTION_VALUES} (larger lists belong in an indicator feed)"
            ),
        });
    }
    let mut searches: Vec<(String, Cond)> = Vec::new();
    let mut condition: Option<&Value> = None;
    for (k, v) in map {
        let Some(name) = k.as_str() else {
            return Err(RuleError::Attribute {
                attribute: "detection".into(),
                message: format!("search identifier {k:?} is not a string"),
            });
        };
        match name {
            "condition" => condition = Some(v),
            "timeframe" => return Err(RuleError::Unsupported(
                "'timeframe' in detection is deprecated Sigma 1.0 syntax; use a correlation rule"
                    .into(),
            )),
            _ => searches.push((name.to_string(), lower_search(name, v, placeholders)?)),
        }
    }
    let Some(condition) = condition else {
        return Err(RuleError::Missing("detection.condition".into()));
    };
    let texts: Vec<String> = match condition {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(seq) if !seq.is_empty() => seq
            .iter()
            .map(|c| {
                c.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| RuleError::Attribute {
                        attribute: "detection.condition".into(),
                        message: "every condition in the list must be a string".into(),
                    })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(RuleError::Attribute {
                attribute: "detection.condition".into(),
                message: "must be a string or a list of strings".into(),
            })
        }
    };
    let mut alternatives = Vec::with_capacity(texts.len());
    for text in &texts {
        let ast = parse_condition(text).map_err(|e| RuleError::Condition {
            condition: shortened(text),
            message: e.to_string(),
        })?;
        alternatives.push(resolve(&ast, &searches)?);
    }
    Ok(Cond::or(alternatives))
}

/// Lowers one search identifier's value.
pub fn lower_search(
    name: &str,
    value: &Value,
    placeholders: &Placeholders,
) -> Result<Cond, RuleError> {
    match value {
        Value::Mapping(map) => lower_map(map, placeholders),
        Value::Sequence(items) => {
            if items.is_empty() {
                return Err(RuleError::Attribute {
                    attribute: format!("detection.{name}"),
                    message: "empty list".into(),
                });
            }
            let mut keywords = Vec::new();
            let mut alternatives = Vec::new();
            for item in items {
                match item {
                    Value::Mapping(map) => alternatives.push(lower_map(map, placeholders)?),
                    Value::Sequence(_) => {
                        return Err(RuleError::Attribute {
                            attribute: format!("detection.{name}"),
                            message: "nested lists are not valid search identifiers".into(),
                        })
                    }
                    scalar => keywords.push(scalar.clone()),
                }
            }
            if !keywords.is_empty() {
                alternatives.push(lower_item("", &Value::Sequence(keywords), placeholders)?);
            }
            Ok(Cond::or(alternatives))
        }
        Value::String(_) | Value::Number(_) => lower_item("", value, placeholders),
        Value::Null => Err(RuleError::Attribute {
            attribute: format!("detection.{name}"),
            message: "search identifier has no value".into(),
        }),
        other => Err(RuleError::Attribute {
            attribute: format!("detection.{name}"),
            message: format!("unsupported search identifier value {other:?}"),
        }),
    }
}

fn lower_map(map: &Mapping, placeholders: &Placeholders) -> Result<Cond, RuleError> {
    let mut items = Vec::with_capacity(map.len());
    for (k, v) in map {
        let key = match k {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => {
                return Err(RuleError::Attribute {
                    attribute: "detection".into(),
                    message: format!("field name {other:?} is not a string"),
                })
            }
        };
        items.push(lower_item(&key, v, placeholders)?);
    }
    Ok(Cond::and(items))
}

fn wildcard_match(pattern: &str, name: &str) -> bool {
    // Identifier patterns only use `*`.
    let pieces: Vec<&str> = pattern.split('*').collect();
    if pieces.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, piece) in pieces.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(piece) else {
                return false;
            };
            rest = r;
        } else if i == pieces.len() - 1 {
            return rest.ends_with(piece);
        } else if let Some(pos) = rest.find(piece) {
            rest = &rest[pos + piece.len()..];
        } else {
            return false;
        }
    }
    true
}

fn resolve(ast: &ConditionAst, searches: &[(String, Cond)]) -> Result<Cond, RuleError> {
    Ok(match ast {
        ConditionAst::Ident(name) => searches
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.clone())
            .ok_or_else(|| RuleError::UndefinedIdentifier(name.clone()))?,
        ConditionAst::And(v) => Cond::And(
            v.iter()
                .map(|a| resolve(a, searches))
                .collect::<Result<_, _>>()?,
        ),
        ConditionAst::Or(v) => Cond::Or(
            v.iter()
                .map(|a| resolve(a, searches))
                .collect::<Result<_, _>>()?,
        ),
        ConditionAst::Not(a) => Cond::Not(Box::new(resolve(a, searches)?)),
        ConditionAst::Of {
            quantity,
            selection,
        } => {
            let selected: Vec<Cond> = searches
                .iter()
                .filter(|(n, _)| match selection {
                    OfSelection::Them => !n.starts_with('_'),
                    OfSelection::Pattern(p) => wildcard_match(p, n),
                })
                .map(|(_, c)| c.clone())
                .collect();
            if selected.is_empty() {
                let what = match selection {
                    OfSelection::Them => "them".to_string(),
                    OfSelection::Pattern(p) => p.clone(),
                };
                return Err(RuleError::UndefinedIdentifier(what));
            }
            match quantity {
                Quantity::All => Cond::And(selected),
                Quantity::AtLeast(1) => Cond::Or(selected),
                Quantity::AtLeast(n) => Cond::AtLeast(*n, selected),
            }
        }
    })
}

/// A condition as quoted in a message: at most 120 characters.
fn shortened(text: &str) -> String {
    match text.char_indices().nth(120) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a rule of 100,000 `contains` values took 7.8 s and
    /// 1.1 GB to load; beyond the bound it is rejected before any lowering.
    #[test]
    fn a_rule_with_too_many_values_is_rejected_quickly() {
        let values: Vec<String> = (0..100_000).map(|i| format!("  - v{i}\n")).collect();
        let text = format!(
            "sel:\n CommandLine|contains:\n{}condition: sel\n",
            values.concat()
        );
        let detection: Value = serde_yaml_ng::from_str(&text).unwrap();
        // Refused by the count, before any value is lowered.
        let e = lower_detection(&detection, &Placeholders::new()).unwrap_err();
        assert!(
            e.to_string()
                .contains("100001 values; a rule may hold at most 20000"),
            "{e}"
        );
    }

    #[test]
    fn identifier_patterns() {
        assert!(wildcard_match("sel*", "selection_1"));
        assert!(wildcard_match("*_main", "sel_main"));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("a*b*c", "aXXbYY"));
        assert!(wildcard_match("sel", "sel"));
        assert!(!wildcard_match("sel", "sel2"));
    }

    #[test]
    fn undefined_identifier_is_rejected() {
        let v: Value = serde_yaml_ng::from_str("sel: {a: 1}\ncondition: sel and filter").unwrap();
        let e = lower_detection(&v, &Placeholders::new()).unwrap_err();
        assert_eq!(e, RuleError::UndefinedIdentifier("filter".into()));
    }
}
