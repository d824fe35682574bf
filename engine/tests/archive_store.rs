//! The archive in an S3-compatible object store: moto's S3 server (from
//! PyPI, which `.ci/run` installs) on a loopback port. A run uploads what
//! it commits; hunts and SQL read the store; a damaged object is skipped
//! and named; a store that cannot be reached leaves the files waiting in
//! the local folder, and the next run uploads them.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::archive::vagt_ok_with as vagt;
use crate::cli::repo;
use crate::support::{eventually, json_lines};

const BUCKET: &str = "vagt-archive";

/// A moto S3 server on a free loopback port, stopped when dropped.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "moto_server (an S3-compatible server) on PATH: `.ci/run` installs it; by hand, \
                 `python3 -m venv V && V/bin/pip install 'moto[server]==5.2.5'` and put V/bin on PATH",
            );
        let server = Moto { child, port };
        eventually("moto listens", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        server.put(&format!("/{BUCKET}"), &[]);
        server
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// PUTs `body` at `path` (a bucket, or an object in it).
    fn put(&self, path: &str, body: &[u8]) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("body");
        std::fs::write(&file, body).unwrap();
        let out = Command::new("curl")
            .args(["-sf", "-X", "PUT", "--data-binary"])
            .arg(format!("@{}", file.display()))
            .arg(format!("{}{path}", self.endpoint()))
            .output()
            .unwrap();
        assert!(out.status.success(), "PUT {path}: {out:?}");
    }

    /// The keys of the bucket's objects.
    fn keys(&self) -> Vec<String> {
        let out = Command::new("curl")
            .arg("-sf")
            .arg(format!(
                "{}/{BUCKET}?list-type=2&max-keys=1000",
                self.endpoint()
            ))
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        listing
            .split("<Key>")
            .skip(1)
            .filter_map(|k| k.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// The environment a reader of the store needs (credentials are
    /// moto's defaults).
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A config running the default fixtures into `spool`, uploaded to the
/// store at `endpoint`.
fn config(dir: &Path, name: &str, endpoint: &str, logs: bool) -> std::path::PathBuf {
    let fixtures = repo().join("fixtures");
    let inputs = if logs {
        format!(
            "[{{path: {}}}, {{path: {}}}]",
            s(&fixtures.join("logs/hospital-nord-sysmon.jsonl")),
            s(&fixtures.join("logs/region-security-evtx.json"))
        )
    } else {
        std::fs::write(dir.join("empty.jsonl"), "").unwrap();
        format!("[{{path: {}}}]", s(&dir.join("empty.jsonl")))
    };
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "rules: [{}]\ncatalog: {}\ninputs: {inputs}\noutput: {}\nprogress: never\narchive:\n  dir: {}\n  store: {{url: 's3://{BUCKET}/archive', endpoint: '{endpoint}', allow_http: true}}\n",
            s(&fixtures.join("rules")),
            s(&fixtures.join("catalog.yaml")),
            s(&dir.join(format!("{name}.alerts.jsonl"))),
            s(&dir.join("spool")),
        ),
    )
    .unwrap();
    path
}

fn parquet_in(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        .count()
}

fn ids(path: &Path) -> BTreeSet<String> {
    json_lines(path)
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_archive_in_an_object_store_is_uploaded_hunted_and_queried() {
    let moto = Moto::start();
    let env = moto.env();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Streaming uploads every committed file and leaves none behind.
    let streamed = config(d, "stream.yaml", &moto.endpoint(), true);
    let stats = vagt(
        &["run", "--config", s(&streamed)],
        &d.join("stream.json"),
        &env,
    );
    let archive = &stats["archive"];
    let files = archive["files"].as_u64().unwrap();
    assert!(files > 1, "{stats}");
    assert_eq!(archive["store"]["uploaded"], files, "{stats}");
    assert_eq!(archive["store"]["pending"], 0, "{stats}");
    assert_eq!(archive["store"]["failures"], 0, "{stats}");
    assert_eq!(
        parquet_in(&d.join("spool")),
        0,
        "uploaded files leave the folder"
    );
    let keys = moto.keys();
    assert_eq!(
        keys.iter().filter(|k| k.ends_with(".parquet")).count() as u64,
        files
    );
    assert!(
        keys.iter().all(|k| k.starts_with("archive/actor=")),
        "{keys:?}"
    );

    // Hunting the store gives the stream's alerts, with the same ids.
    let hunted = d.join("hunted.jsonl");
    let store = format!("s3://{BUCKET}/archive");
    let rules = repo().join("fixtures/rules");
    let catalog = repo().join("fixtures/catalog.yaml");
    // A hunt of the store into `out` with `extra` flags: its scan's report.
    let hunt = |out: &Path, extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "hunt",
            &store,
            "--rules",
            s(&rules),
            "--catalog",
            s(&catalog),
        ];
        args.extend(["--output", s(out)]);
        args.extend_from_slice(extra);
        let stats = vagt(&args, &out.with_extension("json"), &env);
        stats["archive_scans"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .clone()
    };
    let scan = hunt(&hunted, &[]);
    assert_eq!(ids(&hunted), ids(&d.join("stream.yaml.alerts.jsonl")));
    assert_eq!(scan["files"], files, "{scan}");

    // One organisation's day: only that partition's objects are read.
    let partition = "archive/actor=kom-fjordby/date=2025-03-14/";
    let in_partition = keys.iter().filter(|k| k.starts_with(partition)).count() as u64;
    assert!(in_partition > 0 && in_partition < files, "{keys:?}");
    let one_day = d.join("one-day.jsonl");
    let scan = hunt(&one_day, &crate::archive::ONE_DAY);
    assert_eq!(scan["files"], in_partition, "{scan}");

    // A damaged object is named and skipped; the rest is still searched,
    // by hunts and by SQL.
    moto.put(
        &format!("/{BUCKET}/archive/actor=kom-fjordby/date=2025-03-14/part-damaged.parquet"),
        b"not parquet at all",
    );
    let again = d.join("again.jsonl");
    let scan = hunt(&again, &[]);
    let skipped = scan["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{scan}");
    assert!(
        skipped[0]
            .as_str()
            .unwrap()
            .contains("part-damaged.parquet"),
        "{scan}"
    );
    assert_eq!(ids(&again), ids(&hunted));

    let out = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args([
            "sql",
            "SELECT actor, count(*) AS n FROM events GROUP BY actor ORDER BY actor",
            &store,
        ])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("part-damaged.parquet"), "{stderr}");
    let counted: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(counted, archive["rows"].as_u64().unwrap());
}

#[test]
fn files_a_store_does_not_take_wait_in_the_folder_for_the_next_run() {
    let moto = Moto::start();
    let env = moto.env();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Nothing listens on this port: every upload fails.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let down = config(d, "down.yaml", &nowhere, true);
    let stats = vagt(&["run", "--config", s(&down)], &d.join("down.json"), &env);
    let files = stats["archive"]["files"].as_u64().unwrap();
    assert!(files > 0);
    assert_eq!(stats["archive"]["store"]["uploaded"], 0, "{stats}");
    assert_eq!(stats["archive"]["store"]["pending"], files, "{stats}");
    assert!(
        stats["archive"]["store"]["failures"].as_u64().unwrap() > 0,
        "{stats}"
    );
    assert_eq!(parquet_in(&d.join("spool")) as u64, files, "kept, not lost");

    // The next run, with the store back, uploads what waited.
    let up = config(d, "up.yaml", &moto.endpoint(), false);
    let stats = vagt(&["run", "--config", s(&up)], &d.join("up.json"), &env);
    assert_eq!(stats["archive"]["store"]["uploaded"], files, "{stats}");
    assert_eq!(stats["archive"]["store"]["pending"], 0, "{stats}");
    assert_eq!(parquet_in(&d.join("spool")), 0);
    assert_eq!(
        moto.keys()
            .iter()
            .filter(|k| k.ends_with(".parquet"))
            .count() as u64,
        files
    );
}
