//! Images in chat messages: what a request's `image_url` parts become, how their format and
//! size are known (read from the bytes themselves, never taken from what the caller says),
//! and the limits a model puts on them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::ConfigIssue;
use crate::web::HostPattern;

/// `[server.images]`: images in requests. Data URLs are always read; image URLs only from the
/// hosts listed, since fetching one makes ragway call an address a stranger chose.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImagesConfig {
    /// Hosts whose `https` image URLs ragway fetches (a name, `*.` and a domain, an IP address,
    /// or `*`); none by default. Loopback hosts listed by name or address may be fetched over
    /// plain `http`.
    #[serde(default)]
    pub fetch_hosts: Vec<String>,
    /// Bytes of one image, whatever the model (a model may take fewer).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// How long fetching one image may take, from connecting to the last byte.
    #[serde(default = "default_fetch_timeout_secs")]
    pub fetch_timeout_secs: f64,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        Self {
            fetch_hosts: Vec::new(),
            max_bytes: default_max_bytes(),
            fetch_timeout_secs: default_fetch_timeout_secs(),
        }
    }
}

/// OpenAI's limit for one image.
fn default_max_bytes() -> usize {
    20 * 1024 * 1024
}

fn default_fetch_timeout_secs() -> f64 {
    10.0
}

impl ImagesConfig {
    /// The host patterns of [`Self::fetch_hosts`] (checked at start-up, so none is dropped).
    pub fn fetch_patterns(&self) -> Vec<HostPattern> {
        self.fetch_hosts
            .iter()
            .filter_map(|entry| HostPattern::parse(entry))
            .collect()
    }

    pub fn fetch_timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.fetch_timeout_secs)
            .unwrap_or(Duration::from_secs_f64(default_fetch_timeout_secs()))
    }

    pub(crate) fn validate(&self, issues: &mut Vec<ConfigIssue>) {
        let mut issue = |path: String, message: String| issues.push(ConfigIssue { path, message });
        for (i, entry) in self.fetch_hosts.iter().enumerate() {
            if HostPattern::parse(entry).is_none() {
                issue(
                    format!("server.images.fetch_hosts[{i}]"),
                    format!(
                        "{entry:?} is not a host name, \"*.\" and a domain, an IP address or \
                         \"*\" (no scheme, port or path)"
                    ),
                );
            }
        }
        if self.max_bytes == 0 {
            issue(
                "server.images.max_bytes".into(),
                "must be at least 1".into(),
            );
        }
        if !(self.fetch_timeout_secs > 0.0 && self.fetch_timeout_secs <= 300.0) {
            issue(
                "server.images.fetch_timeout_secs".into(),
                format!(
                    "must be above 0 and at most 300, got {}",
                    self.fetch_timeout_secs
                ),
            );
        }
    }
}

/// The image formats ragway passes on: the ones OpenAI and Bedrock both read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Gif,
    Webp,
}

impl ImageFormat {
    /// `image/png`, …: the media type of a data URL.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
        }
    }

    /// `png`, `jpeg`, `gif` or `webp`: Bedrock's name of the format.
    pub fn name(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
            Self::Gif => "gif",
            Self::Webp => "webp",
        }
    }
}

/// An image's bytes, with the format and size read from them. Cloning shares the bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageData {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    bytes: Arc<[u8]>,
}

impl ImageData {
    /// Reads `bytes` as an image: its format from its signature, its size from its header. The
    /// error says what they are instead (another format, or not an image at all).
    pub fn read(bytes: Vec<u8>) -> Result<Self, String> {
        use imagesize::ImageType;
        let format = match imagesize::image_type(&bytes) {
            Ok(ImageType::Png) => ImageFormat::Png,
            Ok(ImageType::Jpeg) => ImageFormat::Jpeg,
            Ok(ImageType::Gif) => ImageFormat::Gif,
            Ok(ImageType::Webp) => ImageFormat::Webp,
            Ok(other) => {
                return Err(format!(
                    "the image is {other:?}; send PNG, JPEG, GIF or WebP"
                ));
            }
            Err(_) => {
                return Err(
                    "the data is not an image ragway can read (PNG, JPEG, GIF or WebP)".to_owned(),
                );
            }
        };
        let size = imagesize::blob_size(&bytes).map_err(|_| {
            format!(
                "the {} image is cut short or damaged: its size cannot be read",
                format.name()
            )
        })?;
        let side = |pixels: usize| u32::try_from(pixels).unwrap_or(u32::MAX);
        let (width, height) = (side(size.width), side(size.height));
        if width == 0 || height == 0 {
            return Err(format!("the {} image has no pixels", format.name()));
        }
        Ok(Self {
            format,
            width,
            height,
            bytes: bytes.into(),
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for ImageData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}x{} ({} bytes)",
            self.format.name(),
            self.width,
            self.height,
            self.bytes.len()
        )
    }
}

/// Where an image in a message comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ImageSource {
    /// The image itself (a data URL, or fetched).
    Data(ImageData),
    /// An address not fetched yet; the engine fetches it (when the configuration allows its
    /// host) before any model sees the request.
    Url(String),
}

/// One image of a user message.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub source: ImageSource,
    /// OpenAI's `detail` (`auto`, `low` or `high`), passed on to OpenAI models.
    pub detail: Option<String>,
}

/// What a model reading images takes; checked before it is called, so a request past them is
/// the caller's 400 and not an upstream error after retrieval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLimits {
    /// Images in one request, all messages together.
    pub max_images: usize,
    /// Bytes of one image.
    pub max_bytes: usize,
    /// Pixels of one image's width and of its height.
    pub max_side: u32,
}

impl ImageLimits {
    /// Checks every image of `messages` (fetched already); the error names the message and
    /// the image in it, as `(param, message)`.
    pub fn check(&self, messages: &[crate::Message]) -> Result<(), (String, String)> {
        let mut count = 0;
        for (i, message) in messages.iter().enumerate() {
            for (k, image) in message.images.iter().enumerate() {
                count += 1;
                let ImageSource::Data(data) = &image.source else {
                    continue;
                };
                let which = format!("image {} of messages.{i}", k + 1);
                if data.bytes().len() > self.max_bytes {
                    return Err((
                        format!("messages.{i}.content"),
                        format!(
                            "{which} is {} bytes; this model takes images of at most {} bytes",
                            data.bytes().len(),
                            self.max_bytes
                        ),
                    ));
                }
                if data.width > self.max_side || data.height > self.max_side {
                    return Err((
                        format!("messages.{i}.content"),
                        format!(
                            "{which} is {}x{} pixels; this model takes images of at most {} \
                             pixels a side",
                            data.width, data.height, self.max_side
                        ),
                    ));
                }
            }
        }
        if count > self.max_images {
            return Err((
                "messages".to_owned(),
                format!(
                    "the request has {count} images; this model takes at most {} in one request",
                    self.max_images
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG's signature and header chunk: enough to be read as a `width`x`height` PNG.
    pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        bytes.extend(width.to_be_bytes());
        bytes.extend(height.to_be_bytes());
        bytes.extend([8, 6, 0, 0, 0, 0, 0, 0, 0]);
        bytes
    }

    #[test]
    fn format_and_size_come_from_the_bytes() {
        let image = ImageData::read(png(640, 480)).unwrap();
        assert_eq!(
            (image.format, image.width, image.height),
            (ImageFormat::Png, 640, 480)
        );
        let gif = ImageData::read(b"GIF89a\x10\x00\x20\x00\x00\x00\x00".to_vec()).unwrap();
        assert_eq!(
            (gif.format, gif.width, gif.height),
            (ImageFormat::Gif, 16, 32)
        );
    }

    #[test]
    fn what_is_not_a_readable_image_says_so() {
        for (bytes, expected) in [
            (b"<html>hello</html>".to_vec(), "not an image"),
            (
                b"BM\x1e\0\0\0\0\0\0\0\x1a\0\0\0\x0c\0\0\0\x01\0\x01\0\x01\0\x18\0".to_vec(),
                "Bmp",
            ),
            (b"\x89PNG\r\n\x1a\n\0\0\0\x0dIH".to_vec(), "cut short"),
            (png(0, 10), "no pixels"),
            (Vec::new(), "not an image"),
        ] {
            let error = ImageData::read(bytes).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn limits_name_the_image_past_them() {
        let limits = ImageLimits {
            max_images: 2,
            max_bytes: 1_000,
            max_side: 8_000,
        };
        let with = |images: Vec<Vec<u8>>| crate::Message {
            images: images
                .into_iter()
                .map(|bytes| Image {
                    source: ImageSource::Data(ImageData::read(bytes).unwrap()),
                    detail: None,
                })
                .collect(),
            ..crate::Message::user("look")
        };
        let fine = [
            crate::Message::system("s"),
            with(vec![png(10, 10), png(8_000, 1)]),
        ];
        assert_eq!(limits.check(&fine), Ok(()));

        let wide = [
            crate::Message::system("s"),
            with(vec![png(10, 10), png(8_001, 1)]),
        ];
        let (param, message) = limits.check(&wide).unwrap_err();
        assert_eq!(param, "messages.1.content");
        assert!(
            message.contains("image 2 of messages.1 is 8001x1"),
            "{message}"
        );

        let mut big = png(10, 10);
        big.resize(1_001, 0);
        let (_, message) = limits.check(&[with(vec![big])]).unwrap_err();
        assert!(message.contains("1001 bytes"), "{message}");

        let many = [with(vec![png(1, 1), png(1, 1)]), with(vec![png(1, 1)])];
        let (param, message) = limits.check(&many).unwrap_err();
        assert_eq!(param, "messages");
        assert!(message.contains("3 images"), "{message}");
    }
}
