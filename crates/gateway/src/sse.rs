//! Server-sent event framing: splits an upstream byte stream into whole
//! events without merging or splitting them, so each event can be relayed
//! (or translated) as one unit and flushed on its own.

use bytes::{Bytes, BytesMut};

/// One complete event as received, with its raw bytes kept for pass-through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event exactly as the upstream sent it, terminator included.
    pub raw: Bytes,
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Upper bound on one event's size. An upstream that sends more without a
/// blank line is broken or hostile.
pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("upstream event exceeds {MAX_EVENT_BYTES} bytes")]
    EventTooLarge,
}

/// Incremental splitter. Feed it chunks as they arrive; it yields each event
/// once its terminating blank line has been seen.
#[derive(Debug, Default)]
pub struct SseSplitter {
    buffer: BytesMut,
    /// Where to resume scanning for a terminator.
    scanned: usize,
}

impl SseSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<(), SseError> {
        self.buffer.extend_from_slice(chunk);
        if self.buffer.len() > MAX_EVENT_BYTES && find_terminator(&self.buffer, 0).is_none() {
            return Err(SseError::EventTooLarge);
        }
        Ok(())
    }

    /// The next complete event, if one is buffered.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let (end, _) = match find_terminator(&self.buffer, self.scanned) {
                Some(found) => found,
                None => {
                    self.scanned = self.buffer.len().saturating_sub(3);
                    return None;
                }
            };
            let raw = self.buffer.split_to(end).freeze();
            self.scanned = 0;
            let event = parse_fields(&raw);
            // A frame of only comments or blank lines carries nothing to relay.
            if event.event.is_none() && event.data.is_empty() && !has_data_field(&raw) {
                continue;
            }
            return Some(event);
        }
    }

    /// Whatever is left when the upstream closes: a final event that lacked
    /// its blank line, if it has data.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if self.buffer.iter().all(|b| b.is_ascii_whitespace()) {
            self.buffer.clear();
            return None;
        }
        let mut raw = std::mem::take(&mut self.buffer);
        raw.extend_from_slice(b"\n\n");
        let raw = raw.freeze();
        let event = parse_fields(&raw);
        (event.event.is_some() || !event.data.is_empty()).then_some(event)
    }
}

fn has_data_field(raw: &[u8]) -> bool {
    raw.split(|b| *b == b'\n')
        .any(|line| line.starts_with(b"data"))
}

/// Finds the end (exclusive, terminator included) of the first event.
fn find_terminator(buffer: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i + 1 < buffer.len() {
        match (buffer[i], buffer[i + 1]) {
            (b'\n', b'\n') | (b'\r', b'\r') => return Some((i + 2, 2)),
            (b'\r', b'\n') if buffer.get(i + 2..i + 4) == Some(b"\r\n") => return Some((i + 4, 4)),
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_fields(raw: &[u8]) -> SseEvent {
    let text = String::from_utf8_lossy(raw);
    let mut event = None;
    let mut data: Option<String> = None;
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_owned()),
            "data" => match &mut data {
                Some(existing) => {
                    existing.push('\n');
                    existing.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
    SseEvent {
        raw: Bytes::copy_from_slice(raw),
        event,
        data: data.unwrap_or_default(),
    }
}

/// Frames a data-only event (OpenAI style).
pub fn data_frame(data: &str) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// Frames a named event (Anthropic style).
pub fn named_frame(event: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]]) -> Vec<(Option<String>, String, Vec<u8>)> {
        let mut splitter = SseSplitter::new();
        let mut out = vec![];
        for chunk in chunks {
            splitter.push(chunk).unwrap();
            while let Some(event) = splitter.next_event() {
                out.push((event.event, event.data, event.raw.to_vec()));
            }
        }
        if let Some(event) = splitter.finish() {
            out.push((event.event, event.data, event.raw.to_vec()));
        }
        out
    }

    #[test]
    fn events_survive_any_chunking() {
        let stream = b"event: message_start\ndata: {\"a\":1}\n\ndata: {\"b\":2}\n\n: keepalive\n\ndata: [DONE]\n\n";
        let expected = vec![
            (Some("message_start".to_owned()), "{\"a\":1}".to_owned()),
            (None, "{\"b\":2}".to_owned()),
            (None, "[DONE]".to_owned()),
        ];
        for cut in 1..stream.len() {
            let got = split_all(&[&stream[..cut], &stream[cut..]]);
            let got: Vec<_> = got.into_iter().map(|(e, d, _)| (e, d)).collect();
            assert_eq!(got, expected, "cut at {cut}");
        }
        let one_byte_chunks: Vec<&[u8]> = stream.chunks(1).collect();
        let got = split_all(&one_byte_chunks);
        assert_eq!(got[0].2, b"event: message_start\ndata: {\"a\":1}\n\n");
    }

    #[test]
    fn crlf_multiline_and_unterminated_tail() {
        let got = split_all(&[b"data: a\r\ndata: b\r\n\r\ndata: tail"]);
        assert_eq!(got[0].1, "a\nb");
        assert_eq!(got[1].1, "tail");
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut splitter = SseSplitter::new();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert_eq!(splitter.push(&big), Err(SseError::EventTooLarge));
    }
}
