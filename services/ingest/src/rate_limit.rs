//! The tenant's rate limit: one token bucket in Redis shared by every ingest pod, so the
//! limit holds however many pods the autoscaler runs.

use std::time::Duration;

use pulse_buffer::TenantLayout;
use pulse_core::config::RateLimit;
use redis::aio::ConnectionLike;

/// Refills `rate` tokens a second up to `burst`, and takes `requested` if there are that
/// many; answers {allowed, microseconds to wait}. Redis's clock keeps pods consistent.
const BUCKET_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local requested = tonumber(ARGV[3])
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or burst
local at = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000000)
local allowed = 0
local wait = 0
if tokens >= requested then
  tokens = tokens - requested
  allowed = 1
else
  wait = math.ceil((requested - tokens) * 1000000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, wait}
";

/// What the bucket said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Not now; enough tokens after this long.
    Wait(Duration),
    /// More than the burst: never, however long the client waits.
    TooLarge {
        burst: u64,
    },
}

/// The tenant's shared bucket.
pub struct RateLimiter {
    key: String,
    rate: u64,
    burst: u64,
    script: redis::Script,
}

impl RateLimiter {
    pub fn new(tenant: &str, limit: &RateLimit) -> Self {
        let rate = u64::try_from(limit.events_per_second.max(1)).unwrap_or(1);
        let burst = limit.burst.and_then(|b| u64::try_from(b).ok()).unwrap_or(rate).max(rate);
        RateLimiter {
            key: TenantLayout::of(tenant).rate_limit(),
            rate,
            burst,
            script: redis::Script::new(BUCKET_SCRIPT),
        }
    }

    /// Takes `events` tokens if the bucket has them.
    pub async fn take<C: ConnectionLike + Send>(
        &self,
        connection: &mut C,
        events: u64,
    ) -> redis::RedisResult<Decision> {
        if events > self.burst {
            return Ok(Decision::TooLarge { burst: self.burst });
        }
        let (allowed, wait_micros): (u64, u64) = self
            .script
            .key(&self.key)
            .arg(self.rate)
            .arg(self.burst)
            .arg(events)
            .invoke_async(connection)
            .await?;
        Ok(if allowed == 1 { Decision::Allowed } else { Decision::Wait(Duration::from_micros(wait_micros)) })
    }
}
