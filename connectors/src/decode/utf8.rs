//! The UTF-8 check of records and of unescaped strings: by SIMD, as the
//! hot path wants it (a record is mostly ASCII, which the standard check
//! takes 16 bytes at a time), and by the standard check where the bytes are
//! not UTF-8, to say where.

/// `bytes` as text, or where they stop being UTF-8.
#[inline]
pub(super) fn checked(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    simdutf8::basic::from_utf8(bytes).or_else(|_| std::str::from_utf8(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_passes_and_the_first_bad_byte_is_found() {
        let long = "æøå event text ".repeat(20);
        assert_eq!(checked(long.as_bytes()).unwrap(), long);
        let mut bad = long.clone().into_bytes();
        bad[101] = 0xff;
        assert_eq!(checked(&bad).unwrap_err().valid_up_to(), 101);
    }
}
