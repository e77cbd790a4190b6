//! Gzip bodies with a per-request id, without compressing on the hot path.
//!
//! A template is compressed once as one raw-deflate stream, flushed (sync flush, so the
//! output is byte-aligned) after every static piece. Each request-number field is fed to
//! the compressor as bytes that JSON never contains (0x01), and the compressed output for
//! them is thrown away: in its place a request gets a stored (uncompressed) deflate block
//! with its digits. Back-references of the static pieces can never point into those fields,
//! since a match copies equal bytes and the static pieces hold no 0x01, so the stream stays
//! valid whatever digits are spliced in. Only the CRC-32 of the gzip trailer is computed per
//! request.

use bytes::{Bytes, BytesMut};
use flate2::{Compress, CompressError, Compression, Crc, FlushCompress, Status};

use crate::batch::{BatchTemplate, REQUEST_DIGITS, request_digits};

/// What the compressor sees in place of the request number; JSON text never holds it.
const PLACEHOLDER: u8 = 0x01;

/// A stored deflate block header for the digits: not final, type 00, LEN and NLEN.
const STORED_HEADER: [u8; 5] = {
    let len = REQUEST_DIGITS as u16;
    let [l0, l1] = len.to_le_bytes();
    let [n0, n1] = (!len).to_le_bytes();
    [0x00, l0, l1, n0, n1]
};

/// gzip member header: deflate, no name, no mtime, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// A batch template and its precompressed pieces.
#[derive(Debug, Clone)]
pub struct GzipTemplate {
    plain: BatchTemplate,
    /// The compressed static pieces, back to back; piece `i` ends at `piece_ends[i]`.
    compressed: Vec<u8>,
    piece_ends: Vec<usize>,
}

impl GzipTemplate {
    /// Compresses `plain` at the fast level (what an SDK would use).
    pub fn new(plain: BatchTemplate) -> Result<GzipTemplate, CompressError> {
        let json = plain.json();
        let mut deflate = Compress::new(Compression::fast(), false);
        let mut compressed = Vec::with_capacity(json.len() / 3);
        let mut piece_ends = Vec::with_capacity(plain.request_fields().len() + 1);
        let mut start = 0;
        for &field in plain.request_fields() {
            deflate_into(&mut deflate, &json[start..field], FlushCompress::Sync, &mut compressed)?;
            piece_ends.push(compressed.len());
            let mut discarded = Vec::with_capacity(64);
            deflate_into(&mut deflate, &[PLACEHOLDER; REQUEST_DIGITS], FlushCompress::Sync, &mut discarded)?;
            start = field + REQUEST_DIGITS;
        }
        deflate_into(&mut deflate, &json[start..], FlushCompress::Finish, &mut compressed)?;
        piece_ends.push(compressed.len());
        Ok(GzipTemplate { plain, compressed, piece_ends })
    }

    /// Events in the body.
    pub fn events(&self) -> usize {
        self.plain.events()
    }

    /// Size of the uncompressed body.
    pub fn plain_len(&self) -> usize {
        self.plain.json().len()
    }

    /// Size of a compressed body.
    pub fn compressed_len(&self) -> usize {
        GZIP_HEADER.len() + self.compressed.len() + self.piece_ends.len().saturating_sub(1) * 15 + 8
    }

    /// The gzip body of request number `request`; it decompresses to
    /// `BatchTemplate::body(request)` of the same template.
    pub fn body(&self, request: u64) -> Bytes {
        let digits = request_digits(request);
        let json = self.plain.json();
        let mut body = BytesMut::with_capacity(self.compressed_len());
        let mut crc = Crc::new();
        body.extend_from_slice(&GZIP_HEADER);
        let (mut piece_start, mut plain_start) = (0, 0);
        for (&piece_end, &field) in self.piece_ends.iter().zip(self.plain.request_fields()) {
            body.extend_from_slice(&self.compressed[piece_start..piece_end]);
            body.extend_from_slice(&STORED_HEADER);
            body.extend_from_slice(&digits);
            crc.update(&json[plain_start..field]);
            crc.update(&digits);
            piece_start = piece_end;
            plain_start = field + REQUEST_DIGITS;
        }
        body.extend_from_slice(&self.compressed[piece_start..]);
        crc.update(&json[plain_start..]);
        body.extend_from_slice(&crc.sum().to_le_bytes());
        body.extend_from_slice(&(json.len() as u32).to_le_bytes());
        body.freeze()
    }
}

/// Compresses all of `input` with `flush`, appending the output to `out`.
fn deflate_into(
    deflate: &mut Compress,
    mut input: &[u8],
    flush: FlushCompress,
    out: &mut Vec<u8>,
) -> Result<(), CompressError> {
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        let before = deflate.total_in();
        let status = deflate.compress_vec(input, out, flush)?;
        input = &input[(deflate.total_in() - before) as usize..];
        // A flush is complete once the compressor stops short of filling the buffer.
        let done = match flush {
            FlushCompress::Finish => status == Status::StreamEnd,
            _ => input.is_empty() && out.len() < out.capacity(),
        };
        if done {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::GzDecoder;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::batch::sample_shape;

    fn gunzip(body: &[u8]) -> Vec<u8> {
        let mut plain = Vec::new();
        GzDecoder::new(body).read_to_end(&mut plain).expect("valid gzip");
        plain
    }

    #[test]
    fn decompresses_to_the_plain_body_of_the_same_request() {
        let plain = BatchTemplate::build(&sample_shape(), 500, &mut StdRng::seed_from_u64(5));
        let gzip = GzipTemplate::new(plain.clone()).expect("compress");
        for request in [0, 1, 99, 1_111_111_111, 9_999_999_999] {
            let body = gzip.body(request);
            assert_eq!(body.len(), gzip.compressed_len());
            assert_eq!(gunzip(&body), plain.body(request), "request {request}");
        }
    }

    #[test]
    fn compresses_well_despite_the_splices() {
        let plain = BatchTemplate::build(&sample_shape(), 500, &mut StdRng::seed_from_u64(6));
        let gzip = GzipTemplate::new(plain).expect("compress");
        assert!(
            gzip.compressed_len() * 2 < gzip.plain_len(),
            "{} of {}",
            gzip.compressed_len(),
            gzip.plain_len()
        );
    }

    #[test]
    fn an_empty_batch_still_makes_a_valid_stream() {
        let plain = BatchTemplate::build(&sample_shape(), 0, &mut StdRng::seed_from_u64(7));
        let gzip = GzipTemplate::new(plain).expect("compress");
        assert_eq!(gunzip(&gzip.body(3)), b"{\"batch\":[]}");
    }
}
