//! What the fuzz targets share.

/// UTF-8 and JSON's grammar (numbers of any size: JSON puts no bound on them, though
/// `serde_json::Value` refuses those past f64's range).
pub fn is_json(body: &[u8]) -> bool {
    std::str::from_utf8(body)
        .is_ok_and(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok())
}
