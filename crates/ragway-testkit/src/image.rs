//! Images as the fakes receive them in chat requests: which format the bytes are (their magic
//! bytes), how large the picture is (read from the header, never decoded), and header-only
//! images for tests ([`header_only`]).

use base64::Engine as _;

/// The image formats OpenAI and Bedrock both read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Gif,
    Webp,
}

impl ImageFormat {
    /// From Bedrock's name of the format (`{"image": {"format": "png"}}`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "png" => Some(Self::Png),
            "jpeg" => Some(Self::Jpeg),
            "gif" => Some(Self::Gif),
            "webp" => Some(Self::Webp),
            _ => None,
        }
    }

    /// `png`, `jpeg`, `gif` or `webp`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
            Self::Gif => "gif",
            Self::Webp => "webp",
        }
    }

    /// From a data URL's media type (`image/png`, …).
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        media_type.strip_prefix("image/").and_then(Self::from_name)
    }

    /// `image/png`, …: the media type of a data URL.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
        }
    }

    /// Whether `bytes` open with this format's magic bytes.
    pub fn opens(self, bytes: &[u8]) -> bool {
        match self {
            Self::Png => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            Self::Jpeg => bytes.starts_with(b"\xff\xd8\xff"),
            Self::Gif => bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a"),
            Self::Webp => bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(&b"WEBP"[..]),
        }
    }

    /// `(width, height)` in pixels, read from the header of an image of this format; `None`
    /// when the bytes are not this format, the header is cut short, or it claims no pixels.
    /// All four formats are read: PNG's IHDR, GIF's logical screen, JPEG's first SOFn segment,
    /// and WebP's `VP8 `, `VP8L` or `VP8X` chunk.
    pub fn size(self, bytes: &[u8]) -> Option<(u32, u32)> {
        if !self.opens(bytes) {
            return None;
        }
        let (width, height) = match self {
            Self::Png => png_size(bytes)?,
            Self::Jpeg => jpeg_size(bytes)?,
            Self::Gif => (le16(bytes, 6)?, le16(bytes, 8)?),
            Self::Webp => webp_size(bytes)?,
        };
        (width > 0 && height > 0).then_some((width, height))
    }
}

/// Standard base64 with padding, as both APIs carry image bytes; `None` if it does not decode.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// The first bytes of a `width`×`height` image of `format`: signature and header, no pixels
/// (PNG's IHDR CRC is left zero, WebP is a bare `VP8X` chunk, at least 1×1). Enough for the
/// fakes' checks and for readers of image headers, not for a decoder.
pub fn header_only(format: ImageFormat, width: u16, height: u16) -> Vec<u8> {
    let [w_high, w_low] = width.to_be_bytes();
    let [h_high, h_low] = height.to_be_bytes();
    match format {
        ImageFormat::Png => {
            let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
            bytes.extend(u32::from(width).to_be_bytes());
            bytes.extend(u32::from(height).to_be_bytes());
            // 8-bit RGBA, deflate, no filter method, not interlaced; then the CRC.
            bytes.extend([8, 6, 0, 0, 0, 0, 0, 0, 0]);
            bytes
        }
        ImageFormat::Jpeg => {
            // SOI, a JFIF APP0 segment, a baseline SOF0 for 3 components, EOI.
            let mut bytes =
                b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00".to_vec();
            bytes.extend([0xff, 0xc0, 0x00, 0x11, 0x08, h_high, h_low, w_high, w_low]);
            bytes.extend([0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01]);
            bytes.extend([0xff, 0xd9]);
            bytes
        }
        ImageFormat::Gif => {
            let mut bytes = b"GIF89a".to_vec();
            bytes.extend(width.to_le_bytes());
            bytes.extend(height.to_le_bytes());
            // No colour table, background 0, no aspect ratio; then the trailer.
            bytes.extend([0x00, 0x00, 0x00, 0x3b]);
            bytes
        }
        ImageFormat::Webp => {
            let mut bytes = b"RIFF\x16\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00".to_vec();
            bytes.extend([0, 0, 0, 0]);
            // The canvas size, minus one, in 24 bits each.
            bytes.extend(&(u32::from(width.max(1)) - 1).to_le_bytes()[..3]);
            bytes.extend(&(u32::from(height.max(1)) - 1).to_le_bytes()[..3]);
            bytes
        }
    }
}

/// The IHDR chunk comes first: length 13 at 8, `IHDR` at 12, width and height big-endian at 16.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    Some((be32(bytes, 16)?, be32(bytes, 20)?))
}

/// Walks the segments after SOI up to the first frame header (SOF0–SOF15 but DHT `C4`, JPG
/// `C8` and DAC `CC`), whose payload is precision, height, width. A scan or the end of the
/// image before any frame header means the size cannot be read.
fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut at = 2;
    loop {
        if *bytes.get(at)? != 0xff {
            return None;
        }
        // Any number of 0xFF fill bytes may come before a marker.
        while *bytes.get(at)? == 0xff {
            at += 1;
        }
        let marker = *bytes.get(at)?;
        at += 1;
        match marker {
            // Standalone markers: TEM and RST0–7 carry no length.
            0x01 | 0xd0..=0xd7 => continue,
            // Stuffed zero, a second SOI, EOI, or the scan: no frame header where it belongs.
            0x00 | 0xd8 | 0xd9 | 0xda => return None,
            _ => {}
        }
        let length = usize::try_from(be16(bytes, at)?).ok()?;
        if length < 2 {
            return None;
        }
        if matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc) {
            return Some((be16(bytes, at + 5)?, be16(bytes, at + 3)?));
        }
        at += length;
    }
}

/// The first chunk after `RIFF....WEBP` says how the picture is stored: lossy `VP8 ` (14-bit
/// sizes after the key frame's start code), lossless `VP8L` (14-bit sizes minus one after the
/// 0x2f signature) or extended `VP8X` (24-bit canvas sizes minus one).
fn webp_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let payload = bytes.get(20..)?;
    match bytes.get(12..16)? {
        b"VP8 " => {
            if payload.get(3..6)? != [0x9d, 0x01, 0x2a] {
                return None;
            }
            Some((le16(payload, 6)? & 0x3fff, le16(payload, 8)? & 0x3fff))
        }
        b"VP8L" => {
            if *payload.first()? != 0x2f {
                return None;
            }
            let bits = u32::from_le_bytes(payload.get(1..5)?.try_into().ok()?);
            Some(((bits & 0x3fff) + 1, (bits >> 14 & 0x3fff) + 1))
        }
        b"VP8X" => Some((le24(payload, 4)? + 1, le24(payload, 7)? + 1)),
        _ => None,
    }
}

fn be16(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 2)?;
    Some(u32::from(u16::from_be_bytes([b[0], b[1]])))
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn le16(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 2)?;
    Some(u32::from(u16::from_le_bytes([b[0], b[1]])))
}

fn le24(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 3)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], 0]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const FORMATS: [ImageFormat; 4] = [
        ImageFormat::Png,
        ImageFormat::Jpeg,
        ImageFormat::Gif,
        ImageFormat::Webp,
    ];

    #[test]
    fn header_only_images_read_back_at_their_size() {
        for format in FORMATS {
            for (width, height) in [(1, 1), (640, 480), (8_001, 3), (65_535, 65_535)] {
                let bytes = header_only(format, width, height);
                assert!(format.opens(&bytes), "{format:?}");
                assert_eq!(
                    format.size(&bytes),
                    Some((u32::from(width), u32::from(height))),
                    "{format:?} {width}x{height}"
                );
                let others = FORMATS.iter().filter(|other| **other != format);
                for other in others {
                    assert!(!other.opens(&bytes), "{format:?} read as {other:?}");
                    assert_eq!(other.size(&bytes), None);
                }
            }
        }
    }

    #[test]
    fn names_and_media_types_round_trip() {
        for format in FORMATS {
            assert_eq!(ImageFormat::from_name(format.name()), Some(format));
            assert_eq!(
                ImageFormat::from_media_type(format.media_type()),
                Some(format)
            );
        }
        for unknown in ["bmp", "jpg", "PNG", "image/jpg", "text/plain", ""] {
            assert_eq!(ImageFormat::from_name(unknown), None);
            assert_eq!(ImageFormat::from_media_type(unknown), None);
        }
    }

    #[test]
    fn gif87a_is_a_gif_too() {
        let mut bytes = header_only(ImageFormat::Gif, 16, 32);
        bytes[4] = b'7';
        assert_eq!(ImageFormat::Gif.size(&bytes), Some((16, 32)));
    }

    #[test]
    fn jpeg_size_comes_from_the_frame_header_after_other_segments() {
        // SOI, a DHT (C4, not a frame header despite its place among the SOFs), fill bytes,
        // an RST marker, then a progressive SOF2 of 300 wide and 200 high.
        let mut bytes = b"\xff\xd8\xff\xc4\x00\x04\xab\xcd\xff\xff\xff\xd0".to_vec();
        bytes.extend(b"\xff\xc2\x00\x0b\x08\x00\xc8\x01\x2c\x01\x01\x11\x00");
        assert_eq!(ImageFormat::Jpeg.size(&bytes), Some((300, 200)));
    }

    #[test]
    fn jpeg_without_a_frame_header_has_no_size() {
        for bytes in [
            &b"\xff\xd8\xff"[..],
            b"\xff\xd8\xff\xe0\x00\x10JFIF",
            b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00",
            b"\xff\xd8\xff\xd9",
            b"\xff\xd8\xff\xe0\x00\x01",
            b"\xff\xd8\xff\xc0\x00\x11\x08\x00",
        ] {
            assert_eq!(ImageFormat::Jpeg.size(bytes), None, "{bytes:?}");
        }
    }

    #[test]
    fn webp_lossy_and_lossless_chunks_give_their_sizes() {
        let riff = |chunk: &[u8], payload: &[u8]| {
            let mut bytes = b"RIFF\0\0\0\0WEBP".to_vec();
            bytes.extend(chunk);
            bytes.extend(u32::try_from(payload.len()).unwrap().to_le_bytes());
            bytes.extend(payload);
            bytes
        };
        // Frame tag, start code, then 14-bit width and height (the top two bits scale).
        let lossy = riff(b"VP8 ", b"\x00\x00\x00\x9d\x01\x2a\x40\x41\x20\x00");
        assert_eq!(ImageFormat::Webp.size(&lossy), Some((320, 32)));
        // Signature, then width-1 in 14 bits and height-1 in the next 14: 1000 x 2.
        let bits: u32 = 999 | 1 << 14;
        let mut payload = vec![0x2f];
        payload.extend(bits.to_le_bytes());
        let lossless = riff(b"VP8L", &payload);
        assert_eq!(ImageFormat::Webp.size(&lossless), Some((1000, 2)));
        let bad_start_code = riff(b"VP8 ", b"\x00\x00\x00\x00\x00\x00\x40\x01\x20\x00");
        assert_eq!(ImageFormat::Webp.size(&bad_start_code), None);
        assert_eq!(ImageFormat::Webp.size(&riff(b"ALPH", b"0123456789")), None);
    }

    #[test]
    fn cut_short_or_empty_headers_have_no_size() {
        for format in FORMATS {
            let whole = header_only(format, 10, 10);
            // Cut inside the height (PNG, GIF, WebP) or the width (JPEG, which gives it last).
            let cut = &whole[..whole.len().min(match format {
                ImageFormat::Png => 20,
                ImageFormat::Jpeg => 26,
                ImageFormat::Gif => 8,
                ImageFormat::Webp => 28,
            })];
            assert_eq!(format.size(cut), None, "{format:?}");
        }
        assert_eq!(
            ImageFormat::Png.size(&header_only(ImageFormat::Png, 0, 5)),
            None
        );
        assert_eq!(
            ImageFormat::Gif.size(&header_only(ImageFormat::Gif, 5, 0)),
            None
        );
    }

    #[test]
    fn base64_decodes_standard_padded_text_only() {
        assert_eq!(decode_base64("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_base64("aGVsbG8"), None);
        assert_eq!(decode_base64("not base64!"), None);
        assert_eq!(decode_base64("aGVs bG8="), None);
    }
}
