//! Decoder settings: their documentation, types and defaults side by side,
//! and the checks that reject bad values before anything is read.

use serde::Deserialize;

use crate::ConfigDuration;

/// How records are decoded and batched.
///
/// ```
/// use vagt_connectors::DecoderConfig;
///
/// let config: DecoderConfig = serde_json::from_str(r#"{"batch_size": 256}"#)?;
/// assert_eq!(config.max_record_bytes, 4 * 1024 * 1024);
/// config.validate()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecoderConfig {
    /// Records per Arrow batch (default 1024). Larger batches amortise
    /// per-batch work; smaller ones lower latency and memory. A batch is
    /// also cut early once its records hold `batch_bytes`.
    pub batch_size: usize,
    /// Bytes of records per Arrow batch (default 2 MiB, at most
    /// [`MAX_BATCH_BYTES`]): a batch is cut once its records reach this
    /// size, whatever its number of rows, so that events of 10 KB make
    /// batches of the same memory as events of 1 KB.
    pub batch_bytes: usize,
    /// Longest record accepted, in bytes (default 4 MiB, at most
    /// [`MAX_RECORD_LIMIT`]); longer ones become dead letters without being
    /// held in memory.
    pub max_record_bytes: usize,
    /// For live inputs (stdin): hand a batch on once its first event has
    /// waited this long (default `5ms`), even if it is not full and input
    /// keeps coming, so that a busy stream does not hold events back for a
    /// whole batch. (An idle stream hands its batch on at once.)
    pub max_batch_delay: ConfigDuration,
}

/// Largest accepted [`DecoderConfig::batch_bytes`]; also the text (records
/// and their columns) a batch holds before [`crate::BatchDecoder::is_full`]
/// says to cut it, whatever its settings.
pub const MAX_BATCH_BYTES: usize = 256 * 1024 * 1024;

/// Largest accepted [`DecoderConfig::max_record_bytes`].
pub const MAX_RECORD_LIMIT: usize = 256 * 1024 * 1024;

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            batch_size: 1024,
            batch_bytes: 2 * 1024 * 1024,
            max_record_bytes: 4 * 1024 * 1024,
            max_batch_delay: ConfigDuration::from_millis(5),
        }
    }
}

/// A decoder setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidDecoderConfig {
    /// `batch_size` is 0.
    #[error("batch_size must be at least 1")]
    ZeroBatchSize,
    /// `batch_bytes` (the value given) is 0 or above [`MAX_BATCH_BYTES`].
    #[error("batch_bytes must be between 1 and {MAX_BATCH_BYTES}, not {0}")]
    BatchBytes(usize),
    /// `max_record_bytes` (the value given) is below 2 or above
    /// [`MAX_RECORD_LIMIT`].
    #[error("max_record_bytes must be between 2 and {MAX_RECORD_LIMIT}, not {0}")]
    RecordLimit(usize),
}

impl DecoderConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// The first setting out of range.
    pub fn validate(&self) -> Result<(), InvalidDecoderConfig> {
        if self.batch_size == 0 {
            return Err(InvalidDecoderConfig::ZeroBatchSize);
        }
        if !(1..=MAX_BATCH_BYTES).contains(&self.batch_bytes) {
            return Err(InvalidDecoderConfig::BatchBytes(self.batch_bytes));
        }
        if !(2..=MAX_RECORD_LIMIT).contains(&self.max_record_bytes) {
            return Err(InvalidDecoderConfig::RecordLimit(self.max_record_bytes));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_missing_fields_and_unknown_fields_are_rejected() {
        let c: DecoderConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, DecoderConfig::default());
        assert_eq!((c.batch_size, c.max_record_bytes), (1024, 4_194_304));
        let err = serde_json::from_str::<DecoderConfig>(r#"{"batch_sise": 3}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `batch_sise`"),
            "{err}"
        );
    }

    #[test]
    fn validate_rejects_out_of_range_settings() {
        assert_eq!(DecoderConfig::default().validate(), Ok(()));
        let zero = DecoderConfig {
            batch_size: 0,
            ..DecoderConfig::default()
        };
        assert_eq!(zero.validate(), Err(InvalidDecoderConfig::ZeroBatchSize));
        for bad in [0, MAX_BATCH_BYTES + 1] {
            let c = DecoderConfig {
                batch_bytes: bad,
                ..DecoderConfig::default()
            };
            assert_eq!(c.validate(), Err(InvalidDecoderConfig::BatchBytes(bad)));
        }
        for bad in [0, 1, MAX_RECORD_LIMIT + 1] {
            let c = DecoderConfig {
                max_record_bytes: bad,
                ..DecoderConfig::default()
            };
            assert_eq!(c.validate(), Err(InvalidDecoderConfig::RecordLimit(bad)));
        }
    }
}
