//! Answer text from token bytes: characters split across tokens are sent whole, invalid bytes
//! become U+FFFD, and stop sequences are found even when they straddle tokens.

/// What one token added to the answer.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Step {
    /// Text ready to send: whole characters, none of which may start a stop sequence.
    pub(super) text: String,
    /// A stop sequence was reached; `text` ends just before it.
    pub(super) stopped: bool,
}

/// Turns token bytes into answer text. A character split across tokens is sent once whole, and
/// text that may be the start of a stop sequence is held back until the next token tells, so a
/// stop sequence is never sent even when it straddles tokens.
pub(super) struct TextAssembler {
    stop: Vec<String>,
    /// Bytes of an incomplete UTF-8 sequence.
    bytes: Vec<u8>,
    /// Decoded text not sent yet.
    pending: String,
}

impl TextAssembler {
    pub(super) fn new(stop: &[String]) -> Self {
        Self {
            stop: stop.iter().filter(|s| !s.is_empty()).cloned().collect(),
            bytes: Vec::new(),
            pending: String::new(),
        }
    }

    pub(super) fn push(&mut self, piece: &[u8]) -> Step {
        self.bytes.extend_from_slice(piece);
        self.decode();
        let earliest = self
            .stop
            .iter()
            .filter_map(|stop| self.pending.find(stop.as_str()))
            .min();
        if let Some(at) = earliest {
            let mut text = std::mem::take(&mut self.pending);
            text.truncate(at);
            self.bytes.clear();
            return Step {
                text,
                stopped: true,
            };
        }
        let held = self
            .stop
            .iter()
            .map(|stop| partial_match(&self.pending, stop))
            .max()
            .unwrap_or(0);
        let rest = self.pending.split_off(self.pending.len() - held);
        Step {
            text: std::mem::replace(&mut self.pending, rest),
            stopped: false,
        }
    }

    /// Everything still held, at the end of the answer (a cut character becomes U+FFFD).
    pub(super) fn finish(&mut self) -> String {
        let mut text = std::mem::take(&mut self.pending);
        text.push_str(&String::from_utf8_lossy(&self.bytes));
        self.bytes.clear();
        text
    }

    /// Moves the complete characters from `bytes` to `pending`; invalid bytes become U+FFFD.
    fn decode(&mut self) {
        loop {
            match std::str::from_utf8(&self.bytes) {
                Ok(text) => {
                    self.pending.push_str(text);
                    self.bytes.clear();
                    return;
                }
                Err(error) => {
                    let valid = error.valid_up_to();
                    self.pending
                        .push_str(&String::from_utf8_lossy(&self.bytes[..valid]));
                    match error.error_len() {
                        // An incomplete sequence at the end: wait for the next token.
                        None => {
                            self.bytes.drain(..valid);
                            return;
                        }
                        Some(invalid) => {
                            self.pending.push(char::REPLACEMENT_CHARACTER);
                            self.bytes.drain(..valid + invalid);
                        }
                    }
                }
            }
        }
    }
}

/// The length of the longest end of `text` that is a proper beginning of `stop`.
fn partial_match(text: &str, stop: &str) -> usize {
    (1..stop.len())
        .rev()
        .filter(|&n| stop.is_char_boundary(n))
        .find(|&n| text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stop: &[&str], pieces: &[&[u8]]) -> (Vec<String>, bool, String) {
        let stop: Vec<String> = stop.iter().map(|s| s.to_string()).collect();
        let mut text = TextAssembler::new(&stop);
        let mut sent = Vec::new();
        for piece in pieces {
            let step = text.push(piece);
            sent.push(step.text);
            if step.stopped {
                return (sent, true, String::new());
            }
        }
        (sent, false, text.finish())
    }

    #[test]
    fn characters_split_across_tokens_are_sent_whole() {
        let euro = "€".as_bytes();
        let (sent, stopped, rest) = run(&[], &[b"a", &euro[..1], &euro[1..], b"b"]);
        assert_eq!(sent, ["a", "", "€", "b"]);
        assert!(!stopped);
        assert_eq!(rest, "");
    }

    #[test]
    fn a_stop_sequence_straddling_tokens_is_never_sent() {
        let (sent, stopped, _) = run(&["END"], &[b"one E", b"N", b"D two"]);
        assert_eq!(sent, ["one ", "", ""]);
        assert!(stopped);
    }

    #[test]
    fn a_false_start_of_a_stop_sequence_is_released() {
        let (sent, stopped, rest) = run(&["END"], &[b"one E", b"Nd", b" two E"]);
        assert_eq!(sent, ["one ", "ENd", " two "]);
        assert!(!stopped);
        assert_eq!(rest, "E");
    }

    #[test]
    fn the_earliest_stop_sequence_wins() {
        let (sent, stopped, _) = run(&["two", "one"], &[b"zero one two"]);
        assert_eq!(sent, ["zero "]);
        assert!(stopped);
    }

    #[test]
    fn invalid_and_cut_bytes_become_replacement_characters() {
        let (sent, _, rest) = run(&[], &[b"a\xffb", &"€".as_bytes()[..2]]);
        assert_eq!(sent, ["a\u{fffd}b", ""]);
        assert_eq!(rest, "\u{fffd}");
    }
}
