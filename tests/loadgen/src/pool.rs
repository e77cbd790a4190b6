//! The run's precomputed bodies, plain or gzip, cycled through by request number.

use bytes::Bytes;
use flate2::CompressError;
use rand::Rng;

use crate::batch::{BatchTemplate, EventShape};
use crate::gzip::GzipTemplate;

/// Bodies for every request of a run.
#[derive(Debug)]
pub enum BodyPool {
    Plain(Vec<BatchTemplate>),
    Gzip(Vec<GzipTemplate>),
}

impl BodyPool {
    /// `bodies` templates of `batch_size` events each.
    pub fn build<R: Rng + ?Sized>(
        shape: &EventShape,
        bodies: usize,
        batch_size: usize,
        gzip: bool,
        rng: &mut R,
    ) -> Result<BodyPool, CompressError> {
        let plain = (0..bodies.max(1)).map(|_| BatchTemplate::build(shape, batch_size, rng));
        Ok(if gzip {
            BodyPool::Gzip(plain.map(GzipTemplate::new).collect::<Result<_, _>>()?)
        } else {
            BodyPool::Plain(plain.collect())
        })
    }

    /// The body of request number `request`: unique event ids for every request number.
    pub fn body(&self, request: u64) -> Bytes {
        match self {
            BodyPool::Plain(pool) => pool[(request % pool.len() as u64) as usize].body(request),
            BodyPool::Gzip(pool) => pool[(request % pool.len() as u64) as usize].body(request),
        }
    }

    /// Events per body.
    pub fn events(&self) -> usize {
        match self {
            BodyPool::Plain(pool) => pool.first().map_or(0, BatchTemplate::events),
            BodyPool::Gzip(pool) => pool.first().map_or(0, GzipTemplate::events),
        }
    }

    /// Mean uncompressed and sent body sizes in bytes.
    pub fn mean_sizes(&self) -> (usize, usize) {
        let mean = |sizes: Vec<usize>| sizes.iter().sum::<usize>() / sizes.len().max(1);
        match self {
            BodyPool::Plain(pool) => {
                let plain = mean(pool.iter().map(|t| t.json().len()).collect());
                (plain, plain)
            }
            BodyPool::Gzip(pool) => (
                mean(pool.iter().map(GzipTemplate::plain_len).collect()),
                mean(pool.iter().map(GzipTemplate::compressed_len).collect()),
            ),
        }
    }
}
