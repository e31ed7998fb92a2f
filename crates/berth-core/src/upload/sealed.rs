//! Sealed upload URLs: a session that has stored no state carries it in its URL, signed.
//!
//! A `POST` answers a sealed URL for a fresh session, and a streamed `PATCH` (no
//! `Content-Range`) whose bytes fit in one part stores them once, as the blob of their own
//! sha256 digest (`CreateOnly`, verified: a complete blob, visible to no repository until linked),
//! and answers a sealed URL that names that blob. The final `PUT` with that digest then only
//! links it: a small blob costs one write to receive and one to link, with nothing to clean up.
//!
//! The URL's last path segment is `<id>.<mac>` (fresh) or `<id>.<offset>.<hex>.<c|e><secs>.<mac>`
//! (holding blob `sha256:<hex>` of `<offset>` bytes, which the session **c**reated or found
//! **e**xisting at `<secs>` since the epoch); `<mac>` is the unpadded base64url of the first 16
//! bytes of HMAC-SHA256, under the registry's upload secret, of the repository and the rest, so a
//! client can neither name a blob it did not send nor move a URL to another repository. The
//! secret is generated once per storage ([`keys::UPLOAD_SECRET`]) and shared by every instance.
//!
//! Anything else a sealed session is asked (a chunk with `Content-Range`, more bytes after the
//! held blob) turns it into a stored session under its id ([`super::session`]), so a stale URL
//! (the `POST`'s, after chunks) sees the stored progress. What a sealed URL cannot know is a
//! session ended through another URL: `GET`, `DELETE` and chunks consult the stored state, but
//! a streamed `PATCH` or the `PUT` through a sealed URL do not, which costs nothing in
//! integrity: the blob it names is verified bytes the client sent.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use berth_auth::mac::{MacKey, Sha256Mac};
use bytes::Bytes;
use hmac::Mac;

use crate::digest::{Algorithm, Digest};
use crate::error::Result;
use crate::keys;
use crate::names::Name;
use crate::store::Store;

/// Bytes of the MAC kept in a URL.
const MAC_LEN: usize = 16;

/// How long after writing its blob a session may link it as its own (see `gc`: the blob must
/// still be far younger than the grace when linked); later, it is claimed like any other.
pub(super) const OWN_FOR: u64 = 600;

/// The blob a sealed session holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Held {
    /// Its sha256 digest.
    pub(super) digest: Digest,
    /// Whether the session wrote it (else it was stored already).
    pub(super) created: bool,
    /// When, in seconds since the epoch.
    pub(super) at: u64,
}

impl Held {
    /// Whether the session wrote the blob recently enough to link it without a claim.
    pub(super) fn own(&self) -> bool {
        self.created && now().saturating_sub(self.at) < OWN_FOR
    }
}

/// A sealed session: its id (the key of its state should it need one), the bytes received, and
/// the blob holding them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sealed {
    pub(super) id: String,
    pub(super) offset: u64,
    pub(super) held: Option<Held>,
}

/// Seconds since the epoch.
pub(super) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Whether an upload URL's id is a sealed one (stored sessions' ids have no `.`).
pub(super) fn is_sealed(id: &str) -> bool {
    id.contains('.')
}

/// The registry's upload secret: signs and checks sealed URLs.
#[derive(Clone)]
pub(crate) struct Seal {
    key: MacKey,
}

impl Seal {
    fn new(secret: &[u8]) -> Self {
        Self { key: MacKey::new(secret) }
    }

    /// The secret of `store`: read, or generated and stored by whichever instance comes first.
    pub(crate) async fn load(store: &Store) -> Result<Self> {
        if let Some(secret) = store.read_opt(keys::UPLOAD_SECRET).await? {
            return Ok(Self::new(&secret));
        }
        let secret: Vec<u8> = (0..2).flat_map(|_| uuid::Uuid::new_v4().into_bytes()).collect();
        if store.create(keys::UPLOAD_SECRET, Bytes::from(secret.clone())).await? {
            return Ok(Self::new(&secret));
        }
        let secret = store.read_opt(keys::UPLOAD_SECRET).await?.unwrap_or_default();
        Ok(Self::new(&secret))
    }

    fn mac(&self, name: &Name, payload: &str) -> Sha256Mac {
        self.key.of_fields(&[b"berth-sealed-upload", name.as_str().as_bytes(), payload.as_bytes()])
    }

    /// The URL segment of `session` of repository `name`.
    pub(super) fn seal(&self, name: &Name, session: &Sealed) -> String {
        let payload = match &session.held {
            None => session.id.clone(),
            Some(h) => format!(
                "{}.{}.{}.{}{}",
                session.id,
                session.offset,
                h.digest.hex(),
                if h.created { 'c' } else { 'e' },
                h.at
            ),
        };
        let tag = BASE64URL.encode(&self.mac(name, &payload).finalize().into_bytes()[..MAC_LEN]);
        format!("{payload}.{tag}")
    }

    /// The session of URL segment `segment` of repository `name`; `None` unless this registry
    /// sealed it for that repository.
    pub(super) fn open(&self, name: &Name, segment: &str) -> Option<Sealed> {
        let (payload, tag) = segment.rsplit_once('.')?;
        let tag = BASE64URL.decode(tag).ok().filter(|t| t.len() == MAC_LEN)?;
        self.mac(name, payload).verify_truncated_left(&tag).ok()?;
        let mut fields = payload.split('.');
        let id = fields.next()?.to_string();
        let session = match (fields.next(), fields.next(), fields.next(), fields.next()) {
            (None, ..) => Sealed { id, offset: 0, held: None },
            (Some(offset), Some(hex), Some(when), None) => {
                let digest = format!("{}:{hex}", Algorithm::Sha256.as_str()).parse().ok()?;
                let created = match when.as_bytes().first()? {
                    b'c' => true,
                    b'e' => false,
                    _ => return None,
                };
                let held = Held { digest, created, at: when[1..].parse().ok()? };
                Sealed { id, offset: offset.parse().ok()?, held: Some(held) }
            }
            _ => return None,
        };
        Some(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn sealed_urls_open_only_for_their_repository_and_untouched() {
        let seal = Seal::new(b"secret");
        let fresh = Sealed { id: "0123abcd".into(), offset: 0, held: None };
        let held = Sealed {
            id: "0123abcd".into(),
            offset: 1234,
            held: Some(Held { digest: Digest::of(Algorithm::Sha256, b"x"), created: true, at: 1_700_000_000 }),
        };
        for session in [fresh, held] {
            let url = seal.seal(&name("a/b"), &session);
            assert!(is_sealed(&url));
            assert_eq!(seal.open(&name("a/b"), &url), Some(session.clone()));
            assert_eq!(seal.open(&name("a/c"), &url), None, "moved to another repository");
            assert_eq!(Seal::new(b"other").open(&name("a/b"), &url), None, "another registry's");
            let tampered = url.replacen("0123", "0124", 1);
            assert_eq!(seal.open(&name("a/b"), &tampered), None);
        }
        let forged = Sealed { id: "1".into(), offset: 9, held: None };
        let url = seal.seal(&name("a"), &forged).replacen('1', "1.9.00.c1", 1);
        assert_eq!(seal.open(&name("a"), &url), None);
        assert_eq!(seal.open(&name("a"), "no-dot"), None);
        assert_eq!(seal.open(&name("a"), "x.!!"), None);
    }
}
