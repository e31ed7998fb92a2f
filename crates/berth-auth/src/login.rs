//! Checking a user name and password: failed-login throttling per client address, the (slow,
//! constant-time) hash check off the async threads, and a short-lived cache of successful checks so
//! that clients sending Basic credentials on every request do not pay a hash each time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::password;
use crate::policy::Policy;

/// Failed logins one client may make within [`WINDOW`] before it is answered TOOMANYREQUESTS.
pub(crate) const MAX_FAILURES: u32 = 5;
/// The period over which failures are counted, from the first one.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// How long a successful check is remembered.
const CACHE_TTL: Duration = Duration::from_secs(60);
/// Bound on remembered entries (clients tracked, successful checks); beyond it the oldest go.
const MAX_ENTRIES: usize = 4096;

/// Why a login was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password.
    #[error("invalid username or password")]
    Invalid,
    /// Too many failures from this client; retry after the duration.
    #[error("too many failed logins from this address; retry in {} s", .0.as_secs().max(1))]
    Throttled(Duration),
}

/// Failed-login counters and the cache of successful checks of one process.
pub(crate) struct Logins {
    failures: Mutex<HashMap<Option<IpAddr>, (Instant, u32)>>,
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    /// Random per process: cache keys are hashes of it with the credentials, so they reveal nothing.
    salt: [u8; 16],
}

impl Default for Logins {
    fn default() -> Self {
        Self { failures: Mutex::default(), verified: Mutex::default(), salt: *uuid::Uuid::new_v4().as_bytes() }
    }
}

impl Logins {
    /// Checks `user`/`password` against `policy` for a client at `client` (if known).
    pub(crate) async fn check(
        &self,
        policy: &Arc<Policy>,
        client: Option<IpAddr>,
        user: &str,
        password: &str,
    ) -> Result<(), LoginError> {
        if let Some(wait) = self.throttled(client) {
            return Err(LoginError::Throttled(wait));
        }
        // The stored hash is part of the key: a changed password or a removed user (after a
        // policy reload) is checked afresh.
        let key = self.cache_key(user, password, policy.password_hash(user).unwrap_or_default());
        if self.verified.lock().unwrap_or_else(|e| e.into_inner()).get(&key).is_some_and(|t| t.elapsed() < CACHE_TTL) {
            return Ok(());
        }
        let (policy, user_owned, password_owned) = (policy.clone(), user.to_string(), password.to_string());
        let ok =
            tokio::task::spawn_blocking(move || password::verify(policy.password_hash(&user_owned), &password_owned))
                .await
                .unwrap_or(false);
        if ok {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            verified.retain(|_, t| t.elapsed() < CACHE_TTL);
            if verified.len() < MAX_ENTRIES {
                verified.insert(key, Instant::now());
            }
            Ok(())
        } else {
            self.failed(client);
            Err(LoginError::Invalid)
        }
    }

    /// How long `client` must wait, if it has used up its failures.
    fn throttled(&self, client: Option<IpAddr>) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let (since, count) = failures.get(&client)?;
        let left = WINDOW.checked_sub(since.elapsed())?;
        (*count >= MAX_FAILURES).then_some(left)
    }

    fn failed(&self, client: Option<IpAddr>) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_ENTRIES {
            failures.retain(|_, (since, _)| since.elapsed() < WINDOW);
        }
        let entry = failures.entry(client).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
        if entry.1 == MAX_FAILURES {
            tracing::warn!(client = ?client, "too many failed logins; refusing logins from this client for a while");
        }
    }

    fn cache_key(&self, user: &str, password: &str, stored: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        for part in [user, password, stored] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_throttle_the_client_only() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let policy = Arc::new(Policy::parse(&format!("[users]\nu = \"{hash}\"\n")).unwrap());
        let logins = Logins::default();
        let (a, b) = (Some("10.0.0.1".parse().unwrap()), Some("10.0.0.2".parse().unwrap()));
        assert_eq!(logins.check(&policy, a, "u", "right").await, Ok(()));
        for _ in 0..MAX_FAILURES {
            assert_eq!(logins.check(&policy, a, "u", "wrong").await, Err(LoginError::Invalid));
        }
        assert!(matches!(logins.check(&policy, a, "u", "right").await, Err(LoginError::Throttled(_))));
        assert_eq!(logins.check(&policy, b, "u", "right").await, Ok(()));
        assert_eq!(logins.check(&policy, b, "nobody", "right").await, Err(LoginError::Invalid));
    }
}
