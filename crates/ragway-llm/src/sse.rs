//! Server-sent events read off a response body as its bytes arrive: the `data` of each event,
//! found by the HTML standard's parsing rules (lines end in CRLF, LF or CR; a line starting
//! with `:` is a comment; one space after a field's colon is dropped; several `data` lines make
//! one event joined by newlines; an empty line ends the event; other fields are ignored; a
//! leading byte-order mark is skipped; an event cut off by the end of the body is dropped).
//!
//! Written here rather than taken from `eventsource-stream`, which this replaced: that crate
//! turns every line into a `String` and every event into four, through a parser combinator,
//! and it was ~4% of ragway's CPU when relaying 500 streams. Here an event with one `data`
//! line (every OpenAI chunk) is a slice of the bytes received, never copied.

use bytes::{Buf as _, Bytes, BytesMut};

/// The most an event (or a line still without its end) may hold, so that an upstream that
/// never ends a line cannot make the buffer grow without bound.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// An event larger than [`MAX_EVENT_BYTES`].
#[derive(Debug, PartialEq, Eq)]
pub struct EventTooLarge;

/// Splits a body's bytes into the data of its events.
#[derive(Default)]
pub struct DataEvents {
    /// Bytes received and not yet read as whole lines.
    buffer: BytesMut,
    /// The current event's data so far (`None` before its first `data` line).
    data: Option<BytesMut>,
    /// The last line ended in CR: an LF right after it belongs to that line end.
    after_cr: bool,
    /// The first line is read (its byte-order mark, if any, skipped).
    began: bool,
}

impl DataEvents {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in the next bytes of the body.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The data of the next event that the bytes so far complete, if any.
    pub fn next_data(&mut self) -> Result<Option<Bytes>, EventTooLarge> {
        loop {
            if self.after_cr && !self.buffer.is_empty() {
                if self.buffer[0] == b'\n' {
                    self.buffer.advance(1);
                }
                self.after_cr = false;
            }
            let Some(end) = memchr::memchr2(b'\n', b'\r', &self.buffer) else {
                let held = self.buffer.len() + self.data.as_ref().map_or(0, BytesMut::len);
                return if held > MAX_EVENT_BYTES {
                    Err(EventTooLarge)
                } else {
                    Ok(None)
                };
            };
            let mut line = self.buffer.split_to(end);
            self.after_cr = self.buffer[0] == b'\r';
            self.buffer.advance(1);
            if !self.began {
                self.began = true;
                if line.starts_with("\u{feff}".as_bytes()) {
                    line.advance(3);
                }
            }
            if line.is_empty() {
                match self.data.take() {
                    Some(data) => return Ok(Some(data.freeze())),
                    None => continue,
                }
            }
            if line[0] == b':' {
                continue;
            }
            let colon = memchr::memchr(b':', &line).unwrap_or(line.len());
            if &line[..colon] != b"data" {
                continue;
            }
            line.advance((colon + 1).min(line.len()));
            if line.first() == Some(&b' ') {
                line.advance(1);
            }
            match &mut self.data {
                None => self.data = Some(line),
                Some(data) => {
                    data.extend_from_slice(b"\n");
                    data.extend_from_slice(&line);
                    if data.len() > MAX_EVENT_BYTES {
                        return Err(EventTooLarge);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data of every event in `pieces`, fed one piece at a time.
    fn events(pieces: &[&[u8]]) -> Vec<String> {
        let mut events = DataEvents::new();
        let mut found = Vec::new();
        for piece in pieces {
            events.push(piece);
            while let Some(data) = events.next_data().unwrap() {
                found.push(String::from_utf8(data.to_vec()).unwrap());
            }
        }
        found
    }

    #[test]
    fn each_event_is_its_data_lines_joined() {
        let body = b"data: {\"a\":1}\n\ndata: first\ndata:second\n\n";
        assert_eq!(events(&[body]), ["{\"a\":1}", "first\nsecond"]);
    }

    #[test]
    fn every_line_end_is_understood() {
        assert_eq!(
            events(&[b"data: a\r\n\r\ndata: b\r\rdata: c\n\n"]),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn events_split_anywhere_between_reads_come_out_whole() {
        let body: &[u8] = b"data: one\r\n\r\n: keep-alive\r\n\r\ndata: two\r\ndata: 2\r\n\r\n";
        let whole = events(&[body]);
        assert_eq!(whole, ["one", "two\n2"]);
        // Every split into two reads, and byte by byte.
        for at in 0..=body.len() {
            assert_eq!(events(&[&body[..at], &body[at..]]), whole, "split at {at}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(events(&bytes), whole);
    }

    #[test]
    fn comments_other_fields_and_empty_events_are_skipped() {
        let body = b": hello\n\nevent: message\nid: 7\nretry: 10\ndata: x\n\nid: 8\n\n";
        assert_eq!(events(&[body]), ["x"]);
    }

    #[test]
    fn an_empty_data_line_is_an_event_with_empty_data() {
        assert_eq!(events(&[b"data\n\ndata:\n\n"]), ["", ""]);
    }

    #[test]
    fn only_one_space_after_the_colon_is_dropped() {
        assert_eq!(events(&[b"data:  two spaces\n\n"]), [" two spaces"]);
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped_once() {
        let body = "\u{feff}data: a\n\n".as_bytes();
        assert_eq!(events(&[&body[..2], &body[2..]]), ["a"]);
        // Not a field named `data` with a mark before it further on.
        assert_eq!(
            events(&["data: a\n\n\u{feff}data: b\n\n".as_bytes()]),
            ["a"]
        );
    }

    #[test]
    fn an_event_cut_off_by_the_end_is_not_given() {
        assert_eq!(events(&[b"data: whole\n\ndata: cut"]), ["whole"]);
    }

    #[test]
    fn a_line_that_never_ends_is_refused_past_the_limit() {
        let mut events = DataEvents::new();
        let piece = vec![b'x'; 1024 * 1024];
        events.push(b"data: ");
        let mut held = 6;
        while held < MAX_EVENT_BYTES {
            let take = piece.len().min(MAX_EVENT_BYTES - held);
            events.push(&piece[..take]);
            held += take;
            assert_eq!(events.next_data(), Ok(None));
        }
        events.push(b"x");
        assert_eq!(events.next_data(), Err(EventTooLarge));
    }
}
