use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

use crate::{Error, Result};

/// Ports handed out in this process, so parallel tests never get the same one twice.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port that is free now and not yet handed out by this process.
pub fn free_port() -> Result<u16> {
    free_port_where(|_| true)
}

/// A free port `p` for which `also_free(p)` holds (Redis Cluster needs `p + 10000` too).
pub(crate) fn free_port_where(also_free: impl Fn(u16) -> bool) -> Result<u16> {
    for _ in 0..1000 {
        let listener =
            TcpListener::bind(("127.0.0.1", 0)).map_err(|e| Error::io("binding a loopback port", e))?;
        let port = listener.local_addr().map_err(|e| Error::io("reading a bound port", e))?.port();
        drop(listener);
        let mut guard = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let taken = guard.get_or_insert_with(HashSet::new);
        if !taken.contains(&port) && also_free(port) {
            taken.insert(port);
            return Ok(port);
        }
    }
    Err(Error::io(
        "finding a free loopback port",
        std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free port after 1000 tries"),
    ))
}

/// Whether `port` can be bound on loopback right now.
pub(crate) fn is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}
