//! HMAC-SHA256 under one key: the MAC of everything berth signs for clients to hand back (bearer
//! tokens, upload capabilities, sealed upload URLs). Each user keeps its own key and its own
//! encoding of the MAC; this is where the MAC is made, and where a list of fields becomes one
//! unambiguous input.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The MAC, ready for more input, `finalize` or `verify_*` ([`hmac::Mac`]).
pub type Sha256Mac = Hmac<Sha256>;

/// A key to MAC with.
#[derive(Clone)]
pub struct MacKey(Sha256Mac);

impl MacKey {
    /// A key of `secret` (HMAC takes any length).
    pub fn new(secret: &[u8]) -> Self {
        Self(Hmac::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key length")))
    }

    /// The MAC of `message`.
    pub fn of(&self, message: &[u8]) -> Sha256Mac {
        let mut mac = self.0.clone();
        mac.update(message);
        mac
    }

    /// The MAC of `fields`, each preceded by its length, so that no two lists of fields share an
    /// input (`["ab", "c"]` and `["a", "bc"]` differ).
    pub fn of_fields(&self, fields: &[&[u8]]) -> Sha256Mac {
        let mut mac = self.0.clone();
        for field in fields {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_do_not_run_together_and_the_key_matters() {
        let key = MacKey::new(b"k");
        let tag = |mac: Sha256Mac| mac.finalize().into_bytes();
        assert_ne!(tag(key.of_fields(&[b"ab", b"c"])), tag(key.of_fields(&[b"a", b"bc"])));
        assert_eq!(tag(key.of_fields(&[b"ab", b"c"])), tag(key.of_fields(&[b"ab", b"c"])));
        assert_ne!(tag(key.of(b"m")), tag(MacKey::new(b"other").of(b"m")));
        // RFC 4231, test case 2.
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let hex: String =
            tag(MacKey::new(b"Jefe").of(b"what do ya want for nothing?")).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }
}
