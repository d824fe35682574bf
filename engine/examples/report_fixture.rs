//! Writes `fixtures/report/alerts.jsonl`: two quarters of alerts
//! (2026-04-01 to 2026-09-30) over the default catalog's organisations
//! and critical processes, for `vagt report`'s tests and screenshots.
//! Deterministic (a fixed seed): running it again gives the same file.
//!
//! ```sh
//! cargo run -p vagt-engine --example report_fixture > fixtures/report/alerts.jsonl
//! ```

use serde_json::json;

/// A rule the alerts come from: title, level, tags, and the kinds of
/// organisation it fires at (by weight).
struct Template {
    title: &'static str,
    level: &'static str,
    tags: &'static [&'static str],
    /// Organisations it fires at: a few rules only at one or two, whose
    /// figures the sector edition must hide.
    actors: &'static [&'static str],
    /// Critical processes at risk when it fires.
    processes: &'static [&'static str],
    /// Its alerts' TLP, when the rule sets one (else drawn from [`TLPS`]).
    tlp: Option<&'static str>,
}

const HOSPITALS: &[&str] = &["rnv-hospital-nord", "rnv-hospital-syd"];
const MOST: &[&str] = &[
    "rnv-region",
    "rnv-praehospital",
    "rnv-hospital-nord",
    "rnv-hospital-syd",
    "kom-fjordby",
    "kom-hedeby",
    "gp-laegehuset-aaen",
    "gp-bakkehuset",
];

const TEMPLATES: &[Template] = &[
    Template {
        title: "Encoded PowerShell command line",
        level: "high",
        tags: &["attack.execution", "attack.t1059.001", "tlp.green"],
        actors: MOST,
        processes: &[],
        tlp: None,
    },
    Template {
        title: "Brute force against one account",
        level: "high",
        tags: &["attack.credential-access", "attack.t1110.001"],
        actors: MOST,
        processes: &["patientjournal"],
        tlp: None,
    },
    Template {
        title: "Mimikatz use",
        level: "critical",
        tags: &["attack.credential-access", "attack.t1003.001"],
        actors: MOST,
        processes: &["medicinering"],
        tlp: None,
    },
    Template {
        title: "Shadow copies deleted",
        level: "critical",
        tags: &["attack.impact", "attack.t1490"],
        actors: HOSPITALS,
        processes: &["proevetagning", "operation"],
        tlp: None,
    },
    Template {
        title: "Suspicious scheduled task",
        level: "medium",
        tags: &["attack.persistence", "attack.t1053.005"],
        actors: MOST,
        processes: &["undersoegelse"],
        tlp: None,
    },
    Template {
        title: "Remote service created",
        level: "medium",
        tags: &["attack.lateral-movement", "attack.t1021.002"],
        actors: MOST,
        processes: &[],
        tlp: None,
    },
    Template {
        title: "Ambulance tablet beaconing",
        level: "high",
        tags: &["attack.command-and-control", "attack.t1071.001"],
        actors: &["sup-vestkyst-ambulance"],
        processes: &["akut-praehospital"],
        tlp: None,
    },
    Template {
        title: "Lab analyser firmware change",
        level: "high",
        tags: &["attack.impact", "attack.t1495"],
        actors: &["sup-medilab", "rnv-hospital-nord"],
        processes: &["proevetagning"],
        tlp: None,
    },
    Template {
        title: "Red team exercise",
        level: "high",
        tags: &["attack.discovery", "attack.t1087.002"],
        actors: MOST,
        processes: &[],
        tlp: Some("red"),
    },
];

const TLPS: &[(&str, u32)] = &[
    ("clear", 10),
    ("green", 50),
    ("amber", 30),
    ("amber+strict", 8),
    ("red", 2),
];

fn main() {
    let mut rng = fastrand::Rng::with_seed(20_261_130);
    let start = chrono::NaiveDate::from_ymd_opt(2026, 4, 1)
        .expect("a date")
        .and_hms_opt(0, 0, 0)
        .expect("a time")
        .and_utc();
    let days = 183;
    let mut lines = Vec::new();
    for n in 0..1200u64 {
        // The second quarter brings more, and more impact.
        let day = rng.u32(0..days);
        let second = day >= 91;
        // The first quarter is mostly quieter rules; the second brings
        // credential theft and impact.
        let t = &TEMPLATES[if !second && rng.u32(0..10) < 7 {
            [0, 4, 5][rng.usize(0..3)]
        } else if second && rng.u32(0..5) == 0 {
            3
        } else {
            rng.usize(0..TEMPLATES.len())
        }];
        let actor = t.actors[rng.usize(0..t.actors.len())];
        let first = start
            + chrono::Duration::days(i64::from(day))
            + chrono::Duration::seconds(i64::from(rng.u32(0..86_400)));
        // Mostly within seconds; some much later.
        let delay_ms = match rng.u32(0..100) {
            0..=59 => rng.u64(20..1_000),
            60..=84 => rng.u64(1_000..10_000),
            85..=94 => rng.u64(10_000..600_000),
            _ => rng.u64(600_000..7_200_000),
        };
        let detected = first + chrono::Duration::milliseconds(delay_ms as i64);
        let mut pick = rng.u32(0..100);
        let drawn = TLPS
            .iter()
            .find(|(_, w)| {
                let hit = pick < *w;
                pick = pick.saturating_sub(*w);
                hit
            })
            .map_or("amber", |(t, _)| t);
        let tlp = t.tlp.unwrap_or(drawn);
        // Critical processes are at risk more often in the second quarter.
        let at_risk = if second { 45 } else { 15 };
        let processes: Vec<&str> = t
            .processes
            .iter()
            .copied()
            .filter(|_| rng.u32(0..100) < at_risk)
            .collect();
        let severity = if processes.is_empty() || t.level == "critical" {
            t.level
        } else if t.level == "medium" && rng.bool() {
            "high"
        } else {
            t.level
        };
        let techniques: Vec<String> = t
            .tags
            .iter()
            .filter_map(|tag| tag.strip_prefix("attack.t"))
            .map(|id| format!("T{}", id.to_ascii_uppercase()))
            .collect();
        let rfc = |t: chrono::DateTime<chrono::Utc>| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let mut alert = json!({
            "id": format!("00000000-0000-4000-8000-{n:012}"),
            "rule": {
                "id": format!("rule-{}", t.title.to_lowercase().replace(' ', "-")),
                "title": t.title,
                "level": t.level,
                "tags": t.tags,
                "attack_techniques": techniques,
                "logsource": {"product": "windows"},
                "source": "fixtures/report",
            },
            "severity": severity,
            "tlp": tlp,
            "actor": actor,
            "actors": [actor],
            "critical_processes": processes,
            "assets": [],
            "response": [],
            "event_time": {"first": rfc(first), "last": rfc(first)},
            "detected_at": rfc(detected),
            "group": null,
            "count": 1,
            "source": {"input": format!("{actor}/winlogbeat"), "line": n + 1, "offset": n * 512},
            "event": null,
        });
        if rng.u32(0..40) == 0 {
            alert["retrospective"] = json!(true);
        }
        lines.push((rfc(first), alert.to_string()));
    }
    lines.sort();
    for (_, line) in lines {
        println!("{line}");
    }
}
