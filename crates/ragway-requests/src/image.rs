//! `image_url` content parts of user messages. A data URL is read here into the image's bytes
//! (format and size from the bytes themselves, whatever media type it claims); an address is
//! kept for the engine to fetch, and only when `[server.images] fetch_hosts` lists its host.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ragway_core::image::ImagesConfig;
use ragway_core::web::HostPattern;
use ragway_core::{Image, ImageData, ImageSource};
use serde_json::Value;

use crate::error::RequestError;

/// Standard base64, padded or not (clients differ).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `{"type": "image_url", "image_url": {"url", "detail"}}` at `at` (`messages.0.content.1`).
pub(crate) fn image_part(
    at: &str,
    part: &Value,
    config: &ImagesConfig,
) -> Result<Image, RequestError> {
    let url_at = format!("{at}.image_url.url");
    let Some(url) = part.pointer("/image_url/url").and_then(Value::as_str) else {
        return Err(RequestError::bad(
            url_at,
            "an image_url part needs image_url.url: a data URL or an https address",
        ));
    };
    let detail = match part.pointer("/image_url/detail") {
        None | Some(Value::Null) => None,
        Some(Value::String(detail)) if matches!(detail.as_str(), "auto" | "low" | "high") => {
            Some(detail.clone())
        }
        Some(_) => {
            return Err(RequestError::bad(
                format!("{at}.image_url.detail"),
                "detail is \"auto\", \"low\" or \"high\"",
            ));
        }
    };
    let source = match url.strip_prefix("data:") {
        Some(data) => ImageSource::Data(
            data_url(data, config.max_bytes)
                .map_err(|message| RequestError::bad(&url_at, message))?,
        ),
        None => ImageSource::Url(
            address(url, config).map_err(|message| RequestError::bad(&url_at, message))?,
        ),
    };
    Ok(Image { source, detail })
}

/// The image of a data URL without its `data:`: `image/png;base64,iVBOR…`.
fn data_url(data: &str, max_bytes: usize) -> Result<ImageData, String> {
    let Some((media_type, encoded)) = data.split_once(',') else {
        return Err("a data URL is data:<media type>;base64,<data>".to_owned());
    };
    let Some(media_type) = media_type.strip_suffix(";base64") else {
        return Err("an image data URL must be base64 (data:image/png;base64,…)".to_owned());
    };
    if !media_type.to_ascii_lowercase().starts_with("image/") {
        return Err(format!("the data URL holds {media_type:?}, not an image"));
    }
    // Refused before decoding: four characters carry three bytes.
    let decoded_len = encoded.len() / 4 * 3;
    if decoded_len > max_bytes.saturating_add(3) {
        return Err(too_big(decoded_len, max_bytes));
    }
    let bytes = BASE64
        .decode(encoded.trim_end())
        .map_err(|error| format!("the data URL's data is not base64: {error}"))?;
    if bytes.len() > max_bytes {
        return Err(too_big(bytes.len(), max_bytes));
    }
    ImageData::read(bytes)
}

fn too_big(bytes: usize, max_bytes: usize) -> String {
    format!(
        "the image is {bytes} bytes, more than the limit of {max_bytes} \
         (server.images.max_bytes)"
    )
}

/// An image's address, if ragway may fetch it: `https`, a host `fetch_hosts` lists, no user
/// name or password; plain `http` only for a loopback host listed by name or address.
fn address(url: &str, config: &ImagesConfig) -> Result<String, String> {
    let patterns = config.fetch_patterns();
    if patterns.is_empty() {
        return Err(
            "ragway fetches no image URLs unless [server.images] fetch_hosts lists their host; \
             send the image as a data URL (data:image/png;base64,…)"
                .to_owned(),
        );
    }
    let parsed = url::Url::parse(url)
        .map_err(|error| format!("image_url.url is neither a data URL nor an address: {error}"))?;
    let Some(host) = parsed.host_str() else {
        return Err("the image's address has no host".to_owned());
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("an image address may not carry a user name or password".to_owned());
    }
    let Some(pattern) = patterns.iter().find(|p| p.matches(&host)) else {
        return Err(format!(
            "ragway fetches images only from the hosts [server.images] fetch_hosts lists, and \
             {host} is not one of them; send the image as a data URL instead"
        ));
    };
    match parsed.scheme() {
        "https" => {}
        "http" if is_loopback(&host) && matches!(pattern, HostPattern::Exact(_)) => {}
        "http" => {
            return Err(
                "image addresses must be https (plain http only for a loopback host listed in \
                 fetch_hosts)"
                    .to_owned(),
            );
        }
        other => {
            return Err(format!(
                "image_url.url is a data URL or an https address, not {other}:"
            ));
        }
    }
    Ok(parsed.into())
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A PNG's signature and header chunk, as base64: a 2x3 image for ragway's purposes.
    fn png() -> String {
        let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        bytes.extend(2u32.to_be_bytes());
        bytes.extend(3u32.to_be_bytes());
        bytes.extend([8, 6, 0, 0, 0, 0, 0, 0, 0]);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn part(url: &str) -> Value {
        json!({ "type": "image_url", "image_url": { "url": url } })
    }

    fn read(url: &str, config: &ImagesConfig) -> Result<Image, String> {
        image_part("messages.0.content.1", &part(url), config).map_err(|error| {
            let RequestError::BadRequest { param, message } = error else {
                panic!("{error:?}")
            };
            assert_eq!(param, "messages.0.content.1.image_url.url");
            message
        })
    }

    #[test]
    fn a_data_url_is_read_from_its_bytes() {
        let config = ImagesConfig::default();
        // The claimed type is wrong; the bytes say PNG.
        let image = read(&format!("data:image/jpeg;base64,{}", png()), &config).unwrap();
        let ImageSource::Data(data) = image.source else {
            panic!()
        };
        assert_eq!((data.format.name(), data.width, data.height), ("png", 2, 3));
        let unpadded = png().trim_end_matches('=').to_owned();
        assert!(read(&format!("data:image/png;base64,{unpadded}"), &config).is_ok());
    }

    #[test]
    fn hostile_data_urls_are_refused_with_the_reason() {
        let config = ImagesConfig {
            max_bytes: 64,
            ..ImagesConfig::default()
        };
        let html = base64::engine::general_purpose::STANDARD.encode("<script>alert(1)</script>");
        let huge = "A".repeat(10_000_000);
        for (url, expected) in [
            ("data:image/png,raw".to_owned(), "must be base64"),
            ("data:image/png;base64".to_owned(), "data:<media type>"),
            (format!("data:text/html;base64,{html}"), "not an image"),
            (
                format!("data:image/png;base64,{html}"),
                "not an image ragway can read",
            ),
            ("data:image/png;base64,!!!!".to_owned(), "not base64"),
            (
                format!("data:image/png;base64,{huge}"),
                "server.images.max_bytes",
            ),
        ] {
            let message = read(&url, &config).unwrap_err();
            assert!(message.contains(expected), "{url:.40}: {message}");
        }
    }

    #[test]
    fn addresses_are_fetched_only_from_listed_hosts() {
        let none = ImagesConfig::default();
        let message = read("https://images.example.com/a.png", &none).unwrap_err();
        assert!(message.contains("fetch_hosts"), "{message}");

        let listed = ImagesConfig {
            fetch_hosts: vec!["*.example.com".into(), "127.0.0.1".into()],
            ..ImagesConfig::default()
        };
        let image = read("https://images.example.com/a.png", &listed).unwrap();
        assert_eq!(
            image.source,
            ImageSource::Url("https://images.example.com/a.png".into())
        );
        assert!(read("http://127.0.0.1:9/a.png", &listed).is_ok());
        for (url, expected) in [
            ("https://example.org/a.png", "not one of them"),
            // The host is what follows the `@`: refused either way.
            ("https://images.example.com@evil.test/a.png", "user name"),
            ("https://user:pw@images.example.com/a.png", "user name"),
            ("http://images.example.com/a.png", "must be https"),
            ("file:///etc/passwd", "has no host"),
            ("ftp://images.example.com/a.png", "not ftp:"),
            ("not a url", "neither a data URL nor an address"),
        ] {
            let message = read(url, &listed).unwrap_err();
            assert!(message.contains(expected), "{url}: {message}");
        }
    }

    #[test]
    fn detail_is_one_of_three() {
        let mut with_detail = part(&format!("data:image/png;base64,{}", png()));
        with_detail["image_url"]["detail"] = json!("low");
        let image = image_part("m", &with_detail, &ImagesConfig::default()).unwrap();
        assert_eq!(image.detail.as_deref(), Some("low"));
        with_detail["image_url"]["detail"] = json!("ultra");
        let error = image_part("m", &with_detail, &ImagesConfig::default()).unwrap_err();
        assert!(
            matches!(error, RequestError::BadRequest { param, .. } if param == "m.image_url.detail")
        );
    }
}
