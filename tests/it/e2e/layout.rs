//! Test images built from Rust: uncompressed tar layers written by hand ([`tar`]) and OCI image
//! layouts on disk ([`Layout`]: `oci-layout`, `index.json`, `blobs/sha256/…`), as skopeo's
//! `oci:<dir>:<ref>` transport reads and writes them.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::{OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, random_bytes, sha256};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A ustar archive of regular files (mode 0644, owned by root, fixed mtime).
pub(crate) fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        assert!(name.len() < 100, "tar entry name too long: {name}");
        let mut header = [0u8; 512];
        let mut field = |at: usize, value: &[u8]| header[at..at + value.len()].copy_from_slice(value);
        field(0, name.as_bytes());
        field(100, b"0000644\0");
        field(108, b"0000000\0");
        field(116, b"0000000\0");
        field(124, format!("{:011o}\0", data.len()).as_bytes());
        field(136, format!("{:011o}\0", 1_700_000_000u64).as_bytes());
        field(148, b"        ");
        field(156, b"0");
        field(257, b"ustar\0");
        field(263, b"00");
        field(265, b"root");
        field(297, b"root");
        field(329, b"0000000\0");
        field(337, b"0000000\0");
        let checksum: u32 = header.iter().map(|b| u32::from(*b)).sum();
        header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Descriptor {
    pub(crate) media_type: String,
    pub(crate) digest: String,
    pub(crate) size: usize,
}

impl Descriptor {
    fn json(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }

    fn from_json(v: &Value) -> Self {
        let s = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("descriptor without {k}: {v}")).to_string();
        Self {
            media_type: s("mediaType"),
            digest: s("digest"),
            size: v["size"].as_u64().unwrap_or_else(|| panic!("descriptor without size: {v}")) as usize,
        }
    }
}

/// An image written to a layout.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub(crate) manifest: Descriptor,
    pub(crate) config: Descriptor,
    pub(crate) layers: Vec<Descriptor>,
}

/// An OCI image layout directory.
pub(crate) struct Layout {
    pub(crate) dir: PathBuf,
}

impl Layout {
    /// A new, empty layout in `dir`.
    pub(crate) fn create(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("cannot make the layout");
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("cannot write oci-layout");
        std::fs::write(dir.join("index.json"), br#"{"schemaVersion":2,"manifests":[]}"#).expect("cannot write index");
        Self { dir: dir.to_path_buf() }
    }

    /// A layout some tool wrote to `dir`.
    pub(crate) fn open(dir: &Path) -> Self {
        assert!(dir.join("oci-layout").is_file(), "{} is not an OCI layout", dir.display());
        Self { dir: dir.to_path_buf() }
    }

    /// The skopeo image name of reference `reference` in this layout.
    pub(crate) fn name(&self, reference: &str) -> String {
        format!("oci:{}:{reference}", self.dir.display())
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
        self.dir.join("blobs/sha256").join(hex)
    }

    /// Stores `bytes` as a blob.
    pub(crate) fn write_blob(&self, media_type: &str, bytes: &[u8]) -> Descriptor {
        let d = Descriptor { media_type: media_type.to_string(), digest: sha256(bytes), size: bytes.len() };
        std::fs::write(self.blob_path(&d.digest), bytes).expect("cannot write a blob");
        d
    }

    /// The bytes of a blob; panics when the layout does not have it.
    pub(crate) fn blob(&self, digest: &str) -> Vec<u8> {
        let path = self.blob_path(digest);
        std::fs::read(&path).unwrap_or_else(|e| panic!("layout {} lacks blob {digest}: {e}", self.dir.display()))
    }

    /// Writes a linux/`arch` image of uncompressed tar `layers`.
    pub(crate) fn image(&self, arch: &str, layers: &[Vec<u8>]) -> Image {
        let layers: Vec<Descriptor> = layers.iter().map(|l| self.write_blob(OCI_LAYER, l)).collect();
        let config = json!({
            "architecture": arch,
            "os": "linux",
            "config": { "Cmd": ["/bin/sh"] },
            "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>() },
        });
        let config = self.write_blob(OCI_CONFIG, &serde_json::to_vec(&config).unwrap());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.json(),
            "layers": layers.iter().map(Descriptor::json).collect::<Vec<_>>(),
        });
        let manifest = self.write_blob(OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap());
        Image { manifest, config, layers }
    }

    /// A new layout in `dir` holding `v1`: a linux/amd64 image of one-file layers of `sizes`
    /// bytes, random from a seed derived from `name`, so that each name's layers are its own
    /// (a push of shared layers would mount them, not upload them).
    pub(crate) fn with_own_image(dir: &Path, name: &str, sizes: &[usize]) -> (Self, Image) {
        let layout = Self::create(dir);
        let seed = name.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        let layers: Vec<Vec<u8>> = (0u64..)
            .zip(sizes)
            .map(|(i, &size)| tar(&[(&format!("{i}.bin"), &random_bytes(size, seed + i))]))
            .collect();
        let image = layout.image("amd64", &layers);
        layout.tag("v1", &image.manifest);
        (layout, image)
    }

    /// Writes an image index over `images`, each a linux image of the given architecture.
    pub(crate) fn index(&self, images: &[(&Image, &str)]) -> Descriptor {
        let manifests: Vec<Value> = images
            .iter()
            .map(|(image, arch)| {
                let mut d = image.manifest.json();
                d["platform"] = json!({ "architecture": arch, "os": "linux" });
                d
            })
            .collect();
        let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
        self.write_blob(OCI_INDEX, &serde_json::to_vec(&index).unwrap())
    }

    /// Points reference `name` at `target` in `index.json`.
    pub(crate) fn tag(&self, name: &str, target: &Descriptor) {
        let path = self.dir.join("index.json");
        let mut index: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let manifests = index["manifests"].as_array_mut().expect("index.json has manifests");
        manifests.retain(|m| m["annotations"][REF_NAME] != name);
        let mut d = target.json();
        d["annotations"] = json!({ REF_NAME: name });
        manifests.push(d);
        std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    }

    /// What reference `name` points at in `index.json`.
    pub(crate) fn reference(&self, name: &str) -> Descriptor {
        let index: Value = serde_json::from_slice(&std::fs::read(self.dir.join("index.json")).unwrap()).unwrap();
        let found = index["manifests"].as_array().and_then(|ms| ms.iter().find(|m| m["annotations"][REF_NAME] == name));
        Descriptor::from_json(found.unwrap_or_else(|| panic!("index.json has no reference {name}: {index}")))
    }
}

/// Reads the descriptors of an image index or the config and layers of an image manifest.
pub(crate) fn parse_manifest(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not a JSON manifest ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// The digests of an index's `manifests` or a manifest's `layers`.
pub(crate) fn digests(manifest: &Value, field: &str) -> Vec<String> {
    manifest[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {manifest}"))
        .iter()
        .map(|d| Descriptor::from_json(d).digest)
        .collect()
}

#[test]
fn tar_is_read_by_tar() {
    // The hand-written archive must be one that the system's tar lists with the right sizes.
    let archive = tar(&[("hello.txt", b"hello\n"), ("empty", b""), ("big.bin", &vec![7u8; 1000])]);
    assert_eq!(archive.len() % 512, 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.tar");
    std::fs::write(&path, &archive).unwrap();
    let out = std::process::Command::new("tar").arg("-tvf").arg(&path).output().expect("tar runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing = String::from_utf8_lossy(&out.stdout);
    let entries: Vec<(String, String)> = listing
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[f.len() - 1].to_string(), f[2].to_string())
        })
        .collect();
    assert_eq!(
        entries,
        [("hello.txt", "6"), ("empty", "0"), ("big.bin", "1000")].map(|(n, s)| (n.to_string(), s.to_string()))
    );
}
