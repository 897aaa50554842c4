//! Splits text into overlapping chunks of about `size` characters, cutting on paragraph, then
//! line, then sentence, then word boundaries, and only inside a word when nothing else fits.
//!
//! Chunks are slices of the original text (trimmed), so no character is ever split and no text
//! is rewritten. Lengths and overlaps are counted in characters (`char`s), not bytes.

use std::ops::Range;

/// Boundaries tried in order, coarsest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Paragraph,
    Line,
    Sentence,
    Word,
    Char,
}

impl Level {
    fn finer(self) -> Self {
        match self {
            Self::Paragraph => Self::Line,
            Self::Line => Self::Sentence,
            Self::Sentence => Self::Word,
            Self::Word | Self::Char => Self::Char,
        }
    }
}

/// A piece of the text (byte range) and its length in characters.
#[derive(Clone, Debug)]
struct Piece {
    bytes: Range<usize>,
    chars: usize,
}

/// Splits `text` into chunks of at most `size` characters (after trimming), consecutive chunks
/// sharing up to `overlap` characters. `overlap` is capped below `size`; a `size` of 0 is
/// treated as 1. Whitespace-only text gives no chunk.
pub fn chunk_text(text: &str, size: usize, overlap: usize) -> Vec<String> {
    chunk_ranges(text, size, overlap)
        .into_iter()
        .map(|range| text[range].to_owned())
        .collect()
}

/// Like [`chunk_text`], as byte ranges into `text`.
pub fn chunk_ranges(text: &str, size: usize, overlap: usize) -> Vec<Range<usize>> {
    let size = size.max(1);
    let overlap = overlap.min(size - 1);
    let mut pieces = Vec::new();
    split(text, 0..text.len(), Level::Paragraph, size, &mut pieces);
    merge(text, &pieces, size, overlap)
}

/// Cuts `range` into pieces of at most `size` characters, each keeping its trailing separator so
/// that the pieces tile the text exactly.
fn split(text: &str, range: Range<usize>, level: Level, size: usize, out: &mut Vec<Piece>) {
    let chars = text[range.clone()].chars().count();
    if chars <= size {
        if chars > 0 {
            out.push(Piece {
                bytes: range,
                chars,
            });
        }
        return;
    }
    if level == Level::Char {
        let mut start = range.start;
        let mut count = 0;
        for (offset, _) in text[range.clone()].char_indices() {
            if count == size {
                out.push(Piece {
                    bytes: start..range.start + offset,
                    chars: count,
                });
                start = range.start + offset;
                count = 0;
            }
            count += 1;
        }
        if count > 0 {
            out.push(Piece {
                bytes: start..range.end,
                chars: count,
            });
        }
        return;
    }
    let cuts = boundaries(&text[range.clone()], level);
    if cuts.is_empty() {
        return split(text, range, level.finer(), size, out);
    }
    let mut start = range.start;
    for cut in cuts.into_iter().map(|c| range.start + c) {
        split(text, start..cut, level.finer(), size, out);
        start = cut;
    }
    split(text, start..range.end, level.finer(), size, out);
}

/// Byte offsets (inside `text`, excluding 0 and `text.len()`) where a piece may end at `level`:
/// just after the separator.
fn boundaries(text: &str, level: Level) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut chars = text.char_indices().peekable();
    match level {
        Level::Paragraph => {
            // After a blank line: "\n", optional horizontal whitespace, "\n", more whitespace.
            while let Some((_, c)) = chars.next() {
                if c != '\n' {
                    continue;
                }
                let mut blank = false;
                let mut end = None;
                while let Some(&(i, next)) = chars.peek() {
                    if next == '\n' {
                        blank = true;
                    } else if !next.is_whitespace() {
                        end = Some(i);
                        break;
                    }
                    chars.next();
                }
                if blank && let Some(end) = end {
                    cuts.push(end);
                }
            }
        }
        Level::Line => {
            for (i, c) in chars {
                if c == '\n' && i + 1 < text.len() {
                    cuts.push(i + 1);
                }
            }
        }
        Level::Sentence => {
            while let Some((_, c)) = chars.next() {
                let ends_sentence = matches!(c, '.' | '!' | '?' | '…');
                let ends_cjk = matches!(c, '。' | '！' | '？');
                if !ends_sentence && !ends_cjk {
                    continue;
                }
                // Closing quotes and brackets stay with their sentence.
                while let Some(&(_, next)) = chars.peek() {
                    if matches!(next, '"' | '\'' | ')' | ']' | '»' | '”' | '’') {
                        chars.next();
                    } else {
                        break;
                    }
                }
                let mut saw_space = ends_cjk;
                let mut end = None;
                while let Some(&(i, next)) = chars.peek() {
                    if next.is_whitespace() {
                        saw_space = true;
                        chars.next();
                    } else {
                        end = Some(i);
                        break;
                    }
                }
                if saw_space && let Some(end) = end {
                    cuts.push(end);
                }
            }
        }
        Level::Word => {
            let mut in_space = false;
            for (i, c) in chars {
                if c.is_whitespace() {
                    in_space = true;
                } else if in_space {
                    cuts.push(i);
                    in_space = false;
                }
            }
        }
        Level::Char => {}
    }
    cuts
}

/// Greedily joins consecutive pieces into chunks of at most `size` characters; each new chunk
/// starts with the last pieces of the previous one that fit in `overlap` characters.
fn merge(text: &str, pieces: &[Piece], size: usize, overlap: usize) -> Vec<Range<usize>> {
    let mut chunks: Vec<Range<usize>> = Vec::new();
    // The current chunk is pieces[first..next], `length` characters long.
    let mut first = 0;
    let mut length = 0;
    for (next, piece) in pieces.iter().enumerate() {
        if length + piece.chars > size && next > first {
            push_trimmed(
                text,
                pieces[first].bytes.start..pieces[next - 1].bytes.end,
                &mut chunks,
            );
            while first < next && (length > overlap || length + piece.chars > size) {
                length -= pieces[first].chars;
                first += 1;
            }
        }
        length += piece.chars;
    }
    if first < pieces.len() {
        push_trimmed(
            text,
            pieces[first].bytes.start..pieces[pieces.len() - 1].bytes.end,
            &mut chunks,
        );
    }
    chunks
}

fn push_trimmed(text: &str, range: Range<usize>, out: &mut Vec<Range<usize>>) {
    let slice = &text[range.clone()];
    let start = range.start + (slice.len() - slice.trim_start().len());
    let end = range.end - (slice.len() - slice.trim_end().len());
    if start < end && out.last() != Some(&(start..end)) {
        out.push(start..end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths(chunks: &[String]) -> Vec<usize> {
        chunks.iter().map(|c| c.chars().count()).collect()
    }

    #[test]
    fn short_text_is_one_chunk_and_blank_text_none() {
        assert_eq!(chunk_text("  hello world \n", 100, 10), vec!["hello world"]);
        assert!(chunk_text(" \n\t ", 100, 10).is_empty());
        assert!(chunk_text("", 100, 10).is_empty());
    }

    #[test]
    fn paragraphs_are_kept_whole_when_they_fit() {
        let text = "First paragraph here.\n\nSecond paragraph, a bit longer.\n\nThird.";
        let chunks = chunk_text(text, 35, 0);
        assert_eq!(
            chunks,
            vec![
                "First paragraph here.",
                "Second paragraph, a bit longer.",
                "Third."
            ]
        );
    }

    #[test]
    fn long_paragraphs_split_on_sentences_then_words() {
        let text = "One sentence is here. Another sentence follows it. A third one ends it.";
        let chunks = chunk_text(text, 30, 0);
        assert_eq!(
            chunks,
            vec![
                "One sentence is here.",
                "Another sentence follows it.",
                "A third one ends it."
            ]
        );
        let words = chunk_text("alpha beta gamma delta epsilon zeta eta theta", 12, 0);
        assert!(lengths(&words).iter().all(|&n| n <= 12), "{words:?}");
        assert_eq!(
            words.join(" "),
            "alpha beta gamma delta epsilon zeta eta theta"
        );
    }

    #[test]
    fn chunks_overlap() {
        let text = (0..40)
            .map(|i| format!("w{i:02}"))
            .collect::<Vec<_>>()
            .join(" ");
        let chunks = chunk_text(&text, 40, 12);
        assert!(chunks.len() > 3);
        for pair in chunks.windows(2) {
            let tail: Vec<&str> = pair[0].split(' ').collect();
            let head: Vec<&str> = pair[1].split(' ').collect();
            assert_eq!(tail[tail.len() - 3..], head[..3], "{pair:?}");
        }
        assert!(lengths(&chunks).iter().all(|&n| n <= 40));
        // Every word appears somewhere.
        let all = chunks.join(" ");
        assert!((0..40).all(|i| all.contains(&format!("w{i:02}"))));
    }

    #[test]
    fn never_splits_inside_a_character() {
        let text = "日本語のテキストです。".repeat(30) + &"é".repeat(50);
        for size in [1, 3, 7, 20] {
            let chunks = chunk_text(&text, size, size / 2);
            assert!(!chunks.is_empty());
            assert!(lengths(&chunks).iter().all(|&n| n <= size), "{size}");
        }
        let unbroken = "x".repeat(25);
        assert_eq!(lengths(&chunk_text(&unbroken, 10, 0)), vec![10, 10, 5]);
    }

    #[test]
    fn cjk_sentences_are_boundaries() {
        let text = "これは一文目です。これは二文目です。";
        assert_eq!(
            chunk_text(text, 10, 0),
            vec!["これは一文目です。", "これは二文目です。"]
        );
    }

    #[test]
    fn overlap_never_stalls() {
        let text = "a b c d e f g h i j k l m n o p q r s t u v w x y z".repeat(10);
        let chunks = chunk_text(&text, 5, 4);
        assert!(!chunks.is_empty());
        assert!(chunks.len() < text.len());
        assert!(lengths(&chunks).iter().all(|&n| n <= 5));
    }
}
