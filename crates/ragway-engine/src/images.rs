//! Images a request gives by address, fetched before the model is called (the request reader
//! let through only addresses whose host `[server.images] fetch_hosts` lists). Fetching calls
//! an address a stranger chose, so it is bounded every way: the configured time and size, no
//! redirects, the image's bytes read for its format, and unless the host is listed by its
//! exact name or address, only public addresses are connected to (a wildcard never reaches
//! the machine's own network, a cloud metadata address, or a name that resolves there).

use std::net::{IpAddr, SocketAddr};

use futures::StreamExt as _;
use ragway_core::image::ImagesConfig;
use ragway_core::web::HostPattern;
use ragway_core::{ImageData, ImageSource, Message};

use crate::error::EngineError;

/// Images fetched at once for one request: a request may give hundreds of addresses, and
/// each fetch holds a connection and up to `max_bytes`.
const MAX_FETCHES: usize = 4;

/// Replaces every image of `messages` given by address with its bytes, [`MAX_FETCHES`] at a
/// time; the first that cannot be fetched is a 400 naming its message.
pub(crate) async fn fetch_all(
    config: &ImagesConfig,
    messages: &mut [Message],
) -> Result<(), EngineError> {
    let addresses: Vec<(usize, usize, String)> = messages
        .iter()
        .enumerate()
        .flat_map(|(i, message)| {
            message
                .images
                .iter()
                .enumerate()
                .filter_map(move |(k, image)| match &image.source {
                    ImageSource::Url(url) => Some((i, k, url.clone())),
                    ImageSource::Data(_) => None,
                })
        })
        .collect();
    let mut fetched = futures::stream::iter(addresses)
        .map(|(i, k, url)| async move {
            let data = fetch(config, &url).await.map_err(|reason| {
                EngineError::bad_request(
                    &format!("messages.{i}.content"),
                    format!(
                        "image {} of messages.{i} could not be fetched from {url}: {reason}",
                        k + 1
                    ),
                )
            })?;
            Ok::<_, EngineError>((i, k, data))
        })
        .buffer_unordered(MAX_FETCHES);
    while let Some(result) = fetched.next().await {
        let (i, k, data) = result?;
        messages[i].images[k].source = ImageSource::Data(data);
    }
    Ok(())
}

/// The image at `url`, within the configured time.
async fn fetch(config: &ImagesConfig, url: &str) -> Result<ImageData, String> {
    let timeout = config.fetch_timeout();
    tokio::time::timeout(timeout, fetch_unbounded(config, url))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "it did not arrive within {}s (server.images.fetch_timeout_secs)",
                timeout.as_secs_f64()
            ))
        })
}

async fn fetch_unbounded(config: &ImagesConfig, url: &str) -> Result<ImageData, String> {
    let parsed = url::Url::parse(url).map_err(|error| error.to_string())?;
    let host = parsed.host_str().ok_or("the address has no host")?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let port = parsed.port_or_known_default().unwrap_or(443);
    let mut addresses: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|error| format!("{bare} cannot be resolved: {error}"))?
        .collect();
    let listed_exactly = config
        .fetch_patterns()
        .iter()
        .any(|pattern| matches!(pattern, HostPattern::Exact(_)) && pattern.matches(bare));
    if !listed_exactly {
        addresses.retain(|address| is_public(address.ip()));
        if addresses.is_empty() {
            return Err(format!(
                "{bare} is a private, loopback or link-local address; ragway reaches those only \
                 for hosts fetch_hosts lists by their exact name or address"
            ));
        }
    }
    // Connect only to the addresses just checked: no second lookup can answer otherwise.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve_to_addrs(bare, &addresses)
        .build()
        .map_err(|error| error.to_string())?;
    let response = client
        .get(parsed)
        .send()
        .await
        .map_err(|error| format!("the request failed: {error}"))?;
    let status = response.status();
    if status.is_redirection() {
        return Err(format!(
            "it answered {status}; ragway follows no redirects for images, so give the final \
             address"
        ));
    }
    if !status.is_success() {
        return Err(format!("it answered {status}"));
    }
    let max_bytes = config.max_bytes;
    if response
        .content_length()
        .is_some_and(|length| length > max_bytes as u64)
    {
        return Err(too_big(max_bytes));
    }
    let mut bytes = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|error| format!("the body broke off: {error}"))?;
        if bytes.len() + chunk.len() > max_bytes {
            return Err(too_big(max_bytes));
        }
        bytes.extend_from_slice(&chunk);
    }
    ImageData::read(bytes)
}

fn too_big(max_bytes: usize) -> String {
    format!("the image is more than {max_bytes} bytes (server.images.max_bytes)")
}

/// Whether `ip` is on the public internet: not loopback, private, link-local (cloud metadata
/// lives there), shared, unspecified, multicast or for documentation.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                // 100.64.0.0/10, carrier-grade NAT.
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
