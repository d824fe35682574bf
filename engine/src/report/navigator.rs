//! The period's detections as an ATT&CK Navigator layer (layer format
//! 4.5): each technique an edition shows, scored by its detections, so
//! that analysts can open the quarter in the Navigator beside the report.

use serde_json::{json, Value};

use super::Report;

/// The layer format version written.
pub const LAYER_VERSION: &str = "4.5";

/// The layer of `report`: only the techniques its edition shows.
pub fn layer(report: &Report) -> Value {
    let techniques: Vec<Value> = report
        .by_technique
        .iter()
        .filter_map(|row| row.now.0.filter(|n| *n > 0).map(|n| (row, n)))
        .flat_map(|(row, n)| {
            let tactics = report
                .figures_now
                .technique_tactics
                .get(&row.key)
                .cloned()
                .unwrap_or_default();
            let comment = format!("{n} detections {} to {}", report.from, report.to);
            let entry = |tactic: Option<&str>| {
                let mut t = json!({
                    "techniqueID": row.key,
                    "score": n,
                    "comment": comment,
                    "enabled": true,
                });
                if let Some(tactic) = tactic {
                    t["tactic"] = json!(tactic);
                }
                t
            };
            if tactics.is_empty() {
                vec![entry(None)]
            } else {
                tactics.iter().map(|t| entry(Some(t))).collect()
            }
        })
        .collect();
    let max = techniques
        .iter()
        .filter_map(|t| t["score"].as_u64())
        .max()
        .unwrap_or(1);
    json!({
        "name": format!("vagt {} {}–{}", report.edition, report.from, report.to),
        "versions": {"layer": LAYER_VERSION, "navigator": "5.1.0", "attack": "17"},
        "domain": "enterprise-attack",
        "description": format!(
            "Detections by ATT&CK technique, {} to {}, {} edition, TLP:{}",
            report.from, report.to, report.edition, report.tlp.to_uppercase()
        ),
        "techniques": techniques,
        "gradient": {"colors": ["#ffffff", "#ff6666"], "minValue": 0, "maxValue": max},
        "legendItems": [],
        "metadata": [
            {"name": "edition", "value": report.edition},
            {"name": "tlp", "value": format!("TLP:{}", report.tlp.to_uppercase())},
        ],
        "hideDisabled": false,
    })
}
