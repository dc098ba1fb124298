//! RecordIO framing (Mesos `docs/recordio.md`): each record is its length in bytes as decimal
//! ASCII, a `\n`, then the record bytes.
//!
//! The decoder caps the length prefix before allocating, so a hostile peer cannot make us
//! reserve gigabytes with a 20-digit header.

/// Frames one record.
pub fn encode(record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.len() + 12);
    out.extend_from_slice(record.len().to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(record);
    out
}

/// Why a byte stream is not valid RecordIO.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordIoError {
    #[error("record length prefix is not a decimal number")]
    BadLength,
    #[error("record of {0} bytes exceeds the limit")]
    TooLarge(usize),
}

/// An incremental decoder: feed bytes as they arrive, take whole records out.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    max_record: usize,
}

impl Decoder {
    /// A decoder that rejects records longer than `max_record` bytes.
    pub fn new(max_record: usize) -> Self {
        Decoder {
            buf: Vec::new(),
            max_record,
        }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete record, `Ok(None)` when more bytes are needed.
    pub fn next_record(&mut self) -> Result<Option<Vec<u8>>, RecordIoError> {
        let Some(nl) = self.buf.iter().position(|b| *b == b'\n') else {
            if self.buf.len() > 20 {
                return Err(RecordIoError::BadLength);
            }
            return Ok(None);
        };
        let digits = &self.buf[..nl];
        if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(RecordIoError::BadLength);
        }
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(RecordIoError::BadLength)?;
        if len > self.max_record {
            return Err(RecordIoError::TooLarge(len));
        }
        if self.buf.len() < nl + 1 + len {
            return Ok(None);
        }
        let record = self.buf[nl + 1..nl + 1 + len].to_vec();
        self.buf.drain(..nl + 1 + len);
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_split_records() {
        let mut bytes = encode(b"{\"a\":1}");
        bytes.extend(encode(b"hello"));
        let mut d = Decoder::new(1024);
        let mut got = Vec::new();
        for chunk in bytes.chunks(3) {
            d.feed(chunk);
            while let Some(r) = d.next_record().unwrap() {
                got.push(r);
            }
        }
        assert_eq!(got, vec![b"{\"a\":1}".to_vec(), b"hello".to_vec()]);
    }

    #[test]
    fn rejects_bad_and_huge_prefixes() {
        let mut d = Decoder::new(10);
        d.feed(b"99999999999\n");
        assert_eq!(d.next_record(), Err(RecordIoError::TooLarge(99999999999)));
        let mut d = Decoder::new(10);
        d.feed(b"x\n");
        assert_eq!(d.next_record(), Err(RecordIoError::BadLength));
    }
}
