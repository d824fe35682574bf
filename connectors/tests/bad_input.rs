//! A file mixing good events with every kind of bad input: each good event
//! is decoded, each bad one yields exactly one dead letter naming the
//! problem and its line.

use std::io::Write;

use crate::read;

/// Bytes of a deterministic pseudo-random generator (xorshift).
fn random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

/// Binary garbage on one line: starts with 0x00, holds 0xFF and every
/// other byte value but newline.
fn garbage_line() -> Vec<u8> {
    let mut line = vec![0x00];
    line.extend(
        random_bytes(4096, 0x9e37_79b9_7f4a_7c15)
            .into_iter()
            .filter(|&b| b != b'\n'),
    );
    line.extend([0xff, 0x00, b'{', b'"', b'}', 0xff]);
    let distinct: std::collections::BTreeSet<u8> = line.iter().copied().collect();
    assert_eq!(distinct.len(), 255, "every byte value but newline");
    line.push(b'\n');
    line
}

#[test]
fn every_good_event_decodes_and_each_bad_one_is_one_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    let mut line = |bytes: &[u8]| {
        f.write_all(bytes).unwrap();
        f.write_all(b"\n").unwrap();
    };
    line(br#"{"id": 1, "msg": "ok"}"#); // 1
    line(br#"{"id": 2 "broken": true}"#); // 2: malformed JSON
    f.write_all(&garbage_line()).unwrap(); // 3: binary garbage
    let mut line = |bytes: &[u8]| {
        f.write_all(bytes).unwrap();
        f.write_all(b"\n").unwrap();
    };
    line(br#"{"id": 4}"#); // 4
    line(b"{\"id\": 5, \"s\": \"caf\xe9 \xff\xfe\"}"); // 5: invalid UTF-8 in a string
    let big = format!(r#"{{"id": 6, "big": "{}"}}"#, "x".repeat(10 * 1024 * 1024));
    line(big.as_bytes()); // 6: a 10 MB line
    line(br#"{"id": 7, "msg": "after the big one"}"#); // 7
    line(br#"{"id": 8, "cut": {"a": 1"#); // 8: truncated
    line(br#"{"id": 9}"#); // 9
    line(b"[1, 2]"); // 10: an array of numbers
    line(b"{\n  \"id\": 11,\n  \"pretty\": [1, 2]\n}"); // 11-14
    line(br#"{"id": 15, "s": "unterminated}"#); // 15
    line(br#"{"id": 16, "n": 1.5e3}"#); // 16
    line(br#"{"id": 17, "x": [1, {"y": 2}]}"#); // 17
    line(br#"{"id": 18, "nested": {"deep": tru}}"#); // 18: invalid literal
    f.write_all(br#"{"id": 19, "s": "the input ends"#).unwrap(); // 19: EOF inside
    drop(f);
    let size = std::fs::metadata(&path).unwrap().len();

    for batch_size in [1, 3, 1024] {
        let got = read(&path, batch_size);
        assert_eq!(
            got.ids(),
            [1, 4, 7, 9, 11, 16, 17].map(Some),
            "batch size {batch_size}"
        );
        let dead: Vec<(u64, &str)> = got
            .dead
            .iter()
            .map(|d| (d.line, d.reason.as_str()))
            .collect();
        let expected: [(u64, &str); 9] = [
            (2, "invalid JSON at column 10: expected `,` or `}`"),
            (
                3,
                "not JSON: expected an object, found byte 0x00; skipped to the end of the line",
            ),
            (5, "invalid UTF-8 at byte 19 of the record, inside a string"),
            (6, "record exceeds 4194304 bytes; skipped"),
            (
                8,
                "truncated record: the object is not closed before a new object starts at line 9",
            ),
            (
                10,
                "not JSON: expected an object, found '1'; skipped to the end of the line",
            ),
            (
                15,
                "invalid JSON: a string is not closed before the end of the line",
            ),
            (18, "invalid JSON at column 34: expected ident"),
            (19, "truncated record: the input ends inside an object"),
        ];
        assert_eq!(dead, expected, "batch size {batch_size}");
        assert!(got
            .dead
            .iter()
            .all(|d| d.source == path.display().to_string()));
        assert!(got
            .dead
            .iter()
            .all(|d| d.excerpt.len() <= 3 * vagt_connectors::EXCERPT_BYTES));
        assert!(got.dead[3].excerpt.starts_with(r#"{"id": 6, "big": "xxx"#));
        assert_eq!(
            (got.stats.records, got.stats.dead_letters, got.stats.bytes),
            (7, 9, size)
        );
    }
}
