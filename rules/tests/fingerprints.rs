//! Keyword automata with few literals search their fingerprints first over
//! long values, and run only on the values holding one; that must change no
//! match: literals in any letter case, at a value's start and end, values
//! holding a fingerprint but no literal, short values (searched directly),
//! and rows searched one by one (a narrow logsource) as well as the whole
//! column.

use vagt_rules::{load_text, Placeholders, Profile, RuleCollection, RuleSetBuilder};

const LITERALS: [&str; 4] = [
    "dpapi::masterkey",
    "kiwi legit printer",
    "eo.oe.kiwi",
    "sekurlsa::",
];

fn rules() -> String {
    let keywords: Vec<String> = LITERALS.iter().map(|l| format!("'{l}'")).collect();
    format!(
        "title: Every row\nid: 99999999-0000-4000-8000-00000000000a\nlogsource: {{product: windows}}\ndetection:\n  keywords: [{k}]\n  condition: keywords\n---\ntitle: Security rows\nid: 99999999-0000-4000-8000-00000000000b\nlogsource: {{product: windows, service: security}}\ndetection:\n  keywords: [{k}]\n  condition: keywords\n",
        k = keywords.join(", ")
    )
}

/// The text of event `i`: long or short, from the Security channel or
/// Sysmon, holding a literal (in some case, somewhere), a fingerprint only,
/// or nothing.
fn event(i: usize) -> String {
    let channel = if i.is_multiple_of(7) {
        "Security"
    } else {
        "Microsoft-Windows-Sysmon/Operational"
    };
    let literal = LITERALS[i % LITERALS.len()];
    let cased: String = literal
        .chars()
        .enumerate()
        .map(|(j, c)| {
            if (i + j).is_multiple_of(3) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    let padding = if i.is_multiple_of(5) {
        String::new()
    } else {
        "p".repeat(150 + i % 200)
    };
    let text = match i % 4 {
        0 => format!("{cased}{padding}"),
        1 => format!("{padding}{cased}"),
        // Fingerprints of every literal, and no literal.
        2 => format!("{padding}i:: wi eo.o a:: I::{padding}"),
        _ => padding.clone(),
    };
    format!(r#"{{"Channel": "{channel}", "EventID": 1, "Text": "{text}"}}"#)
}

#[test]
fn fingerprints_change_no_match() {
    let mut collection = RuleCollection::default();
    load_text(
        "rules.yml".as_ref(),
        &rules(),
        &Placeholders::new(),
        &mut collection,
    );
    assert!(collection.rejected.is_empty(), "{:?}", collection.rejected);
    let set = RuleSetBuilder::new(Profile::windows().unwrap())
        .build(&collection)
        .set;
    let lines: Vec<String> = (0..3000).map(event).collect();
    let got = crate::support::matches_of(&set, &lines.join("\n"));

    // Independently: the raw line holds a literal, ignoring ASCII case.
    let mut expected = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let lower = line.to_ascii_lowercase();
        if LITERALS.iter().any(|l| lower.contains(l)) {
            expected.push((i, "99999999-0000-4000-8000-00000000000a".to_string()));
            if line.contains("\"Security\"") {
                expected.push((i, "99999999-0000-4000-8000-00000000000b".to_string()));
            }
        }
    }
    expected.sort();
    assert!(expected.len() > 1000, "the events hold many literals");
    assert_eq!(got, expected);
}
