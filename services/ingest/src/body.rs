//! Reading a request body within the pipeline's limits: media type, encoding (gzip or
//! none), size before and after decompression, and UTF-8.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};

use crate::error::{RequestError, RequestErrorCode};

/// The body's bytes, decompressed, at most `limit` bytes.
pub async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, RequestError> {
    check_media_type(headers)?;
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
    {
        None => false,
        Some(e) if e.is_empty() || e == "identity" => false,
        Some(e) if e == "gzip" => true,
        Some(other) => {
            return Err(RequestError::new(
                RequestErrorCode::UnsupportedEncoding,
                format!("Content-Encoding {other:?} is not supported; send gzip or no encoding"),
            )
            .field("Content-Encoding"));
        }
    };
    let too_large = || {
        RequestError::new(
            RequestErrorCode::BodyTooLarge,
            format!("the body is larger than the limit of {limit} bytes"),
        )
    };
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| too_large())?;
    if !gzip {
        return Ok(bytes);
    }
    // Cap the output as well: a small gzip body may inflate to gigabytes. MultiGzDecoder
    // reads every gzip member (the format allows several) and refuses trailing bytes that
    // are not one, instead of silently ignoring them.
    let mut inflated = Vec::with_capacity(bytes.len().saturating_mul(4).min(limit));
    flate2::read::MultiGzDecoder::new(bytes.as_ref())
        .take(limit as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| {
            RequestError::new(
                RequestErrorCode::InvalidGzip,
                format!("the gzip body cannot be decompressed: {e}"),
            )
        })?;
    if inflated.len() > limit {
        return Err(too_large());
    }
    Ok(Bytes::from(inflated))
}

/// The body as UTF-8 text.
pub fn utf8(bytes: &Bytes) -> Result<&str, RequestError> {
    std::str::from_utf8(bytes).map_err(|e| {
        RequestError::new(
            RequestErrorCode::InvalidJson,
            format!("the body is not UTF-8 (invalid byte at offset {})", e.valid_up_to()),
        )
    })
}

/// JSON, or text/plain (what browsers' sendBeacon sends), or no Content-Type at all.
fn check_media_type(headers: &HeaderMap) -> Result<(), RequestError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(()) };
    let media = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media == "application/json" || media == "text/plain" || media.ends_with("+json") {
        Ok(())
    } else {
        Err(RequestError::new(
            RequestErrorCode::UnsupportedMediaType,
            format!("Content-Type {media:?} is not supported; send application/json"),
        )
        .field("Content-Type"))
    }
}
