//! Content digests (`<algorithm>:<hex>`) and resumable hashing.
//!
//! OCI Image Spec, "Digests": berth verifies `sha256` and `sha512`; other well-formed algorithms
//! are refused with DIGEST_INVALID because their content could not be verified. A [`Hasher`]'s
//! running state serializes to a few hundred bytes ([`Hasher::save`]), so an upload can be
//! continued by another process or Lambda invocation without re-reading what was received.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::digest::common::hazmat::{SerializableState, SerializedState};
use sha2::{Digest as _, Sha256, Sha512};

use crate::error::{ErrorKind, RegistryError};

/// A digest algorithm berth can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, 64 hex characters.
    Sha256,
    /// SHA-512, 128 hex characters.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name in a digest string.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
}

/// A validated digest with lowercase hex of the algorithm's length.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex encoding.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The digest of `bytes` under `algorithm`.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Self {
        let mut hasher = Hasher::new(algorithm);
        hasher.update(bytes);
        hasher.finish()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl FromStr for Digest {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = oci_spec::image::Digest::from_str(s)
            .map_err(|e| RegistryError::new(ErrorKind::DigestInvalid, format!("invalid digest {s:?}: {e}")))?;
        let algorithm = match parsed.algorithm() {
            oci_spec::image::DigestAlgorithm::Sha256 => Algorithm::Sha256,
            oci_spec::image::DigestAlgorithm::Sha512 => Algorithm::Sha512,
            other => {
                return Err(RegistryError::new(
                    ErrorKind::DigestInvalid,
                    format!("unsupported digest algorithm {:?}: use sha256 or sha512", other.as_ref()),
                ));
            }
        };
        Ok(Digest { algorithm, hex: parsed.digest().to_string() })
    }
}

/// A running hash whose state can be saved and restored.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 in progress.
    Sha256(Sha256),
    /// SHA-512 in progress.
    Sha512(Sha512),
}

impl Hasher {
    /// A fresh hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    /// The algorithm being computed.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let (algorithm, out) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            Hasher::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        let hex = out.iter().map(|b| format!("{b:02x}")).collect();
        Digest { algorithm, hex }
    }

    /// The running state as base64 text, prefixed with the algorithm (`sha256:<base64>`).
    pub fn save(&self) -> String {
        let state = match self {
            Hasher::Sha256(h) => BASE64.encode(h.serialize()),
            Hasher::Sha512(h) => BASE64.encode(h.serialize()),
        };
        format!("{}:{state}", self.algorithm().as_str())
    }

    /// Restores a state written by [`Hasher::save`]; `None` if it is not one.
    pub fn restore(saved: &str) -> Option<Self> {
        let (algorithm, state) = saved.split_once(':')?;
        let bytes = BASE64.decode(state).ok()?;
        match algorithm {
            "sha256" => restore_state::<Sha256>(&bytes).map(Hasher::Sha256),
            "sha512" => restore_state::<Sha512>(&bytes).map(Hasher::Sha512),
            _ => None,
        }
    }
}

fn restore_state<H: SerializableState>(bytes: &[u8]) -> Option<H> {
    let state = <&SerializedState<H>>::try_from(bytes).ok()?;
    H::deserialize(state).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse().unwrap();
        assert_eq!(d, Digest::of(Algorithm::Sha256, b""));
        assert!("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855".parse::<Digest>().is_err());
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!("md5:d41d8cd98f00b204e9800998ecf8427e".parse::<Digest>().is_err());
        assert!("nocolon".parse::<Digest>().is_err());
        assert!(format!("sha512:{}", "0".repeat(128)).parse::<Digest>().is_ok());
    }

    #[test]
    fn saved_state_resumes_to_the_same_digest() {
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
            let mut first = Hasher::new(algorithm);
            first.update(&data[..333]);
            let mut resumed = Hasher::restore(&first.save()).unwrap();
            resumed.update(&data[333..]);
            assert_eq!(resumed.finish(), Digest::of(algorithm, &data));
        }
        assert!(Hasher::restore("sha256:AAAA").is_none());
        assert!(Hasher::restore("md5:AAAA").is_none());
    }
}

/// Property tests: no text panics the digest parser; digests of any bytes print and parse back;
/// a hasher's saved state restores to one that finishes the same.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn any_text_is_a_digest_or_an_error(s in ".{0,200}") {
            if let Ok(d) = s.parse::<Digest>() {
                prop_assert_eq!(d.to_string(), s);
            }
        }

        #[test]
        fn digest_shaped_text_parses_exactly_when_valid(alg in "sha256|sha512|md5|SHA256", hex in "[0-9a-fA-F]{0,130}") {
            let valid = (alg == "sha256" && hex.len() == 64 || alg == "sha512" && hex.len() == 128)
                && hex.bytes().all(|b| !b.is_ascii_uppercase());
            prop_assert_eq!(format!("{alg}:{hex}").parse::<Digest>().is_ok(), valid);
        }

        #[test]
        fn digests_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..512), sha512 in any::<bool>()) {
            let algorithm = if sha512 { Algorithm::Sha512 } else { Algorithm::Sha256 };
            let d = Digest::of(algorithm, &bytes);
            prop_assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        }

        #[test]
        fn saved_hashers_finish_the_same(a in proptest::collection::vec(any::<u8>(), 0..300), b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut whole = Hasher::new(Algorithm::Sha256);
            whole.update(&a);
            let mut restored = Hasher::restore(&whole.save()).unwrap();
            whole.update(&b);
            restored.update(&b);
            prop_assert_eq!(whole.finish(), restored.finish());
        }

        #[test]
        fn any_saved_state_restores_or_not(s in ".{0,200}") {
            let _ = Hasher::restore(&s);
        }
    }
}
