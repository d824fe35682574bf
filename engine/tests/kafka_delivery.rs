//! Kafka and delivery against real Kafka-protocol brokers (tansu): the
//! Kafka output confirmed by a broker that is stopped and started again
//! mid-run, and a Kafka input whose offsets wait for a webhook that is
//! down.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use crate::delivery::{events, write_rule};
use crate::kafka::{fresh_topic, produce, require_broker};

/// The committed offset of the one partition of `topic` for `group` on
/// the shared broker (0 when none).
fn committed(topic: &str, group: &str) -> i64 {
    match crate::kafka::committed(topic, group, 1)[0] {
        Offset::Offset(o) => o,
        _ => 0,
    }
}
use crate::metrics::free_port;
use crate::receiver::Receiver;
use crate::support::{
    alert_ids, append, eventually, fixtures, json_lines, outbox_records, run_with_stats, Vagt,
};

const WAIT: Duration = Duration::from_secs(90);

/// A broker of our own (so that stopping it disturbs no other test), on
/// `port`, keeping topics in memory.
struct Broker {
    port: u16,
    child: Child,
}

impl Broker {
    fn start(port: u16) -> Broker {
        let child = Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("tansu cannot start ({e}): run the tests with .ci/run, which installs it")
            });
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        eventually("the broker listening", Duration::from_secs(20), || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        Broker { port, child }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn create_topic(&self, topic: &str) {
        create_topic(&self.address(), topic);
    }
}

/// Creates `topic` (one partition) at `broker`.
fn create_topic(broker: &str, topic: &str) {
    {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", broker)
            .create()
            .unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let results = runtime
            .block_on(admin.create_topics(
                &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            ))
            .unwrap();
        for result in results {
            result.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
    }
}

impl Broker {
    /// Stops it at once (its topics are lost with it).
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The alert ids in `topic`, read from the start.
    fn alert_ids(&self, topic: &str) -> Vec<String> {
        messages(&self.address(), topic)
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The (key, alert id) of each message in `topic` at `broker`, read from
/// the start until it has been quiet for a second.
fn messages(broker: &str, topic: &str) -> Vec<(String, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", format!("reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut quiet = 0;
    while quiet < 5 {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                quiet = 0;
                let alert: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
                let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
                out.push((key, alert["id"].as_str().unwrap().to_string()));
            }
            _ => quiet += 1,
        }
    }
    out
}

#[test]
fn kafka_output_is_confirmed_and_loses_nothing_when_the_broker_restarts() {
    let dir = tempfile::tempdir().unwrap();
    write_rule(dir.path());
    let events_file = dir.path().join("events.jsonl");
    std::fs::write(&events_file, "").unwrap();
    let broker = Broker::start(free_port());
    let unique = format!("{}-{}", std::process::id(), free_port());
    let topic = format!("alerts-{unique}.rnv-hospital-nord");
    broker.create_topic(&topic);
    let stats_file = dir.path().join("stats.json");
    let config = dir.path().join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            r#"rules: [rule.yml]
profile: passthrough
inputs: [{{tail: events.jsonl, actor: rnv-hospital-nord}}]
outputs:
  - {{name: archive, type: file, path: archive.jsonl}}
  - name: sector
    type: kafka
    brokers: "{broker}"
    topic: "alerts-{unique}.{{actor}}"
    # tansu keeps topics and producer state in memory: the restarted broker
    # does not know the producer, and refuses an idempotent one's retries
    # for ever (a Kafka broker keeps that state across restarts).
    idempotent: false
    options: {{reconnect.backoff.max.ms: "500"}}
dead_letters: dead.jsonl
progress: never
"#,
            broker = broker.address()
        ),
    )
    .unwrap();
    let mut vagt = Vagt::with_stats(&config, &stats_file);
    vagt.wait_for("vagt: ready", WAIT);
    append(&events_file, &events(0, 100));
    let archive = dir.path().join("archive.jsonl");
    eventually("the first alerts confirmed", WAIT, || {
        broker.alert_ids(&topic).len() >= 100
    });
    let first: BTreeSet<String> = alert_ids(&archive).into_iter().collect();
    assert_eq!(
        broker
            .alert_ids(&topic)
            .into_iter()
            .collect::<BTreeSet<_>>(),
        first
    );

    // The broker goes away mid-run; alerts keep coming.
    let port = broker.port;
    broker.kill();
    append(&events_file, &events(100, 100));
    eventually("every alert in the archive", WAIT, || {
        alert_ids(&archive).len() == 200
    });
    std::thread::sleep(Duration::from_secs(2));
    // A Kafka broker keeps its topics across a restart; tansu keeps them in
    // memory. vagt is paused while the broker comes back and the topic is
    // made again, so that it cannot ask for the topic in between and be
    // told, for good, that there is none (which would dead-letter the held
    // alerts: right for a missing topic, not what a restart looks like).
    vagt.signal("STOP");
    let broker = Broker::start(port);
    broker.create_topic(&topic);
    vagt.signal("CONT");
    let second: BTreeSet<String> = alert_ids(&archive)[100..].iter().cloned().collect();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let got: BTreeSet<String> = broker.alert_ids(&topic).into_iter().collect();
        if second.is_subset(&got) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of the {} alerts held while the broker was away arrived:\n{}",
            second.intersection(&got).count(),
            second.len(),
            vagt.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(&stats_file).unwrap()).unwrap();
    let sector = &stats["outputs"]["sector"];
    assert_eq!(sector["failed"], 0, "{stats}");
    assert!(sector["delivered"].as_u64().unwrap() >= 200, "{stats}");
    assert!(json_lines(&dir.path().join("dead.jsonl")).is_empty());
}

#[test]
fn kafka_offsets_wait_for_a_webhook_that_is_down_and_a_restart_delivers_everything() {
    require_broker();
    let dir = tempfile::tempdir().unwrap();
    let (topic, group) = fresh_topic("webhook-down", 1);
    produce(&topic, 0..200);
    let receiver = Receiver::reserve();
    std::fs::create_dir_all(dir.path().join("outbox")).unwrap();
    let config = dir.path().join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            r#"rules: ["{rules}"]
catalog: "{catalog}"
inputs:
  - kafka:
      brokers: "127.0.0.1:19092"
      topics: ["{topic}"]
      group_id: "{group}"
      commit_interval: 200ms
      options: {{session.timeout.ms: "6000", heartbeat.interval.ms: "500"}}
    format: windows
    actor: rnv-hospital-nord
outputs:
  - name: soc
    type: webhook
    url: "{url}/alerts"
    retry: {{initial: 100ms, max: 500ms}}
    outbox: {{dir: outbox, max_bytes: 64KiB}}
    drain: 1s
dead_letters: dead.jsonl
progress: never
decoder: {{batch_size: 10}}
"#,
            rules = fixtures().join("rules").display(),
            catalog = fixtures().join("catalog.yaml").display(),
            url = receiver.url(),
        ),
    )
    .unwrap();
    let mut vagt = Vagt::with_config(&config);
    vagt.wait_for("the outbox is full", WAIT);
    // Give commits every chance to happen.
    std::thread::sleep(Duration::from_secs(2));
    let waiting = outbox_records(&dir.path().join("outbox"));
    let offset = committed(&topic, &group);
    assert!(
        waiting > 0 && waiting < 200,
        "{waiting} alerts in the outbox"
    );
    assert!(
        offset <= waiting as i64,
        "offset {offset} committed past the {waiting} events whose alerts the outbox holds"
    );
    // A run held back by a full outbox cannot finish a graceful stop.
    vagt.signal("KILL");
    let _ = vagt.wait();

    receiver.up();
    let mut vagt = Vagt::with_config(&config);
    vagt.wait_for("vagt: ready", WAIT);
    let seqs = |receiver: &Receiver| -> BTreeSet<u64> {
        receiver
            .alerts()
            .iter()
            .map(|(_, a)| a["event"]["seq"].as_u64().unwrap())
            .collect()
    };
    let deadline = std::time::Instant::now() + WAIT;
    while seqs(&receiver).len() < 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of 200 events alerted at the receiver ({} alerts), offset {}:\n{}",
            seqs(&receiver).len(),
            receiver.alerts().len(),
            committed(&topic, &group),
            vagt.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eventually("offsets committed to the end", WAIT, || {
        committed(&topic, &group) == 200
    });
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    let total = receiver.alerts().len();
    println!(
        "200 events, {total} alerts received ({} again after the restart)",
        total - 200
    );
}

#[test]
fn kafka_output_sends_each_organisation_to_its_own_topic_confirmed() {
    require_broker();
    let dir = tempfile::tempdir().unwrap();
    write_rule(dir.path());
    std::fs::write(dir.path().join("nord.jsonl"), events(0, 30)).unwrap();
    std::fs::write(dir.path().join("syd.jsonl"), events(1000, 20)).unwrap();
    let unique = format!("{}-{}", std::process::id(), free_port());
    let shared = "127.0.0.1:19092";
    for actor in ["rnv-hospital-nord", "rnv-hospital-syd"] {
        create_topic(shared, &format!("alerts-{unique}.{actor}"));
    }
    let config = dir.path().join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            r#"rules: [rule.yml]
profile: passthrough
inputs:
  - {{path: nord.jsonl, actor: rnv-hospital-nord}}
  - {{path: syd.jsonl, actor: rnv-hospital-syd}}
outputs:
  - {{name: archive, type: file, path: archive.jsonl}}
  - {{name: sector, type: kafka, brokers: "{shared}", topic: "alerts-{unique}.{{actor}}"}}
dead_letters: dead.jsonl
progress: never
"#
        ),
    )
    .unwrap();
    let (stats, _) = run_with_stats(&config);
    assert_eq!(
        stats["outputs"]["sector"]["delivered"], 50,
        "confirmed before the end: {stats}"
    );
    assert_eq!(stats["outputs"]["sector"]["failed"], 0, "{stats}");
    let archive = json_lines(&dir.path().join("archive.jsonl"));
    for actor in ["rnv-hospital-nord", "rnv-hospital-syd"] {
        let expected: BTreeSet<String> = archive
            .iter()
            .filter(|a| a["actor"] == actor)
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect();
        let got = messages(shared, &format!("alerts-{unique}.{actor}"));
        assert!(
            got.iter().all(|(key, _)| key == actor),
            "keyed by the organisation"
        );
        let got: BTreeSet<String> = got.into_iter().map(|(_, id)| id).collect();
        assert_eq!(
            got, expected,
            "{actor}'s topic holds its alerts and no other's"
        );
    }
}

#[test]
fn alerts_kafka_refuses_go_to_the_dead_letters_naming_the_output() {
    require_broker();
    let dir = tempfile::tempdir().unwrap();
    write_rule(dir.path());
    // Events whose alerts exceed the producer's message size limit.
    let padding = "x".repeat(3000);
    let events: String = (0..10)
        .map(|i| {
            format!("{{\"msg\": \"login failed\", \"seq\": {i}, \"padding\": \"{padding}\"}}\n")
        })
        .collect();
    std::fs::write(dir.path().join("events.jsonl"), events).unwrap();
    let unique = format!("{}-{}", std::process::id(), free_port());
    let topic = format!("refused-{unique}");
    create_topic("127.0.0.1:19092", &topic);
    let config = dir.path().join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            r#"rules: [rule.yml]
profile: passthrough
inputs: [{{path: events.jsonl}}]
outputs:
  - {{name: archive, type: file, path: archive.jsonl}}
  - {{name: sector, type: kafka, brokers: "127.0.0.1:19092", topic: "{topic}", options: {{message.max.bytes: "1000"}}}}
dead_letters: dead.jsonl
progress: never
"#
        ),
    )
    .unwrap();
    let (stats, stderr) = run_with_stats(&config);
    let dead = json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 10, "{stderr}");
    for letter in &dead {
        assert_eq!(letter["source"], "output sector");
        let reason = letter["reason"].as_str().unwrap();
        assert!(
            reason.contains("Kafka") && reason.to_lowercase().contains("size"),
            "{reason}"
        );
    }
    assert_eq!(
        alert_ids(&dir.path().join("archive.jsonl")).len(),
        10,
        "the archive has them all"
    );
    assert_eq!(stats["outputs"]["sector"]["failed"], 10, "{stats}");
}
