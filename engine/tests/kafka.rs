//! Kafka: two vagt instances in one consumer group against a real
//! Kafka-protocol broker (`.ci/run` starts it on 127.0.0.1:19092).
//!
//! They split the topic's partitions; one is stopped mid-stream; every
//! event's alert is still emitted at least once, and the group's committed
//! offsets reach the end of every partition.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::Value;

use crate::metrics::{free_port, scrape};
use crate::support::{eventually, fixtures, json_lines, make_fifo, Vagt};

/// Where `.ci/run` starts the broker.
const BROKER: &str = "127.0.0.1:19092";
const PARTITIONS: i32 = 4;
const EVENTS: u64 = 300;

/// Fails loudly when no broker listens: these tests must not pass by
/// skipping.
pub(crate) fn require_broker() {
    let addr: std::net::SocketAddr = BROKER.parse().unwrap();
    if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
        panic!(
            "no Kafka-protocol broker at {BROKER}: run the tests with .ci/run, which installs and \
             starts one (tansu), or start it as .ci/run does"
        );
    }
}

/// A new topic of `partitions` partitions and a group name, both unique to
/// this run.
pub(crate) fn fresh_topic(kind: &str, partitions: i32) -> (String, String) {
    let unique = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let topic = format!("vagt-{kind}-{unique}");
    create_topic(&topic, partitions);
    (topic, format!("vagt-{kind}-group-{unique}"))
}

fn create_topic(topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", BROKER)
        .create()
        .expect("admin client");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let results = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("create_topics answers");
    for result in results {
        result.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// An event that the bundled Office-spawns-shell rule matches, made unique
/// by `seq`.
fn event(seq: u64) -> String {
    let line = std::fs::read_to_string(fixtures().join("logs/hospital-nord-sysmon.jsonl"))
        .unwrap()
        .lines()
        .nth(2)
        .unwrap()
        .to_string();
    let mut event: Value = serde_json::from_str(&line).unwrap();
    event["seq"] = Value::from(seq);
    event.to_string()
}

/// Records where the broker put each produced message.
#[derive(Default)]
struct Deliveries(Mutex<Vec<(i32, i64)>>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let message = result.as_ref().expect("message delivered");
        self.0
            .lock()
            .unwrap()
            .push((message.partition(), message.offset()));
    }
}

/// Produces the events `seqs`; returns (partition, offset) of each.
///
/// One message per record batch: a consumer that pauses (a full pipeline)
/// resumes from inside a batch, and tansu 0.6.0 answers such a fetch with
/// the next batch, skipping the rest of this one, where Kafka answers with
/// the batch that holds the offset (checked against tansu: a fetch from
/// offset 5 of a 10-record batch returns nothing).
pub(crate) fn produce(topic: &str, seqs: std::ops::Range<u64>) -> Vec<(i32, i64)> {
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", BROKER)
        .set("batch.num.messages", "1")
        .create_with_context(Deliveries::default())
        .expect("producer");
    let seqs_len = seqs.end - seqs.start;
    for seq in seqs {
        let key = seq.to_string();
        let payload = event(seq);
        let mut record = BaseRecord::to(topic).key(&key).payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back)) => {
                    assert!(
                        e.to_string().contains("Queue full"),
                        "producing to {topic}: {e}"
                    );
                    producer.poll(Duration::from_millis(50));
                    record = back;
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
    let delivered = std::mem::take(&mut *producer.context().0.lock().unwrap());
    assert_eq!(
        delivered.len() as u64,
        seqs_len,
        "every message acknowledged"
    );
    delivered
}

/// The config of instance `name`, with `extra` top-level settings (YAML
/// lines).
fn write_config(
    dir: &Path,
    name: &str,
    (topic, group): (&str, &str),
    metrics_port: u16,
    extra: &str,
) -> std::path::PathBuf {
    let config = format!(
        r#"rules: ["{rules}"]
catalog: "{catalog}"
inputs:
  - kafka:
      brokers: "{BROKER}"
      topics: ["{topic}"]
      group_id: "{group}"
      commit_interval: 200ms
      options: {{session.timeout.ms: "6000", heartbeat.interval.ms: "500"}}
    format: windows
    actor: rnv-hospital-nord
output: "{out}"
dead_letters: "{dead}"
progress: never
metrics_listen: "127.0.0.1:{metrics_port}"
{extra}"#,
        rules = fixtures().join("rules").display(),
        catalog = fixtures().join("catalog.yaml").display(),
        out = dir.join(format!("{name}.jsonl")).display(),
        dead = dir.join(format!("{name}-dead.jsonl")).display(),
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, config).unwrap();
    path
}

/// The seqs of the events alerted on in `files`, read without parsing
/// whole alerts (there are thousands).
fn seqs(files: &[&Path]) -> BTreeSet<u64> {
    let mut seen = BTreeSet::new();
    for file in files {
        for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
            let Some(at) = line.find("\"seq\":") else {
                continue;
            };
            let digits: String = line[at + 6..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            seen.extend(digits.parse::<u64>().ok());
        }
    }
    seen
}

/// seq → partitions its alerts came from, over the alert files.
fn alerted(files: &[&Path]) -> BTreeMap<u64, BTreeSet<String>> {
    let mut seen: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        for alert in json_lines(file) {
            let seq = alert["event"]["seq"]
                .as_u64()
                .expect("alert carries its event");
            let input = alert["source"]["input"].as_str().unwrap().to_string();
            assert_eq!(alert["actor"], "rnv-hospital-nord");
            seen.entry(seq).or_default().insert(input);
        }
    }
    seen
}

#[test]
fn two_instances_share_partitions_and_a_stopped_one_loses_nothing() {
    require_broker();
    let dir = tempfile::tempdir().unwrap();
    let (topic, group) = fresh_topic("events", PARTITIONS);
    let out_a = dir.path().join("a.jsonl");
    let out_b = dir.path().join("b.jsonl");

    let metrics_b = free_port();
    let group_of = (topic.as_str(), group.as_str());
    let mut a = Vagt::with_config(&write_config(dir.path(), "a", group_of, free_port(), ""));
    let mut b = Vagt::with_config(&write_config(dir.path(), "b", group_of, metrics_b, ""));
    a.wait_for("vagt: ready", Duration::from_secs(60));
    b.wait_for("vagt: ready", Duration::from_secs(60));

    // Events go in rounds until both instances have partitions (joining a
    // group takes a rebalance or two), all kept for the final checks.
    let mut delivered = Vec::new();
    let mut next = 0;
    eventually("both instances consuming", Duration::from_secs(120), || {
        delivered.extend(produce(&topic, next..next + 10));
        next += 10;
        std::thread::sleep(Duration::from_millis(300));
        !alerted(&[&out_a]).is_empty() && !alerted(&[&out_b]).is_empty()
    });
    // Then, with the group settled, they split the partitions.
    let settled = next..next + EVENTS / 2;
    delivered.extend(produce(&topic, settled.clone()));
    next = settled.end;
    eventually(
        "alerts on every event so far",
        Duration::from_secs(90),
        || {
            let all = alerted(&[&out_a, &out_b]);
            (0..next).all(|s| all.contains_key(&s))
        },
    );
    let partitions = |file: &Path| -> BTreeSet<String> {
        alerted(&[file])
            .into_iter()
            .filter(|(seq, _)| settled.contains(seq))
            .flat_map(|(_, inputs)| inputs)
            .collect()
    };
    let (pa, pb) = (partitions(&out_a), partitions(&out_b));
    assert!(
        pa.is_disjoint(&pb),
        "the group split the partitions: a {pa:?}, b {pb:?}"
    );
    assert_eq!(pa.len() + pb.len(), PARTITIONS as usize);

    // Stop one mid-stream; the other takes over its partitions.
    let (status, stderr_a) = a.terminate();
    assert!(status.success(), "a stops cleanly:\n{stderr_a}");
    let last = next..next + EVENTS / 2;
    delivered.extend(produce(&topic, last.clone()));
    next = last.end;
    eventually(
        "every event alerted at least once",
        Duration::from_secs(120),
        || {
            let all = alerted(&[&out_a, &out_b]);
            (0..next).all(|s| all.contains_key(&s))
        },
    );
    let took_over: BTreeSet<String> = alerted(&[&out_b])
        .into_iter()
        .filter(|(seq, _)| last.contains(seq))
        .flat_map(|(_, inputs)| inputs)
        .collect();
    assert_eq!(
        took_over.len(),
        PARTITIONS as usize,
        "b now reads every partition"
    );
    // b publishes its lag on every partition, and it comes down to nothing.
    let lags = |body: &str| -> Vec<f64> {
        body.lines()
            .filter(|l| l.starts_with("vagt_kafka_consumer_lag{") && l.contains(&topic))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect()
    };
    eventually(
        "b's consumer lag on every partition, caught up",
        Duration::from_secs(60),
        || {
            let lag = lags(&scrape(metrics_b));
            lag.len() == PARTITIONS as usize && lag.iter().all(|&l| l == 0.0)
        },
    );
    let (status, stderr_b) = b.terminate();
    assert!(status.success(), "b stops cleanly:\n{stderr_b}");
    assert!(!stderr_b.contains("kafka commit"), "{stderr_b}");

    // Committed offsets are at the end of every partition.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", BROKER)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(&topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    // The end of each partition, as the broker acknowledged the produced
    // messages (this broker's watermark answer can lag behind).
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for (partition, offset) in delivered {
        let end = ends.entry(partition).or_default();
        *end = (*end).max(offset + 1);
    }
    let mut total = 0;
    for p in 0..PARTITIONS {
        let end = ends.get(&p).copied().unwrap_or(0);
        let offset = committed.find_partition(&topic, p).unwrap().offset();
        assert_eq!(
            offset,
            Offset::Offset(end),
            "partition {p}: committed vs end"
        );
        total += end;
    }
    assert_eq!(total as u64, next);
    // Nothing was refused.
    assert!(json_lines(&dir.path().join("a-dead.jsonl")).is_empty());
    assert!(json_lines(&dir.path().join("b-dead.jsonl")).is_empty());
}

/// The committed offset of each partition of `topic` for `group`.
pub(crate) fn committed(topic: &str, group: &str, partitions: i32) -> Vec<Offset> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", BROKER)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| committed.find_partition(topic, p).unwrap().offset())
        .collect()
}

#[test]
fn with_windowed_rules_offsets_wait_for_the_saved_window_state() {
    require_broker();
    let dir = tempfile::tempdir().unwrap();
    let (topic, group) = fresh_topic("logons", 1);
    std::fs::write(
        dir.path().join("rules.yml"),
        r#"title: Failed logon
id: 5a0f7c1e-2a4b-4c6d-8e9f-0a1b2c3d4e01
name: failed_logon
logsource: {product: windows, service: security}
detection:
  selection: {EventID: 4625}
  condition: selection
level: low
---
title: Failed logons from one address
id: 5a0f7c1e-2a4b-4c6d-8e9f-0a1b2c3d4e02
correlation:
  type: event_count
  rules: [failed_logon]
  group-by: [IpAddress]
  timespan: 10m
  condition: {gte: 3}
level: high
"#,
    )
    .unwrap();
    let config = dir.path().join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            r#"rules: [rules.yml]
inputs:
  - kafka: {{brokers: "{BROKER}", topics: ["{topic}"], group_id: "{group}", commit_interval: 100ms}}
output: alerts.jsonl
progress: never
windows: {{allowed_lateness: 0s, state_file: state.json, snapshot_interval: 1h}}
"#
        ),
    )
    .unwrap();
    let mut vagt = Vagt::with_config(&config);
    vagt.wait_for("vagt: ready", Duration::from_secs(60));
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", BROKER)
        .create()
        .unwrap();
    for second in 1..=3 {
        let event = format!(
            r#"{{"@timestamp": "2026-03-02T10:00:0{second}.000Z", "Channel": "Security", "EventID": 4625, "IpAddress": "10.0.0.9"}}"#
        );
        producer
            .send(BaseRecord::<(), _>::to(&topic).payload(&event))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    eventually("the windowed alert", Duration::from_secs(60), || {
        !json_lines(&alerts).is_empty()
    });
    // Well past the commit interval: nothing is committed while the window
    // state holding these events is not saved.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !matches!(committed(&topic, &group, 1)[0], Offset::Offset(n) if n > 0),
        "committed before the window state was saved"
    );
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("window state and input positions saved"),
        "{stderr}"
    );
    assert_eq!(committed(&topic, &group, 1), [Offset::Offset(3)]);
}

#[test]
fn a_consumer_held_back_by_a_full_pipeline_still_hands_over_partitions() {
    require_broker();
    let dir = tempfile::tempdir().unwrap();
    let (topic, group) = fresh_topic("held", PARTITIONS);
    let group_of = (topic.as_str(), group.as_str());
    // A's alerts go to a FIFO nobody reads yet, through the smallest
    // queues: its consumer is soon held back by a full pipeline.
    let out_a = dir.path().join("a.jsonl");
    make_fifo(&out_a);
    let metrics_a = free_port();
    let small = "decoder: {batch_size: 1}\nchannel_capacity: 1\n";
    let mut a = Vagt::with_config(&write_config(dir.path(), "a", group_of, metrics_a, small));
    a.wait_for("vagt: ready", Duration::from_secs(60));
    // More than a live input's queue (4,096 messages) holds.
    let events = 5_000;
    produce(&topic, 0..events);
    eventually("a has its partitions", Duration::from_secs(60), || {
        scrape(metrics_a).contains("vagt_kafka_rebalances_total{kind=\"assign\"}")
    });
    std::thread::sleep(Duration::from_secs(2));
    let revokes = || {
        crate::metrics::value(
            &scrape(metrics_a),
            "vagt_kafka_rebalances_total{kind=\"revoke\"}",
        )
        .unwrap_or(0.0)
    };
    let revoked_before = revokes();
    // B joins: A must give up partitions while held back, which it can
    // only if it goes on polling (else its revoke waits for room).
    let out_b = dir.path().join("b.jsonl");
    let mut b = Vagt::with_config(&write_config(dir.path(), "b", group_of, free_port(), ""));
    b.wait_for("vagt: ready", Duration::from_secs(60));
    eventually(
        "a, held back, gives up partitions",
        Duration::from_secs(60),
        || revokes() > revoked_before,
    );
    // Now A's output is read: between them, every event alerts.
    let read_a = dir.path().join("a-read.jsonl");
    let reader = {
        let (fifo, copy) = (out_a.clone(), read_a.clone());
        std::thread::spawn(move || {
            use std::io::{BufRead, Write};
            let mut copy = std::fs::File::create(copy).unwrap();
            for line in std::io::BufReader::new(std::fs::File::open(fifo).unwrap()).lines() {
                writeln!(copy, "{}", line.unwrap()).unwrap();
            }
        })
    };
    eventually("every event alerted", Duration::from_secs(120), || {
        std::thread::sleep(Duration::from_millis(500));
        let seen = seqs(&[&read_a, &out_b]);
        (0..events).all(|s| seen.contains(&s))
    });
    let (status, stderr_a) = a.terminate();
    assert!(status.success(), "{stderr_a}");
    reader.join().unwrap();
    let (status, stderr_b) = b.terminate();
    assert!(status.success(), "{stderr_b}");
}

#[test]
fn failed_commits_are_counted_and_a_failed_last_commit_fails_the_run() {
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    // A mock broker (in this process) that refuses every offset commit.
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("refused-commits", 1, 1).unwrap();
    cluster.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED; 500],
    );
    let brokers = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for seq in 0..3 {
        let payload = event(seq);
        producer
            .send(BaseRecord::<(), _>::to("refused-commits").payload(&payload))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_port();
    let config = write_config(dir.path(), "a", ("refused-commits", "refused"), metrics, "");
    let config_text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(BROKER, &brokers);
    std::fs::write(&config, config_text).unwrap();
    let mut vagt = Vagt::with_config(&config);
    vagt.wait_for("vagt: ready", Duration::from_secs(60));
    let out = dir.path().join("a.jsonl");
    eventually("the alerts", Duration::from_secs(60), || {
        json_lines(&out).len() == 3
    });
    eventually("failed commits counted", Duration::from_secs(30), || {
        crate::metrics::value(&scrape(metrics), "vagt_kafka_commit_errors_total")
            .is_some_and(|n| n > 0.0)
    });
    let (status, stderr) = vagt.terminate();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Kafka commit failed"), "{stderr}");
}
