//! Unit tests of the parsers: the edge cases of each format. Realistic
//! samples per format are in `fixtures/formats/` (`tests/formats.rs`).

use std::sync::Arc;

use serde_json::{json, Value};

use super::{Format, Parsed, RecordParser};
use crate::framing::{Origin, Record};

fn parse_with(parser: &mut RecordParser, line: &str) -> Result<Option<Value>, String> {
    let record = Record {
        bytes: line.as_bytes().to_vec(),
        origin: Origin { line: 1, offset: 0 },
    };
    let source: Arc<str> = Arc::from("test");
    Ok(match parser.parse(&record, &source)? {
        Parsed::Text(text) => Some(serde_json::from_str(&text).unwrap()),
        Parsed::Same => Some(serde_json::from_str(line).unwrap()),
        Parsed::Nothing => None,
    })
}

fn parse(format: Format, line: &str) -> Result<Value, String> {
    parse_with(&mut RecordParser::new(format), line).map(|v| v.unwrap())
}

#[test]
fn rfc5424_with_structured_data_and_nil_values() {
    let v = parse(
        Format::Syslog,
        r#"<165>1 2026-11-23T09:10:29.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="App\"lication" eventID="1011"][origin ip="10.1.2.3"] An application event"#,
    )
    .unwrap();
    assert_eq!(v["priority"], 165);
    assert_eq!(
        (v["facility"].clone(), v["severity"].clone()),
        (json!(20), json!(5))
    );
    assert_eq!(v["facility_name"], "local4");
    assert_eq!(v["severity_name"], "notice");
    assert_eq!(v["version"], 1);
    assert_eq!(v["timestamp"], "2026-11-23T09:10:29.003Z");
    assert_eq!(v["hostname"], "mymachine.example.com");
    assert_eq!(v["app_name"], "evntslog");
    assert!(v.get("procid").is_none(), "NILVALUE is left out");
    assert_eq!(v["msgid"], "ID47");
    assert_eq!(v["sd"]["exampleSDID@32473"]["eventSource"], "App\"lication");
    assert_eq!(v["sd"]["origin"]["ip"], "10.1.2.3");
    assert_eq!(v["message"], "An application event");
    assert!(v["event.original"].as_str().unwrap().starts_with("<165>1 "));
}

/// Regression: an impossible time was passed on as if it were one.
#[test]
fn an_rfc5424_timestamp_that_is_no_date_is_refused() {
    for bad in ["2026-13-45T25:61:61Z", "2026-02-30T10:00:00Z", "yesterday"] {
        let e = parse(Format::Syslog, &format!("<13>1 {bad} host app - - - hi")).unwrap_err();
        assert_eq!(
            e,
            format!("syslog: RFC 5424 timestamp '{bad}' is not a valid date and time")
        );
    }
    let ok = parse(
        Format::Syslog,
        "<13>1 2026-02-28T10:00:00.5+01:00 host app - - - hi",
    )
    .unwrap();
    assert_eq!(ok["timestamp"], "2026-02-28T10:00:00.5+01:00");
}

#[test]
fn rfc5424_without_message_or_structured_data() {
    let v = parse(Format::Syslog, "<13>1 - - - - - -").unwrap();
    assert_eq!(v["severity"], 5);
    assert!(v.get("message").is_none() && v.get("sd").is_none());
}

#[test]
fn rfc3164_with_and_without_host_and_pid() {
    let v = parse(
        Format::Syslog,
        "<38>Nov  3 09:10:29 dc01 sshd[4123]: Failed password for root",
    )
    .unwrap();
    assert!(
        v["timestamp"]
            .as_str()
            .unwrap()
            .ends_with("-11-03T09:10:29Z"),
        "{v}"
    );
    assert_eq!(v["hostname"], "dc01");
    assert_eq!(v["app_name"], "sshd");
    assert_eq!(v["procid"], "4123");
    assert_eq!(v["message"], "Failed password for root");
    let v = parse(Format::Syslog, "<13>Nov 23 09:10:29 su: session opened").unwrap();
    assert!(v.get("hostname").is_none());
    assert_eq!(v["app_name"], "su");
    let v = parse(Format::Syslog, "<13>just a message").unwrap();
    assert_eq!(v["message"], "just a message");
    // As syslog daemons write files: no priority.
    let v = parse(
        Format::Syslog,
        "Nov 23 09:10:29 dc01 sshd[7]: Accepted publickey",
    )
    .unwrap();
    assert_eq!(
        (v["hostname"].clone(), v["procid"].clone()),
        (json!("dc01"), json!("7"))
    );
    assert!(v.get("priority").is_none());
    let v = parse(Format::Syslog, "2026-11-23T09:10:29+01:00 dc01 su: opened").unwrap();
    assert_eq!(v["timestamp"], "2026-11-23T09:10:29+01:00");
    assert_eq!(v["app_name"], "su");
}

#[test]
fn malformed_syslog_says_why() {
    for (line, reason) in [
        ("no pri", "neither <PRI> nor a time"),
        ("<999>1 - - - - - -", "priority '999'"),
        ("<13", "not closed"),
        ("<13>1 2026-11-23T09:10:29Z host", "header ends"),
        ("<13>1 - - - - - [a x=\"1]", "not closed"),
        ("<13>1 - - - - - junk", "neither '-' nor"),
        ("<13>1 - - - - - [id a b=\"1\"]", "not NAME=\"VALUE\""),
    ] {
        let e = parse(Format::Syslog, line).unwrap_err();
        assert!(e.contains(reason), "{line}: {e}");
    }
}

#[test]
fn cef_header_escapes_and_extension_values_with_spaces() {
    let v = parse(
        Format::Cef,
        r"<134>Nov 23 09:10:29 fw01 CEF:0|Palo\|Alto|PAN-OS|10.1|threat|Spyware phone home|8|src=10.1.2.3 dst=203.0.113.9 dpt=443 msg=call home a\=b suser=RNV\\anna",
    )
    .unwrap();
    assert_eq!(v["cef_version"], 0);
    assert_eq!(v["device_vendor"], "Palo|Alto");
    assert_eq!(v["name"], "Spyware phone home");
    assert_eq!(v["severity"], 8);
    assert_eq!(v["dpt"], 443);
    assert_eq!(v["msg"], "call home a=b");
    assert_eq!(v["suser"], "RNV\\anna");
    assert_eq!(v["syslog"]["hostname"], "fw01");
    let v = parse(
        Format::Cef,
        "Nov 23 09:10:29 fw02 CEF:0|V|P|1|7|N|3|src=10.0.0.1",
    )
    .unwrap();
    assert_eq!(v["syslog"]["hostname"], "fw02");
    let e = parse(Format::Cef, "CEF:0|only|three").unwrap_err();
    assert!(e.contains("2 of its 7"), "{e}");
    let e = parse(Format::Cef, "no cef here").unwrap_err();
    assert!(e.contains("no 'CEF:'"), "{e}");
}

#[test]
fn leef_1_and_2_with_their_delimiters() {
    let v = parse(
        Format::Leef,
        "LEEF:1.0|Microsoft|MSExchange|2016|15345|src=10.50.1.1\tdst=2.10.20.20\tusrName=anna",
    )
    .unwrap();
    assert_eq!(v["vendor"], "Microsoft");
    assert_eq!(v["event_id"], 15345);
    assert_eq!(v["usrName"], "anna");
    let v = parse(
        Format::Leef,
        "LEEF:2.0|Lancope|StealthWatch|1.0|41|^|src=10.0.1.8^dst=10.0.0.5^proto=6",
    )
    .unwrap();
    assert_eq!(v["dst"], "10.0.0.5");
    assert_eq!(v["proto"], 6);
    let v = parse(Format::Leef, "LEEF:2.0|V|P|1|7|x09|a=1\tb=2").unwrap();
    assert_eq!(v["b"], 2);
    let v = parse(Format::Leef, "LEEF:2.0|V|P|1|7|a=1\tb=3").unwrap();
    assert_eq!(v["b"], 3, "no delimiter field: tab");
    let e = parse(Format::Leef, "LEEF:3.0|V|P|1|7|a=1").unwrap_err();
    assert!(e.contains("unknown version"), "{e}");
    let e = parse(Format::Leef, "LEEF:1.0|V|P|1|7|novalue").unwrap_err();
    assert!(e.contains("has no '='"), "{e}");
}

#[test]
fn logfmt_types_quotes_and_flags() {
    let v = parse(
        Format::Logfmt,
        r#"ts=2026-11-23T09:10:29Z level=warn msg="login \"failed\"" port=0022 n=-4 debug"#,
    )
    .unwrap();
    assert_eq!(v["msg"], "login \"failed\"");
    assert_eq!(v["port"], "0022", "leading zeros stay text");
    assert_eq!(v["n"], -4);
    assert_eq!(v["debug"], true);
    assert!(parse(Format::Logfmt, "just words")
        .unwrap_err()
        .contains("no key=value"));
    assert!(parse(Format::Logfmt, "a=\"open")
        .unwrap_err()
        .contains("not closed"));
}

#[test]
fn zeek_tsv_follows_its_header_per_stream() {
    let mut parser = RecordParser::new(Format::Zeek);
    let header = [
        "#separator \\x09",
        "#set_separator\t,",
        "#empty_field\t(empty)",
        "#unset_field\t-",
        "#path\tconn",
        "#fields\tts\tuid\tid.orig_h\tid.resp_p\tservice\tduration\ttunnel_parents\tlocal_orig",
        "#types\ttime\tstring\taddr\tport\tstring\tinterval\tset[string]\tbool",
    ];
    assert!(parse_with(
        &mut parser,
        "1700000000.1\tC1\t10.0.0.1\t53\tdns\t0.5\t(empty)\tT"
    )
    .unwrap_err()
    .contains("before its #fields"));
    for line in header {
        assert_eq!(parse_with(&mut parser, line).unwrap(), None);
    }
    let v = parse_with(
        &mut parser,
        "1700000000.1\tC1\t10.0.0.1\t53\t-\t0.5\t(empty)\tT",
    )
    .unwrap()
    .unwrap();
    assert_eq!(v["_path"], "conn");
    assert_eq!(v["id.orig_h"], "10.0.0.1");
    assert_eq!(v["id.resp_p"], 53);
    assert!(v.get("service").is_none(), "unset");
    assert_eq!(v["tunnel_parents"], json!([]));
    assert_eq!(v["local_orig"], true);
    let e = parse_with(&mut parser, "1700000000.1\tC1").unwrap_err();
    assert!(e.contains("2 values for the 8 fields"), "{e}");
    let e = parse_with(&mut parser, "x\tC1\t10.0.0.1\t53\t-\t0.5\t(empty)\tT").unwrap_err();
    assert!(e.contains("ts 'x' is not a time"), "{e}");
    let json_line = r#"{"ts": 1700000000.1, "uid": "C2", "id.orig_h": "10.0.0.2"}"#;
    assert_eq!(
        parse_with(&mut parser, json_line).unwrap().unwrap()["uid"],
        "C2"
    );
}

#[test]
fn json_formats_check_their_key_fields() {
    assert!(parse(
        Format::Suricata,
        r#"{"event_type": "alert", "src_ip": "10.0.0.1"}"#
    )
    .is_ok());
    let e = parse(Format::Suricata, r#"{"src_ip": "10.0.0.1"}"#).unwrap_err();
    assert!(e.contains("not a Suricata EVE event"), "{e}");
    assert!(parse(Format::Windows, r#"{"Event": {"System": {"EventID": 1}}}"#).is_ok());
    assert!(parse(Format::Windows, r#"{"EventID": 4688}"#).is_ok());
    assert!(parse(Format::Windows, r#"{"event": 1}"#)
        .unwrap_err()
        .contains("not a Windows event"));
}

#[test]
fn quoted_values_unescape_as_their_format_says() {
    // logfmt: \n and \t are control characters, any other escaped
    // character stands for itself.
    let v = parse(Format::Logfmt, r#"msg="a\tb\nc\\d\"e\q""#).unwrap();
    assert_eq!(v["msg"], "a\tb\nc\\d\"eq");
    // RFC 5424 structured data: only ", \ and ] are escaped; a backslash
    // before anything else stays.
    let v = parse(
        Format::Syslog,
        r#"<165>1 2026-11-23T09:10:29Z host app - - [x@1 p="a\]b\\c\"d\e"] msg"#,
    )
    .unwrap();
    assert_eq!(v["sd"]["x@1"]["p"], "a]b\\c\"d\\e");
}
