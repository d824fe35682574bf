//! The prefilter searches a field only on the rows its rules can look at
//! (the rows of their logsources) when those are few, and the whole column
//! otherwise; both ways must give the same matches.

use vagt_rules::{load_text, Placeholders, Profile, RuleCollection, RuleSetBuilder};

const RULES: &str = r#"
title: Keyword in security events
id: 99999999-0000-4000-8000-000000000001
logsource: {product: windows, service: security}
detection:
  keywords: ['sekurlsa::']
  condition: keywords
---
title: Command line in Sysmon process creation
id: 99999999-0000-4000-8000-000000000002
logsource: {product: windows, category: process_creation}
detection:
  sel: {CommandLine|contains: 'sekurlsa::'}
  condition: sel
"#;

fn matches(security_events: usize, sysmon_events: usize) -> Vec<(usize, String)> {
    let mut collection = RuleCollection::default();
    load_text(
        "rules.yml".as_ref(),
        RULES,
        &Placeholders::new(),
        &mut collection,
    );
    let set = RuleSetBuilder::new(Profile::windows().unwrap())
        .build(&collection)
        .set;
    let mut lines = Vec::new();
    for i in 0..security_events {
        lines.push(format!(
            r#"{{"Channel": "Security", "EventID": 4688, "Note": "event {i} sekurlsa::x"}}"#
        ));
    }
    for i in 0..sysmon_events {
        lines.push(format!(
            r#"{{"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1, "CommandLine": "m {i} SEKURLSA::logonpasswords"}}"#
        ));
    }
    crate::support::matches_of(&set, &lines.join("\n"))
}

#[test]
fn scoped_and_full_column_prefilter_agree() {
    // One security event among many Sysmon events: the keyword is searched
    // in that row only, and the Sysmon events (which contain the keyword in
    // their raw text too) do not match the security rule.
    let few = matches(1, 9);
    assert_eq!(few.iter().filter(|(_, id)| id.ends_with("01")).count(), 1);
    assert_eq!(few.iter().filter(|(_, id)| id.ends_with("02")).count(), 9);
    assert!(few.contains(&(0, "99999999-0000-4000-8000-000000000001".to_string())));
    // Mostly security events: the whole column is searched.
    let many = matches(9, 1);
    assert_eq!(many.iter().filter(|(_, id)| id.ends_with("01")).count(), 9);
    assert_eq!(many.iter().filter(|(_, id)| id.ends_with("02")).count(), 1);
}
