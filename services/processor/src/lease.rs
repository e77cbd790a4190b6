//! One active writer per partition: a lease in Redis with a fencing token. Only the holder
//! processes the partition. The lease keeps writers from working against each other, but
//! exactness does not rest on it: a holder paused past its lease can still write, and the
//! rollup log's ballots (pulse-store's `log`) make its late writes harmless. The token
//! names the writer's tenure in them.

use std::sync::OnceLock;
use std::time::Duration;

use pulse_buffer::{Connection, TenantLayout};

/// How long a lease lasts without renewal, unless `--lease-ttl-ms` says otherwise.
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// This process's lease lifetime, set once at start (from the command line).
static TTL: OnceLock<Duration> = OnceLock::new();

/// Sets how long this process's leases last without renewal (and so how long a partition
/// waits after its holder died); call once, before any lease is taken.
pub fn set_lease_ttl(ttl: Duration) {
    let _ = TTL.set(ttl);
}

/// How long this process's leases last without renewal.
pub fn lease_ttl() -> Duration {
    TTL.get().copied().unwrap_or(LEASE_TTL)
}

/// Takes the lease if free (a new, higher fencing token) or already ours (same token).
const ACQUIRE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local token = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[3], token)
  return token
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[3]) or '0')
end
return 0
";

/// Extends the lease if still ours.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Gives the lease up if still ours.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// The lease keys of one partition (one hash tag with its stream).
pub struct PartitionLeaseKeys {
    holder: String,
    counter: String,
    token: String,
}

impl PartitionLeaseKeys {
    pub fn new(tenant: &str, partition: u32) -> Self {
        let layout = TenantLayout::of(tenant);
        PartitionLeaseKeys {
            holder: layout.lease(partition),
            counter: layout.lease_counter(partition),
            token: layout.lease_token(partition),
        }
    }

    /// The fencing token if the lease is now ours.
    pub async fn acquire(&self, conn: &mut Connection, owner: &str) -> redis::RedisResult<Option<u64>> {
        let token: u64 =
            eval(ACQUIRE, &[&self.holder, &self.counter, &self.token], owner).query_async(conn).await?;
        Ok((token > 0).then_some(token))
    }

    /// Whether the lease is still ours (and now extended).
    pub async fn renew(&self, conn: &mut Connection, owner: &str) -> redis::RedisResult<bool> {
        let renewed: u64 = eval(RENEW, &[&self.holder], owner).query_async(conn).await?;
        Ok(renewed == 1)
    }

    pub async fn release(&self, conn: &mut Connection, owner: &str) -> redis::RedisResult<()> {
        let _: u64 = eval(RELEASE, &[&self.holder], owner).query_async(conn).await?;
        Ok(())
    }
}

/// An EVAL of a lease script: its keys, then the owner and the lease's lifetime in ms.
/// (Lease operations are rare, so EVAL's cost over EVALSHA does not matter.)
fn eval(script: &str, keys: &[&str], owner: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(keys.len()).arg(keys).arg(owner).arg(lease_ttl().as_millis() as u64);
    cmd
}
