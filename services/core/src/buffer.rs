//! The buffer's contents, shared by ingest (which writes it) and the processor (which reads
//! it): the partition of a user, and the entry format. The key names are
//! `pulse_buffer::TenantLayout`'s.
//!
//! Each (tenant, partition) has one stream. One ingest request adds at most one entry per
//! partition, holding that partition's events of the request as a JSON array in the field
//! [`ENTRY_FIELD`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The consumer group of the processors, one per stream.
pub const CONSUMER_GROUP: &str = "pulse-processor";
/// The stream entry field holding the events.
pub const ENTRY_FIELD: &str = "events";

/// The partition of a user's events, by a stable 64-bit FNV-1a hash of `distinct_id` and
/// jump consistent hashing: all of one user's events share a partition, and when
/// partitions grow from n to n+1 only about 1/(n+1) of the users move.
pub fn partition_of(distinct_id: &str, partitions: u32) -> u32 {
    jump_hash(fnv1a64(distinct_id.as_bytes()), partitions.max(1))
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// Lamping and Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm" (2014).
fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

/// An accepted event as it sits in the buffer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BufferedEvent {
    /// The client's event id (the dedup key), or one generated at ingest.
    pub event_id: String,
    /// True when ingest generated the id: such an event is not deduplicated across retries.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub id_generated: bool,
    /// The event name.
    pub event: String,
    /// The user.
    pub distinct_id: String,
    /// When it happened, epoch milliseconds (the receive time when the client gave none).
    pub timestamp: i64,
    /// When ingest received it, epoch milliseconds.
    pub received_at: i64,
    /// The event's properties.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_partition_of_a_user_is_stable() {
        // Fixed values: changing the hash would move every user's events.
        assert_eq!(partition_of("user-1", 8), partition_of("user-1", 8));
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(partition_of("anything", 1), 0);
    }

    #[test]
    fn users_spread_over_partitions() {
        let mut counts = [0u32; 8];
        for i in 0..8000 {
            counts[partition_of(&format!("user-{i}"), 8) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    proptest! {
        #[test]
        fn growing_partitions_moves_few_users(n in 1u32..64) {
            let moved = (0..2000).filter(|i| {
                let id = format!("u{i}");
                partition_of(&id, n) != partition_of(&id, n + 1)
            }).count();
            // Expected 2000/(n+1); allow generous noise.
            prop_assert!(moved as f64 <= 2000.0 / f64::from(n + 1) * 1.5 + 30.0, "moved {}", moved);
        }

        #[test]
        fn partitions_are_in_range(id in ".*", n in 1u32..=256) {
            prop_assert!(partition_of(&id, n) < n);
        }
    }
}
