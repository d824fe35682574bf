//! Decoder behaviour: flattening, type inference, rendering, dead letters
//! and rollback.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;

use super::projection::tests::segments;
use super::*;
use crate::framing::{Origin, Record};
use crate::DeadLetter;

fn record(text: &[u8], line: u64) -> Record {
    Record {
        bytes: text.to_vec(),
        origin: Origin {
            line,
            offset: line * 100,
        },
    }
}

/// Decodes `records` (line = index + 1) into one batch.
fn decode(records: &[&str]) -> (Option<RecordBatch>, Vec<DeadLetter>) {
    let mut d = BatchDecoder::new();
    let source: Arc<str> = Arc::from("t");
    let mut dead = Vec::new();
    for (i, r) in records.iter().enumerate() {
        dead.extend(d.push(record(r.as_bytes(), i as u64 + 1), &source));
    }
    (d.finish().map(|b| b.batch), dead)
}

fn decode_ok(records: &[&str]) -> RecordBatch {
    let (batch, dead) = decode(records);
    assert!(dead.is_empty(), "{dead:?}");
    batch.expect("rows")
}

/// The names of the batch's columns, in order.
fn column_names(b: &RecordBatch) -> Vec<String> {
    b.schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

fn column(b: &RecordBatch, name: &str) -> ArrayRef {
    let index = b
        .schema()
        .index_of(name)
        .unwrap_or_else(|_| panic!("no column {name} in {:?}", b.schema()));
    b.column(index).clone()
}

fn data_type(b: &RecordBatch, name: &str) -> DataType {
    column(b, name).data_type().clone()
}

/// A `Utf8` column as options.
fn strings(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    column(b, name)
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

/// A `List<Utf8>` column, row by row.
fn lists(b: &RecordBatch, name: &str) -> Vec<Option<Vec<Option<String>>>> {
    let col = column(b, name);
    let list = col.as_list::<i32>();
    (0..list.len())
        .map(|row| {
            list.is_valid(row).then(|| {
                let items = list.value(row);
                items
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.map(str::to_string))
                    .collect()
            })
        })
        .collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[test]
fn nested_objects_are_flattened_with_keys_verbatim_in_first_seen_order() {
    let b = decode_ok(&[
        r##"{"Event": {"#attributes": {"xmlns": "x"}, "System": {"EventID": 4688, "Channel": "Security"}, "EventData": {"Data": {"#text": "t"}}}}"##,
        r##"{"z": 1, "Event": {"System": {"EventID": 1}}}"##,
    ]);
    assert_eq!(
        column_names(&b),
        [
            RAW_COLUMN,
            "Event.#attributes.xmlns",
            "Event.System.EventID",
            "Event.System.Channel",
            "Event.EventData.Data.#text",
            "z"
        ]
    );
    assert!(b.schema().fields().iter().all(|f| f.is_nullable()));
    let ids = column(&b, "Event.System.EventID");
    assert_eq!(ids.as_primitive::<Int64Type>().values().as_ref(), [4688, 1]);
    assert_eq!(strings(&b, "Event.EventData.Data.#text"), [s("t"), None]);
    assert_eq!(
        strings(&b, RAW_COLUMN)[1].as_deref(),
        Some(r##"{"z": 1, "Event": {"System": {"EventID": 1}}}"##)
    );
}

#[test]
fn each_column_gets_the_narrowest_type_holding_its_values() {
    let b = decode_ok(&[
        r#"{"int": 1, "num": 1, "flag": true, "text": "a", "mixed": 1, "mixed2": true, "big": 1}"#,
        r#"{"int": -2, "num": 2.5, "flag": false, "text": "b", "mixed": "x", "mixed2": 1.5, "big": 18446744073709551615}"#,
        r#"{"int": null, "num": null, "flag": null, "text": null, "mixed": 2, "mixed2": null}"#,
    ]);
    assert_eq!(data_type(&b, "int"), DataType::Int64);
    assert_eq!(data_type(&b, "num"), DataType::Float64);
    assert_eq!(data_type(&b, "flag"), DataType::Boolean);
    assert_eq!(data_type(&b, "text"), DataType::Utf8);
    assert_eq!(data_type(&b, "mixed"), DataType::Utf8);
    assert_eq!(data_type(&b, "mixed2"), DataType::Utf8);
    assert_eq!(data_type(&b, "big"), DataType::Utf8);

    let int = column(&b, "int");
    let int = int.as_primitive::<Int64Type>();
    assert_eq!((int.value(0), int.value(1), int.is_null(2)), (1, -2, true));
    let num = column(&b, "num");
    let num = num.as_primitive::<Float64Type>();
    assert_eq!(
        (num.value(0), num.value(1), num.is_null(2)),
        (1.0, 2.5, true)
    );
    let flag = column(&b, "flag");
    let flag = flag.as_boolean();
    assert_eq!(
        (flag.value(0), flag.value(1), flag.is_null(2)),
        (true, false, true)
    );
    assert_eq!(strings(&b, "mixed"), [s("1"), s("x"), s("2")]);
    assert_eq!(strings(&b, "mixed2"), [s("true"), s("1.5"), None]);
    assert_eq!(
        strings(&b, "big"),
        [s("1"), s("18446744073709551615"), None]
    );
}

#[test]
fn arrays_of_scalars_are_lists_of_strings() {
    let b = decode_ok(&[
        r#"{"l": ["a", 2, true, 1.5, null, 18446744073709551615]}"#,
        r#"{"l": []}"#,
        r#"{"other": 1}"#,
    ]);
    assert_eq!(data_type(&b, "l"), DataType::new_list(DataType::Utf8, true));
    assert_eq!(
        lists(&b, "l"),
        [
            Some(vec![
                s("a"),
                s("2"),
                s("true"),
                s("1.5"),
                None,
                s("18446744073709551615")
            ]),
            Some(vec![]),
            None
        ]
    );
}

#[test]
fn arrays_holding_objects_or_arrays_are_compact_json_text() {
    let b = decode_ok(&[
        "{\"deep\": [ {\"a\" : 1, \"b\": [true, null]},\n [2, \"x\\\"y\"] ]}",
        r#"{"deep": [1, "a\nb", 2.0, {"c": {}}, [], {}]}"#,
        r#"{"deep": [[]]}"#,
    ]);
    assert_eq!(data_type(&b, "deep"), DataType::Utf8);
    assert_eq!(
        strings(&b, "deep"),
        [
            s(r#"[{"a":1,"b":[true,null]},[2,"x\"y"]]"#),
            s(r#"[1,"a\nb",2.0,{"c":{}},[],{}]"#),
            s("[[]]")
        ]
    );
}

#[test]
fn a_column_mixing_arrays_and_scalars_is_text() {
    let b = decode_ok(&[r#"{"v": ["a", 2, null]}"#, r#"{"v": "x"}"#, r#"{"v": 3}"#]);
    assert_eq!(data_type(&b, "v"), DataType::Utf8);
    assert_eq!(strings(&b, "v"), [s(r#"["a",2,null]"#), s("x"), s("3")]);
}

#[test]
fn null_and_missing_are_both_nulls_and_empty_objects_add_nothing() {
    let b = decode_ok(&[r#"{"a": null, "b": 1, "e": {}}"#, r#"{"b": null}"#, "{}"]);
    let schema = b.schema();
    assert!(schema.index_of("e").is_err());
    assert_eq!(b.num_rows(), 3);
    assert_eq!(strings(&b, "a"), [None, None, None]);
    let col = column(&b, "b");
    let bs = col.as_primitive::<Int64Type>();
    assert_eq!((bs.value(0), bs.is_null(1), bs.is_null(2)), (1, true, true));
    assert_eq!(
        lists(&b, NULLS_COLUMN),
        [Some(vec![s("a")]), Some(vec![s("b")]), None]
    );
    let no_nulls = decode_ok(&[r#"{"a": 1}"#]);
    assert!(no_nulls.schema().index_of(NULLS_COLUMN).is_err());
}

/// Regression: `{"CommandLine": "notepad.exe", "CommandLine": "mimikatz.exe"}`
/// was evaluated with one of its values, while consumers differ on which
/// one counts (JavaScript and Python take the last, others the first): an
/// attacker could hide behind the difference. Such an event is a dead
/// letter that names the key, and the events around it decode.
#[test]
fn an_object_with_a_key_twice_is_a_dead_letter_naming_it() {
    let (batch, dead) = decode(&[
        r#"{"a": 0}"#,
        r#"{"CommandLine": "notepad.exe", "CommandLine": "mimikatz.exe"}"#,
        r#"{"n": null, "n": "x"}"#,
        r#"{"o": {"k": 1}, "o": {"k": 2}}"#,
        r#"{"o": {"k": 1}, "o.k": 2}"#,
        r#"{"l": [1], "l": 2}"#,
        r#"{"a": 3}"#,
    ]);
    let reasons: Vec<(u64, &str)> = dead.iter().map(|d| (d.line, d.reason.as_str())).collect();
    let twice = |line: u64, column: u32, key: &str| {
        (
            line,
            format!("ambiguous JSON at column {column}: duplicate key '{key}': consumers disagree on which value counts, so the event is not evaluated"),
        )
    };
    let expected = [
        twice(2, 60, "CommandLine"),
        twice(3, 20, "n"),
        twice(4, 28, "o.k"),
        twice(5, 24, "o.k"),
        twice(6, 17, "l"),
    ];
    assert_eq!(
        reasons,
        expected
            .iter()
            .map(|(l, r)| (*l, r.as_str()))
            .collect::<Vec<_>>()
    );
    let b = batch.unwrap();
    assert_eq!(b.num_rows(), 2);
    assert_eq!(
        column(&b, "a").as_primitive::<Int64Type>().values(),
        &[0, 3]
    );
    assert!(b.schema().index_of("CommandLine").is_err());
}

#[test]
fn a_record_failing_half_way_leaves_no_trace() {
    let (batch, dead) = decode(&[
        r#"{"s": "one", "n": 1, "l": ["x"]}"#,
        r#"{"s": "two", "n": 2, "new": {"col": true}, "l": ["y", "z"], "t": "tt", oops}"#,
        r#"{"s": "dos", "l": [1, {"a": "b"}, nope]}"#,
        r#"{"s": "three", "t": "u", "l": ["w"]}"#,
    ]);
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(
        (dead[0].line, dead[0].reason.as_str()),
        (2, "invalid JSON at column 72: key must be a string")
    );
    assert_eq!(dead[1].line, 3);
    let b = batch.unwrap();
    assert_eq!(b.num_rows(), 2);
    assert!(b.schema().index_of("new.col").is_err());
    assert_eq!(strings(&b, "s"), [s("one"), s("three")]);
    assert_eq!(strings(&b, "t"), [None, s("u")]);
    let n = column(&b, "n");
    assert_eq!((n.len(), n.null_count()), (2, 1));
    assert_eq!(lists(&b, "l"), [Some(vec![s("x")]), Some(vec![s("w")])]);
    assert_eq!(column_names(&b), [RAW_COLUMN, "s", "n", "l", "t"]);
}

#[test]
fn dead_letters_say_what_is_wrong_and_where() {
    let (batch, dead) = decode(&[
        r#"{"a": 1 "b": 2}"#,
        "{\n  \"a\": 1,\n  \"b\": tru\n}",
        "[1, 2]",
        r#"{"a": 1} x"#,
        r#"{"a": "\x"}"#,
    ]);
    assert!(batch.is_none());
    let reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "invalid JSON at column 9: expected `,` or `}`",
            "invalid JSON at line 4 column 0 of the record: expected ident",
            "not a JSON object: the record is an array",
            "invalid JSON at column 10: trailing characters",
            "invalid JSON at column 9: invalid escape",
        ]
    );
    assert_eq!(
        dead.iter().map(|d| d.line).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert!(dead
        .iter()
        .all(|d| d.source == "t" && d.offset == d.line * 100));
    assert_eq!(dead[2].excerpt, "[1, 2]");
}

#[test]
fn invalid_utf8_is_a_dead_letter_naming_the_byte() {
    let mut d = BatchDecoder::new();
    let source = Arc::from("t");
    let inside = d
        .push(record(b"{\"a\": \"\xc3\x28\"}", 7), &source)
        .unwrap();
    assert_eq!(
        inside.reason,
        "invalid UTF-8 at byte 7 of the record, inside a string"
    );
    assert_eq!((inside.line, inside.offset), (7, 700));
    assert_eq!(inside.excerpt, "{\"a\": \"\u{fffd}(\"}");
    let outside = d.push(record(b"{\"a\\\"\": 1, \xff}", 8), &source).unwrap();
    assert_eq!(
        outside.reason,
        "invalid UTF-8 at byte 11 of the record, outside any string"
    );
    assert!(d.finish().is_none());
}

#[test]
fn nesting_beyond_the_parser_limit_is_a_dead_letter() {
    let deep = format!("{}{}", "{\"a\":".repeat(200), "}".repeat(200));
    let (batch, dead) = decode(&[&deep, r#"{"ok": 1}"#]);
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason.contains("recursion limit exceeded"),
        "{}",
        dead[0].reason
    );
    assert_eq!(batch.unwrap().num_rows(), 1);
}

#[test]
fn a_batch_is_full_at_batch_bytes_of_records_whatever_its_rows() {
    let config = DecoderConfig {
        batch_bytes: 20,
        ..DecoderConfig::default()
    };
    let mut d = BatchDecoder::with_config(&config);
    let source: Arc<str> = Arc::from("t");
    assert!(d.push(record(br#"{"a": "0123"}"#, 1), &source).is_none());
    assert!(!d.is_full(), "13 bytes of 20");
    // A dead letter adds nothing.
    assert!(d.push(record(br#"{"a": 0123456789"#, 2), &source).is_some());
    assert!(!d.is_full());
    assert!(d.push(record(br#"{"b": 1}"#, 3), &source).is_none());
    assert!(d.is_full() && d.len() == 2, "21 bytes");
    assert_eq!(d.finish().unwrap().batch.num_rows(), 2);
    assert!(!d.is_full());
}

#[test]
fn finish_resets_and_each_batch_has_its_own_schema() {
    let mut d = BatchDecoder::with_batch_size(2);
    let source: Arc<str> = Arc::from("t");
    assert!(d.finish().is_none());
    assert!(d.push(record(br#"{"a": 1}"#, 1), &source).is_none());
    assert!(!d.is_full());
    assert!(d.push(record(br#"{"a": "x"}"#, 2), &source).is_none());
    assert!(d.is_full() && d.len() == 2);
    let first = d.finish().unwrap();
    assert!(d.is_empty() && !d.is_full());
    assert_eq!(first.batch.schema().field(1).data_type(), &DataType::Utf8);
    let lines: Vec<u64> = first.origins.iter().map(|o| o.line).collect();
    assert_eq!(lines, [1, 2]);
    assert!(first.origins.iter().all(|o| &*o.source == "t"));

    assert!(d.push(record(br#"{"b": 2}"#, 3), &source).is_none());
    let second = d.finish().unwrap();
    assert_eq!(column_names(&second.batch), [RAW_COLUMN, "b"]);
    assert_eq!(second.origins[0].offset, 300);
}

#[test]
fn keys_in_another_order_or_after_a_failed_record_land_in_their_columns() {
    // Each record's keys are first looked for where the previous record
    // had them: a change of order, a missing key, a new key and a record
    // rolled back half-way must not misplace a value.
    let (batch, dead) = decode(&[
        r#"{"a": "1", "b": "1", "c": "1"}"#,
        r#"{"b": "2", "a": "2", "c": "2"}"#,
        r#"{"a": "3", "c": "3"}"#,
        r#"{"a": "4", "d": "4", "b": "4", "a": "x"}"#,
        r#"{"a": "5", "d": "5", "b": "5", "c": "5"}"#,
    ]);
    assert_eq!(dead.len(), 1, "the duplicate key: {dead:?}");
    let b = batch.expect("rows");
    let s = |v: &[Option<&str>]| v.iter().map(|x| x.map(str::to_string)).collect::<Vec<_>>();
    assert_eq!(
        strings(&b, "a"),
        s(&[Some("1"), Some("2"), Some("3"), Some("5")])
    );
    assert_eq!(
        strings(&b, "b"),
        s(&[Some("1"), Some("2"), None, Some("5")])
    );
    assert_eq!(
        strings(&b, "c"),
        s(&[Some("1"), Some("2"), Some("3"), Some("5")])
    );
    assert_eq!(strings(&b, "d"), s(&[None, None, None, Some("5")]));
}

/// Decodes `records` into one batch onto `projection` (`None`: every
/// column): the batch, and each record's dead letter reason if refused.
fn decode_onto(
    records: &[String],
    projection: Option<Projection>,
) -> (Option<EventBatch>, Vec<Option<String>>) {
    let mut d = BatchDecoder::new();
    d.set_projection(SharedProjection::new(projection));
    let source: Arc<str> = Arc::from("t");
    let reasons = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            d.push(record(r.as_bytes(), i as u64 + 1), &source)
                .map(|dead| dead.reason)
        })
        .collect();
    (d.finish(), reasons)
}

/// Records of every shape the walker and the visitors take, their kept
/// and skipped fields alike: escapes, arrays, nesting, numbers, nulls,
/// keys twice, and what is not JSON.
fn projection_cases() -> Vec<String> {
    let mut cases: Vec<String> = super::walk::tests::EDGE_CASES
        .iter()
        .chain(&[
            r#"{"a":1,"skip":"x","k":true,"s2":false,"e":null}"#,
            r#"{"skip":{"x":1},"skip.x":2}"#,
            r#"{"p":{"one":{"q":"kept","r":"skipped"}},"nested":{"x":[1,2],"y":"s"}}"#,
            r#"{"e":null,"skip":null,"k":null}"#,
        ])
        .map(|c| c.to_string())
        .collect();
    cases.push(format!(
        "{{\"skip\":{}1{},\"a\":1}}",
        "[".repeat(70),
        "]".repeat(70)
    ));
    cases.push(format!(
        "{{\"skip\":{}1{}}}",
        "[".repeat(200),
        "]".repeat(200)
    ));
    cases.push(format!("{}1{}", "{\"skip\":".repeat(100), "}".repeat(100)));
    let events = include_str!("../../../fixtures/logs/hospital-nord-sysmon.jsonl");
    cases.extend(events.lines().map(str::to_string));
    cases
}

#[test]
fn a_projection_keeps_what_it_names_and_refuses_what_full_decoding_refuses() {
    let cases = projection_cases();
    // One keeping `a`, one skipping it: the edge cases are mostly in `a`.
    for names in [
        &[
            "a", "k", "e", "list", "nested.x", "p.*.q", "Image", "EventID",
        ][..],
        &["k", "e", "b", "p.*.q", "Image"][..],
    ] {
        projected_as_full(&cases, &Projection::new(names, segments));
    }
}

/// Holds decoding onto `projection` to full decoding over `cases`.
fn projected_as_full(cases: &[String], projection: &Projection) {
    // Record by record: the same acceptance and the same reasons.
    for case in cases {
        let one = std::slice::from_ref(case);
        let (_, full) = decode_onto(one, None);
        let (_, projected) = decode_onto(one, Some(projection.clone()));
        assert_eq!(full, projected, "{case}");
    }
    // All at once: the columns named are those of the full batch.
    let (full, reasons) = decode_onto(cases, None);
    let (projected, projected_reasons) = decode_onto(cases, Some(projection.clone()));
    assert_eq!(reasons, projected_reasons);
    let (full, projected) = (full.unwrap(), projected.unwrap());
    assert!(full.projection.is_none());
    assert_eq!(projected.projection.as_deref(), Some(projection));
    let schema = full.batch.schema();
    let kept: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|n| *n == RAW_COLUMN || projection.decodes(n))
        .collect();
    let mut got = column_names(&projected.batch);
    got.retain(|n| n != NULLS_COLUMN);
    assert_eq!(got, kept);
    assert!(
        kept.len() >= 5 && kept.len() < schema.fields().len() / 2,
        "{kept:?}"
    );
    for name in kept {
        assert_eq!(
            column(&projected.batch, name).to_data(),
            column(&full.batch, name).to_data(),
            "{name}"
        );
    }
    // Nulls are listed for the columns kept.
    let nulls = lists(&projected.batch, NULLS_COLUMN);
    let listed: Vec<String> = nulls.into_iter().flatten().flatten().flatten().collect();
    assert!(listed.contains(&"e".to_string()) && listed.contains(&"k".to_string()));
    assert!(listed.iter().all(|n| projection.decodes(n)));
}

#[test]
fn a_batch_decoded_onto_a_projection_is_decoded_again_in_full() {
    let cases = projection_cases();
    let projection = Projection::new(["a"], segments);
    let (full, _) = decode_onto(&cases, None);
    let (projected, _) = decode_onto(&cases, Some(projection.clone()));
    let (full, projected) = (full.unwrap(), projected.unwrap());
    assert!(projected.covers(Some(&projection)));
    assert!(!projected.covers(Some(&Projection::new(["a", "k"], segments))));
    assert!(!projected.covers(None));
    assert!(full.covers(Some(&projection)) && full.covers(None));
    let again = projected.decoded_again(None).expect("decodes");
    assert_eq!(again.batch, full.batch);
    assert_eq!(again.origins, projected.origins);
    assert!(again.covers(None));
    let narrower = full.decoded_again(Some(Arc::new(projection))).unwrap();
    assert_eq!(narrower.batch, projected.batch);
}

#[test]
fn a_new_projection_applies_from_the_next_batch() {
    let shared = SharedProjection::new(Some(Projection::new(["a"], segments)));
    let mut d = BatchDecoder::new();
    d.set_projection(shared.clone());
    let source: Arc<str> = Arc::from("t");
    let push = |d: &mut BatchDecoder| {
        assert!(d.push(record(br#"{"a":1,"b":2}"#, 1), &source).is_none());
    };
    push(&mut d);
    shared.set(None);
    push(&mut d);
    let first = d.finish().unwrap();
    assert_eq!(first.batch.num_columns(), 2, "{:?}", first.batch.schema());
    push(&mut d);
    let second = d.finish().unwrap();
    assert_eq!(second.batch.num_columns(), 3);
    assert!(second.projection.is_none());
}

/// The projection of the Windows profile's shape: `Message` read only in
/// the Application log's rows, the channel in either of its columns.
fn message_in_application() -> Projection {
    let channels = ["Channel", "Event.System.Channel"];
    let gate = Gate::new(channels, ["Application"]).expect("an ASCII gate");
    Projection::new(["EventID"], segments).gated([("Message".to_string(), gate)])
}

/// A gated column holds, in the rows that meet its gate (wherever in the
/// record the gate's column lies, and when a value there cannot be told),
/// what full decoding gives, and nothing in the others; every record is
/// accepted or refused as full decoding does, for the same reason.
#[test]
fn a_gated_column_is_decoded_in_the_rows_that_meet_its_gate() {
    // Each record, and whether its row meets the gate (refused: `None`).
    let cases: &[(&str, Option<bool>)] = &[
        (
            r#"{"Channel":"Application","Message":"before"}"#,
            Some(true),
        ),
        (
            r#"{"Message":"after\r\n\tit","Channel":"APPLICATION"}"#,
            Some(true),
        ),
        (
            r#"{"Channel":"Security","Message":"other log"}"#,
            Some(false),
        ),
        (
            r#"{"Message":"other log\r\n","Channel":"Security"}"#,
            Some(false),
        ),
        (r#"{"Message":"no channel","EventID":1}"#, Some(false)),
        (
            r#"{"Event":{"System":{"Channel":"application"}},"Message":"nested"}"#,
            Some(true),
        ),
        (
            r#"{"Message":"two","Channel":"System","Event":{"System":{"Channel":"Application"}}}"#,
            Some(true),
        ),
        (
            r#"{"Channel":5,"Message":"a number cannot be told"}"#,
            Some(true),
        ),
        (
            r#"{"Channel":"Applicatiön","Message":"nor a non-ASCII name"}"#,
            Some(true),
        ),
        (
            r#"{"Channel":["Application"],"Message":"nor a list"}"#,
            Some(true),
        ),
        (
            r#"{"Channel":"System","Message":["a list", 1, {"b":null}]}"#,
            Some(false),
        ),
        (
            r#"{"Message":["a list", 1, {"b":null}],"Channel":"Application"}"#,
            Some(true),
        ),
        (r#"{"Message":"a","Message":"b","Channel":"System"}"#, None),
        (
            r#"{"Message":"a","Channel":"Application","Message":"b"}"#,
            None,
        ),
        (
            r#"{"Message":"a","Channel":"Application","Message":"b"}"#,
            None,
        ),
        (r#"{"Message":"\x","Channel":"System"}"#, None),
        (r#"{"Message":"a	tab","Channel":"System"}"#, None),
        (r#"{"Message":"\ud800","Channel":"System"}"#, None),
        // The walker leaves a surrogate pair to the visitors, which
        // decode every column of the record.
        (
            r#"{"Message":"\u00e9\ud83d\ude00","Channel":"System"}"#,
            Some(true),
        ),
        (
            r#"{"Message":"\u00e9\ud83d\ude00","Channel":"Application"}"#,
            Some(true),
        ),
    ];
    let records: Vec<String> = cases.iter().map(|(r, _)| r.to_string()).collect();
    let (full, reasons) = decode_onto(&records, None);
    let (gated, gated_reasons) = decode_onto(&records, Some(message_in_application()));
    assert_eq!(reasons, gated_reasons);
    for ((record, meets), reason) in cases.iter().zip(&reasons) {
        assert_eq!(meets.is_none(), reason.is_some(), "{record}: {reason:?}");
    }
    let (full, gated) = (full.unwrap(), gated.unwrap());
    let meets: Vec<bool> = cases.iter().filter_map(|(_, m)| *m).collect();
    let expected: Vec<Option<String>> = strings(&full.batch, "Message")
        .into_iter()
        .zip(&meets)
        .map(|(value, meets)| value.filter(|_| *meets))
        .collect();
    assert_eq!(strings(&gated.batch, "Message"), expected);
    assert_eq!(
        strings(&gated.batch, "Channel"),
        strings(&full.batch, "Channel"),
        "a gate's column is decoded in every row"
    );
    assert!(meets.iter().any(|m| !m) && meets.iter().filter(|m| **m).count() >= 8);
}

/// A batch decoded onto a gated projection serves only a projection
/// gating its columns alike.
#[test]
fn a_gated_projection_covers_only_the_same_gates() {
    let gated = message_in_application();
    let everywhere = Projection::new(
        ["EventID", "Message", "Channel", "Event.System.Channel"],
        segments,
    );
    let other = Projection::new(["EventID"], segments).gated([(
        "Message".to_string(),
        Gate::new(["Channel", "Event.System.Channel"], ["Security"]).unwrap(),
    )]);
    assert!(gated.covers(&message_in_application()) && gated == message_in_application());
    assert!(!gated.covers(&everywhere) && everywhere.covers(&gated));
    assert!(!gated.covers(&other) && gated != other);
    assert!(gated.decodes("Message") && gated.decodes("Channel"));
    assert_eq!(gated.gated_len(), 1);
    // A column something reads in every row is not gated.
    let both = Projection::new(["Message"], segments).gated([(
        "Message".to_string(),
        Gate::new(["Channel"], ["Application"]).unwrap(),
    )]);
    assert_eq!(both.gated_len(), 0);
    // Nor is a pattern, whose columns are still filled.
    let pattern = Projection::new(["EventID"], segments).gated([(
        "Event.*.Message".to_string(),
        Gate::new(["Channel"], ["Application"]).unwrap(),
    )]);
    assert_eq!(pattern.gated_len(), 0);
    assert!(pattern.decodes("Event.UserData.Message") && !pattern.decodes("Event.UserData"));
}

/// Strings skipped unread (outside the projection, or gated in a row
/// that does not meet the gate), with escapes at every offset around
/// the 64-byte blocks they are read in, valid and not, are refused
/// exactly as when they are decoded.
#[test]
fn skipped_strings_with_escapes_anywhere_are_checked_as_decoded_ones() {
    const ESCAPES: &[&str] = &[
        r"\\",
        r"\n",
        r"\\\\",
        r#"\\\""#,
        r"\\\\\\\n",
        r#"\""#,
        r"\u00e9",
        r"\ud83d\ude00",
        r"\ud800",
        r"\x",
        r"\u00",
        "\u{1}",
        "\\\u{1}",
        "\t",
    ];
    let skipping = [Projection::new(["n"], segments), message_in_application()];
    let mut checked = 0;
    for before in (0..70).chain(120..136) {
        for after in [0, 1, 63, 64, 65, 130] {
            for escape in ESCAPES {
                let text = format!(
                    "{}{escape}{}",
                    "a".repeat(before),
                    "\\r\\nb".repeat(after / 4)
                );
                for record in [
                    format!(r#"{{"Message":"{text}","n":1}}"#),
                    format!(r#"{{"n":1,"Channel":"System","Message":"{text}"}}"#),
                    format!(r#"{{"Message":"{text}"}}"#),
                ] {
                    let one = std::slice::from_ref(&record);
                    let (_, full) = decode_onto(one, None);
                    for projection in &skipping {
                        let (_, skipped) = decode_onto(one, Some(projection.clone()));
                        assert_eq!(full, skipped, "{record}");
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 86 * 6 * ESCAPES.len() * 3 * 2);
}
