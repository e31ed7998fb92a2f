//! Upload capabilities: the right to continue one upload session, carried in the session's URL.
//!
//! When uploads go to an upload host, clients do not send it their credentials (containerd drops
//! its authorizer when the upload `Location` names another host; docker only answers challenges
//! of hosts it has seen), so the `Location` carries the authorization itself:
//! `<expiry>.<mac>`, where `<expiry>` is seconds since the epoch and `<mac>` is the unpadded
//! base64url HMAC-SHA256, under the deployment's token secret, of the repository, the session id
//! and the expiry. It is good for that session of that repository until it expires, and for
//! nothing else; the HMAC is compared in constant time.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use hmac::Mac;

use crate::mac::{MacKey, Sha256Mac};

/// Why a capability was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// Not of the form `<expiry>.<mac>`.
    #[error("the upload URL's capability is malformed")]
    Malformed,
    /// Past its expiry.
    #[error("the upload URL has expired; start the upload again")]
    Expired,
    /// The MAC does not match: tampered with, or issued for another repository or session.
    #[error("the upload URL's capability is not valid for this upload")]
    Invalid,
}

/// Issues and checks capabilities with one key.
#[derive(Clone)]
pub(crate) struct Capabilities {
    key: MacKey,
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Capabilities {
    /// Capabilities keyed with `secret` (HMAC takes a key of any length).
    pub(crate) fn new(secret: &[u8]) -> Self {
        Self { key: MacKey::new(secret) }
    }

    fn mac(&self, repository: &str, session: &str, expiry: u64) -> Sha256Mac {
        let mut mac = self.key.of_fields(&[b"berth-upload", repository.as_bytes(), session.as_bytes()]);
        mac.update(&expiry.to_be_bytes());
        mac
    }

    /// A capability for `session` of `repository` until `expires`.
    pub(crate) fn issue(&self, repository: &str, session: &str, expires: SystemTime) -> String {
        let expiry = seconds(expires);
        let tag = self.mac(repository, session, expiry).finalize().into_bytes();
        format!("{expiry}.{}", BASE64URL.encode(tag))
    }

    /// Checks that `capability` is good for `session` of `repository` now.
    pub(crate) fn check(&self, capability: &str, repository: &str, session: &str) -> Result<(), CapabilityError> {
        let (expiry, tag) = capability.split_once('.').ok_or(CapabilityError::Malformed)?;
        let expiry: u64 = expiry.parse().map_err(|_| CapabilityError::Malformed)?;
        let tag = BASE64URL.decode(tag).map_err(|_| CapabilityError::Malformed)?;
        self.mac(repository, session, expiry).verify_slice(&tag).map_err(|_| CapabilityError::Invalid)?;
        if expiry <= seconds(SystemTime::now()) {
            return Err(CapabilityError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_capability_is_good_for_its_session_until_it_expires() {
        let caps = Capabilities::new(b"0123456789abcdef0123456789abcdef");
        let later = SystemTime::now() + Duration::from_secs(60);
        let cap = caps.issue("team/app", "s1", later);
        assert_eq!(caps.check(&cap, "team/app", "s1"), Ok(()));
        assert_eq!(caps.check(&cap, "team/other", "s1"), Err(CapabilityError::Invalid));
        assert_eq!(caps.check(&cap, "team/app", "s2"), Err(CapabilityError::Invalid));
        assert_eq!(caps.check(&cap, "team/ap", "ps1"), Err(CapabilityError::Invalid), "fields do not run together");
        let other_key = Capabilities::new(b"another secret, another secret!!");
        assert_eq!(other_key.check(&cap, "team/app", "s1"), Err(CapabilityError::Invalid));

        let (expiry, tag) = cap.split_once('.').unwrap();
        let extended = format!("{}.{tag}", expiry.parse::<u64>().unwrap() + 3600);
        assert_eq!(caps.check(&extended, "team/app", "s1"), Err(CapabilityError::Invalid), "expiry is signed");
        let past = caps.issue("team/app", "s1", SystemTime::now() - Duration::from_secs(1));
        assert_eq!(caps.check(&past, "team/app", "s1"), Err(CapabilityError::Expired));
        for bad in ["", "123", "x.abc", "123.!!!"] {
            assert_eq!(caps.check(bad, "team/app", "s1"), Err(CapabilityError::Malformed), "{bad:?}");
        }
    }
}
