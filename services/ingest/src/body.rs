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
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| too_large(limit))?;
    if !gzip {
        return Ok(bytes);
    }
    gunzip(&bytes, limit)
}

/// A body that is gzip without saying so (posthog-js's `?compression=gzip-js`), inflated
/// within `limit`; any other body as it is.
pub fn inflate_unlabelled(bytes: Bytes, limit: usize) -> Result<Bytes, RequestError> {
    if bytes.starts_with(&[0x1f, 0x8b]) { gunzip(&bytes, limit) } else { Ok(bytes) }
}

/// Inflates a gzip body, at most `limit` bytes of it.
fn gunzip(bytes: &[u8], limit: usize) -> Result<Bytes, RequestError> {
    // Cap the output as well: a small gzip body may inflate to gigabytes. MultiGzDecoder
    // reads every gzip member (the format allows several) and refuses trailing bytes that
    // are not one, instead of silently ignoring them.
    let mut inflated = Vec::with_capacity(bytes.len().saturating_mul(4).min(limit));
    flate2::read::MultiGzDecoder::new(bytes).take(limit as u64 + 1).read_to_end(&mut inflated).map_err(
        |e| {
            RequestError::new(
                RequestErrorCode::InvalidGzip,
                format!("the gzip body cannot be decompressed: {e}"),
            )
        },
    )?;
    if inflated.len() > limit {
        return Err(too_large(limit));
    }
    Ok(Bytes::from(inflated))
}

fn too_large(limit: usize) -> RequestError {
    RequestError::new(
        RequestErrorCode::BodyTooLarge,
        format!("the body is larger than the limit of {limit} bytes"),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unlabelled_gzip_body_is_inflated_within_the_limit() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&vec![b'a'; 10_000]).expect("gzip");
        let bytes = Bytes::from(gz.finish().expect("gzip"));
        assert_eq!(inflate_unlabelled(bytes.clone(), 10_000).expect("fits").len(), 10_000);
        let too_large = inflate_unlabelled(bytes.clone(), 9_999).expect_err("too large");
        assert_eq!(too_large.code, RequestErrorCode::BodyTooLarge);
        let truncated = inflate_unlabelled(bytes.slice(..bytes.len() / 2), 10_000).expect_err("truncated");
        assert_eq!(truncated.code, RequestErrorCode::InvalidGzip);
        // Not gzip: as it is.
        assert_eq!(
            inflate_unlabelled(Bytes::from_static(b"[]"), 1).expect("plain"),
            Bytes::from_static(b"[]")
        );
    }
}
