//! An output's on-disk queue: alerts are appended as they come and read
//! back in order by the output's sender, so that they survive the
//! receiver's outage and a restart of vagt, and are delivered in order
//! when it comes back.
//!
//! ```text
//!  OUTBOX/00000000000000000007.log   segments of records, one per line
//!  OUTBOX/00000000000000000008.log   (a new one every 8 MiB)
//!  OUTBOX/cursor                     {"segment": 7, "offset": 1234}: delivered up to here
//! ```
//! A record is `DESTINATION SP PAYLOAD` (the payload is one line of JSON).
//! The writer flushes after each batch and syncs at barriers: a barrier
//! is answered only once what it covers is on disk. The reader commits the
//! cursor after each delivery (written aside and renamed; not synced, as
//! losing it only repeats deliveries), and deletes segments it has passed. A crash can repeat what was delivered
//! after the last committed cursor (duplicates, recognisable by alert id),
//! never lose what a barrier covered. The outbox holds at most `max_bytes`
//! of undelivered records; the writer waits for room, or the caller sends
//! what does not fit to the dead letters.

use std::collections::VecDeque;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, Write};
use tokio::sync::{watch, Notify};

/// A new segment is started once the current one holds this much.
const SEGMENT_BYTES: u64 = 8 << 20;

/// A place in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub(crate) struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// What the writer and the reader share.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    /// Bytes of undelivered records.
    bytes: AtomicU64,
    /// Undelivered records.
    records: AtomicU64,
    /// Signalled when the reader frees room.
    room: Notify,
    /// When each record written by this run was first read (for the
    /// delivery latency), by the position after it.
    received: Mutex<VecDeque<(Position, Instant)>>,
}

/// The writing end.
pub(crate) struct OutboxWriter {
    shared: Arc<Shared>,
    max_bytes: u64,
    segment: u64,
    out: BufWriter<File>,
    len: u64,
    dirty: bool,
    /// The end of what is flushed, for the reader.
    end: watch::Sender<Position>,
}

/// The reading end.
pub(crate) struct OutboxReader {
    shared: Arc<Shared>,
    cursor: Position,
    /// Where the next record starts (past the records read, not yet
    /// committed).
    next: Position,
    end: watch::Receiver<Position>,
    input: Option<(u64, BufReader<File>)>,
}

/// A record read back.
#[derive(Debug)]
pub(crate) struct OutboxRecord {
    pub destination: String,
    pub payload: Vec<u8>,
    /// The position after it.
    pub end: Position,
    /// Its bytes in the outbox.
    pub len: u64,
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.log"))
}

/// The segments in `dir`, in order.
fn segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_suffix(".log")
            .and_then(|n| n.parse::<u64>().ok())
        {
            found.push(n);
        }
    }
    found.sort_unstable();
    Ok(found)
}

fn read_cursor(dir: &Path) -> std::io::Result<Option<Position>> {
    match std::fs::read(dir.join("cursor")) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("cursor: {e}"))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Cuts a segment back to its last complete record (a crash may leave
/// half of one).
fn trim_partial_record(path: &Path) -> std::io::Result<u64> {
    let bytes = std::fs::read(path)?;
    let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if keep < bytes.len() {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(keep as u64)?;
        file.sync_all()?;
    }
    Ok(keep as u64)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Opens the outbox in `dir` (made empty the first time), with what an
/// earlier run left undelivered.
///
/// # Errors
/// The folder or its files cannot be read or written.
pub(crate) async fn open(
    dir: &Path,
    max_bytes: u64,
) -> std::io::Result<(OutboxWriter, OutboxReader)> {
    let dir = dir.to_path_buf();
    let (cursor, segment, len, bytes, records) = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || recover(&dir))
            .await
            .map_err(std::io::Error::other)??
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(&dir, segment))?;
    sync_dir(&dir)?;
    let shared = Arc::new(Shared {
        dir,
        bytes: AtomicU64::new(bytes),
        records: AtomicU64::new(records),
        room: Notify::new(),
        received: Mutex::new(VecDeque::new()),
    });
    let (end, end_rx) = watch::channel(Position {
        segment,
        offset: len,
    });
    Ok((
        OutboxWriter {
            shared: shared.clone(),
            max_bytes,
            segment,
            out: BufWriter::with_capacity(64 * 1024, file),
            len,
            dirty: false,
            end,
        },
        OutboxReader {
            shared,
            cursor,
            next: cursor,
            end: end_rx,
            input: None,
        },
    ))
}

/// The cursor, the segment to append to and its length, and the bytes and
/// records still to deliver.
fn recover(dir: &Path) -> std::io::Result<(Position, u64, u64, u64, u64)> {
    let found = segments(dir)?;
    let mut cursor = read_cursor(dir)?.unwrap_or(Position {
        segment: found.first().copied().unwrap_or(0),
        offset: 0,
    });
    // Segments wholly delivered (a crash between commit and deletion).
    for &s in found.iter().filter(|&&s| s < cursor.segment) {
        std::fs::remove_file(segment_path(dir, s))?;
    }
    let live: Vec<u64> = found.into_iter().filter(|&s| s >= cursor.segment).collect();
    if live.first() != Some(&cursor.segment) {
        cursor = Position {
            segment: live.first().copied().unwrap_or(cursor.segment),
            offset: 0,
        };
    }
    let (mut bytes, mut records, mut last_len) = (0u64, 0u64, 0u64);
    for &s in &live {
        let path = segment_path(dir, s);
        let len = if Some(&s) == live.last() {
            trim_partial_record(&path)?
        } else {
            std::fs::metadata(&path)?.len()
        };
        let content = std::fs::read(&path)?;
        let from = if s == cursor.segment {
            (cursor.offset as usize).min(content.len())
        } else {
            0
        };
        bytes += len.saturating_sub(from as u64);
        records += memchr::memchr_iter(b'\n', &content[from..len as usize]).count() as u64;
        last_len = len;
    }
    let segment = live.last().copied().unwrap_or(cursor.segment);
    Ok((cursor, segment, last_len, bytes, records))
}

impl OutboxWriter {
    /// Whether a record of `len` bytes (destination, payload, separators)
    /// fits.
    pub fn has_room(&self, len: usize) -> bool {
        self.shared.bytes.load(Ordering::Acquire) + len as u64 <= self.max_bytes
    }

    /// Waits until `len` more bytes fit.
    pub async fn wait_for_room(&self, len: usize) {
        loop {
            let notified = self.shared.room.notified();
            if self.has_room(len) {
                return;
            }
            notified.await;
        }
    }

    /// Bytes of undelivered records.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Acquire)
    }

    /// Undelivered records.
    pub fn records(&self) -> u64 {
        self.shared.records.load(Ordering::Acquire)
    }

    /// Appends a record (call [`OutboxWriter::flush`] to hand it to the
    /// reader).
    ///
    /// # Errors
    /// The segment cannot be written.
    pub async fn append(
        &mut self,
        destination: &str,
        payload: &[u8],
        received: Instant,
    ) -> std::io::Result<()> {
        if self.len >= SEGMENT_BYTES {
            self.next_segment().await?;
        }
        let len = destination.len() + 1 + payload.len() + 1;
        // Buffered writes into the page cache: quick enough not to need a
        // blocking thread (syncing does).
        self.out.write_all(destination.as_bytes())?;
        self.out.write_all(b" ")?;
        self.out.write_all(payload)?;
        self.out.write_all(b"\n")?;
        self.len += len as u64;
        self.dirty = true;
        self.shared.bytes.fetch_add(len as u64, Ordering::AcqRel);
        self.shared.records.fetch_add(1, Ordering::AcqRel);
        let end = Position {
            segment: self.segment,
            offset: self.len,
        };
        self.shared
            .received
            .lock()
            .expect("not poisoned")
            .push_back((end, received));
        Ok(())
    }

    /// Hands what was appended to the reader (written to the operating
    /// system, not yet synced).
    ///
    /// # Errors
    /// The segment cannot be written.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.end.send_replace(Position {
            segment: self.segment,
            offset: self.len,
        });
        Ok(())
    }

    /// Puts what was appended on disk.
    ///
    /// # Errors
    /// The segment cannot be synced.
    pub async fn sync(&mut self) -> std::io::Result<()> {
        self.flush().await?;
        if self.dirty {
            let file = self.out.get_ref().try_clone()?;
            tokio::task::spawn_blocking(move || file.sync_data())
                .await
                .map_err(std::io::Error::other)??;
            self.dirty = false;
        }
        Ok(())
    }

    async fn next_segment(&mut self) -> std::io::Result<()> {
        self.sync().await?;
        self.segment += 1;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(&self.shared.dir, self.segment))?;
        sync_dir(&self.shared.dir)?;
        self.out = BufWriter::with_capacity(64 * 1024, file);
        self.len = 0;
        Ok(())
    }
}

impl OutboxReader {
    /// Whether everything written so far has been read.
    pub fn caught_up(&self) -> bool {
        self.next >= *self.end.borrow()
    }

    /// Waits until there is something to read (or the writer is gone).
    pub async fn wait(&mut self) {
        while self.caught_up() {
            if self.end.changed().await.is_err() {
                return;
            }
        }
    }

    /// Reads up to `max` records from where the last read ended, all with
    /// the destination of the first; none if nothing is written yet.
    ///
    /// # Errors
    /// A segment cannot be read or holds a malformed record.
    pub async fn read(&mut self, max: usize) -> std::io::Result<Vec<OutboxRecord>> {
        let mut records: Vec<OutboxRecord> = Vec::new();
        let mut line = Vec::new();
        while records.len() < max {
            let end = *self.end.borrow();
            if self.next >= end {
                break;
            }
            if self.next.segment < end.segment && self.at_segment_end()? {
                self.next = Position {
                    segment: self.next.segment + 1,
                    offset: 0,
                };
                self.input = None;
                continue;
            }
            let input = self.input(self.next)?;
            line.clear();
            let n = input.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("outbox segment {} ends inside a record", self.next.segment),
                ));
            }
            line.pop();
            let Some(space) = memchr::memchr(b' ', &line) else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "outbox segment {}: a record without its destination",
                        self.next.segment
                    ),
                ));
            };
            let destination = String::from_utf8_lossy(&line[..space]).into_owned();
            if records
                .first()
                .is_some_and(|first| first.destination != destination)
            {
                // Another destination: the next read starts with it.
                self.input = None;
                break;
            }
            self.next.offset += n as u64;
            records.push(OutboxRecord {
                destination,
                payload: line[space + 1..].to_vec(),
                end: self.next,
                len: n as u64,
            });
        }
        Ok(records)
    }

    /// Whether the segment being read has no record left.
    fn at_segment_end(&mut self) -> std::io::Result<bool> {
        let len = std::fs::metadata(segment_path(&self.shared.dir, self.next.segment))?.len();
        Ok(self.next.offset >= len)
    }

    /// The segment file positioned at `at`.
    fn input(&mut self, at: Position) -> std::io::Result<&mut BufReader<File>> {
        if self.input.as_ref().is_none_or(|(s, _)| *s != at.segment) {
            let mut file = File::open(segment_path(&self.shared.dir, at.segment))?;
            file.seek(SeekFrom::Start(at.offset))?;
            self.input = Some((at.segment, BufReader::with_capacity(64 * 1024, file)));
        }
        Ok(&mut self.input.as_mut().expect("opened").1)
    }

    /// Goes back to the last committed place (to read again what could not
    /// be delivered).
    pub fn rewind(&mut self) {
        self.next = self.cursor;
        self.input = None;
    }

    /// Marks everything up to `to` (`records` records of `bytes` bytes)
    /// delivered (or dead-lettered): commits the cursor, frees the room, deletes passed segments. Returns when
    /// each record delivered was first read, where known.
    ///
    /// # Errors
    /// The cursor cannot be written.
    pub async fn commit(
        &mut self,
        to: Position,
        records: u64,
        bytes: u64,
    ) -> std::io::Result<Vec<Instant>> {
        let from = self.cursor;
        // Written aside and renamed, not synced: losing the newest cursor
        // to a power cut only repeats deliveries, and a sync per request
        // would bound the rate.
        let dir = &self.shared.dir;
        let tmp = dir.join("cursor.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&to).expect("a position"))?;
        std::fs::rename(&tmp, dir.join("cursor"))?;
        for segment in from.segment..to.segment {
            match std::fs::remove_file(segment_path(dir, segment)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        self.cursor = to;
        sub_saturating(&self.shared.bytes, bytes);
        sub_saturating(&self.shared.records, records);
        self.shared.room.notify_waiters();
        let mut received = self.shared.received.lock().expect("not poisoned");
        let mut times = Vec::new();
        while received.front().is_some_and(|(end, _)| *end <= to) {
            times.push(received.pop_front().expect("a front").1);
        }
        Ok(times)
    }
}

fn sub_saturating(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        Some(v.saturating_sub(n))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(reader: &mut OutboxReader) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let records = reader.read(3).await.unwrap();
            if records.is_empty() {
                return out;
            }
            out.extend(
                records
                    .iter()
                    .map(|r| format!("{} {}", r.destination, String::from_utf8_lossy(&r.payload))),
            );
        }
    }

    #[tokio::test]
    async fn records_come_back_in_order_across_restarts_and_crashes() {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        {
            let (mut writer, mut reader) = open(dir.path(), 1 << 20).await.unwrap();
            for i in 0..5 {
                let to = if i < 3 { "http://a" } else { "http://b" };
                writer
                    .append(to, format!("{{\"n\":{i}}}").as_bytes(), now)
                    .await
                    .unwrap();
            }
            writer.sync().await.unwrap();
            // Records are batched by destination.
            let first = reader.read(10).await.unwrap();
            assert_eq!(first.len(), 3);
            reader
                .commit(first[1].end, 2, first[0].len + first[1].len)
                .await
                .unwrap();
            assert_eq!(writer.records(), 3);
        }
        // A crash left half a record behind.
        let segment = segment_path(dir.path(), 0);
        let mut bytes = std::fs::read(&segment).unwrap();
        bytes.extend_from_slice(b"http://b {\"n\":");
        std::fs::write(&segment, bytes).unwrap();
        let (writer, mut reader) = open(dir.path(), 1 << 20).await.unwrap();
        assert_eq!(writer.records(), 3);
        assert_eq!(
            read_all(&mut reader).await,
            [
                "http://a {\"n\":2}",
                "http://b {\"n\":3}",
                "http://b {\"n\":4}"
            ]
        );
        // Read but not committed: read again after a rewind.
        reader.rewind();
        assert_eq!(read_all(&mut reader).await.len(), 3);
    }

    #[tokio::test]
    async fn segments_roll_and_are_deleted_once_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, mut reader) = open(dir.path(), 64 << 20).await.unwrap();
        let payload = vec![b'x'; 1 << 20];
        for _ in 0..20 {
            writer
                .append("http://a", &payload, Instant::now())
                .await
                .unwrap();
        }
        writer.flush().await.unwrap();
        assert!(segments(dir.path()).unwrap().len() >= 2);
        let mut n = 0;
        loop {
            let records = reader.read(4).await.unwrap();
            let Some(last) = records.last() else { break };
            n += records.len();
            let bytes = records.iter().map(|r| r.len).sum();
            reader
                .commit(last.end, records.len() as u64, bytes)
                .await
                .unwrap();
        }
        assert_eq!(n, 20);
        assert_eq!(writer.bytes(), 0);
        assert_eq!(writer.records(), 0);
        assert_eq!(
            segments(dir.path()).unwrap().len(),
            1,
            "only the segment being written"
        );
    }

    #[tokio::test]
    async fn a_full_outbox_waits_for_room() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, mut reader) = open(dir.path(), 100).await.unwrap();
        writer
            .append("d", &[b'x'; 60], Instant::now())
            .await
            .unwrap();
        writer.flush().await.unwrap();
        assert!(!writer.has_room(60));
        let waiting = tokio::spawn(async move {
            writer.wait_for_room(60).await;
            writer
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        let records = reader.read(1).await.unwrap();
        reader
            .commit(records[0].end, 1, records[0].len)
            .await
            .unwrap();
        let writer = waiting.await.unwrap();
        assert!(writer.has_room(60));
    }
}
