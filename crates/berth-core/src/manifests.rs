//! Manifest endpoints (OCI Distribution Spec, "Pulling manifests", "Pushing manifests",
//! "Deleting manifests"): `GET`/`HEAD` (end-3), `PUT` (end-7) and `DELETE` (end-9) of
//! `/v2/<name>/manifests/<reference>`.
//!
//! Manifests are stored byte for byte as pushed, with their digest and media type in a header
//! line ([`Record`]). A tag object holds a copy of the tagged manifest's record, so a pull by
//! tag costs one read; deleting a manifest by digest removes the tags that point to it.

use berth_storage::StorageError;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::StatusCode;
use http::header::{CONTENT_TYPE, LOCATION};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use crate::digest::{Algorithm, Digest};
use crate::error::{ErrorKind, RegistryError, Result};
use crate::http::{Reply, RequestBody, content_length, header, headers};
use crate::names::{Name, Reference, Tag};
use crate::{Registry, Req, keys};

/// Largest manifest accepted (the spec's suggested minimum limit).
pub(crate) const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// OCI image manifest.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub(crate) const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A stored manifest (a manifest object, or a tag, which holds a copy of its manifest's):
/// `<digest> <media-type>\n` followed by the exact pushed bytes.
pub struct Record {
    /// The manifest's digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// The manifest as pushed.
    pub bytes: Bytes,
}

/// What a stored manifest refers to: what must stay while it does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// Blobs (config, layers; not foreign layers, which live elsewhere).
    pub blobs: Vec<Digest>,
    /// Manifests (an index's entries).
    pub manifests: Vec<Digest>,
    /// The manifest it is a referrer of (`subject`).
    pub subject: Option<Digest>,
}

impl Record {
    fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.bytes.len() + 200);
        out.extend_from_slice(format!("{} {}\n", self.digest, self.media_type).as_bytes());
        out.extend_from_slice(&self.bytes);
        out.freeze()
    }

    /// Reads a stored record.
    pub fn decode(mut raw: Bytes) -> Result<Self> {
        let corrupt = || RegistryError::from(StorageError::Invalid("corrupt manifest record".into()));
        let newline = raw.iter().position(|b| *b == b'\n').ok_or_else(corrupt)?;
        let head = raw.split_to(newline + 1);
        let head = std::str::from_utf8(&head[..newline]).map_err(|_| corrupt())?;
        let (digest, media_type) = head.split_once(' ').ok_or_else(corrupt)?;
        Ok(Record { digest: digest.parse().map_err(|_| corrupt())?, media_type: media_type.to_string(), bytes: raw })
    }

    /// What the manifest refers to.
    pub fn references(&self) -> Result<References> {
        let (_, parsed) = parse(Some(&self.media_type), &self.bytes)?;
        Ok(References { blobs: parsed.blobs, manifests: parsed.manifests, subject: parsed.subject })
    }
}

/// What the engine needs to know of a manifest's content.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    /// Blobs it references (config, layers).
    pub blobs: Vec<Digest>,
    /// Manifests it references (an index's entries).
    pub manifests: Vec<Digest>,
    /// The manifest it refers to (`subject`).
    pub subject: Option<Digest>,
    /// `artifactType`, or for an image manifest without one, its config's media type.
    pub artifact_type: Option<String>,
    /// Its annotations, for its referrer descriptor.
    pub annotations: Option<serde_json::Value>,
}

fn invalid(message: impl Into<String>) -> RegistryError {
    RegistryError::new(ErrorKind::ManifestInvalid, message)
}

fn descriptor_digest(d: &Descriptor) -> Result<Digest> {
    d.digest().to_string().parse().map_err(|e: RegistryError| invalid(format!("descriptor digest: {}", e.message)))
}

/// Parses a manifest of `media_type` (or, without one, of the type its body declares).
pub(crate) fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<(String, Parsed)> {
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    if !json.is_object() {
        return Err(invalid("manifest is not a JSON object"));
    }
    let declared = json.get("mediaType").and_then(|v| v.as_str());
    let media_type = content_type
        .or(declared)
        .ok_or_else(|| invalid("manifest media type unknown: send it as Content-Type"))?
        .to_string();
    if let Some(declared) = declared.filter(|d| *d != media_type) {
        return Err(invalid(format!(
            "Content-Type {media_type:?} does not match the manifest's mediaType {declared:?}"
        )));
    }
    if json.get("schemaVersion").and_then(|v| v.as_u64()) != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let annotations = json.get("annotations").cloned();
    let parsed = match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let m: ImageManifest =
                serde_json::from_value(json).map_err(|e| invalid(format!("invalid image manifest: {e}")))?;
            let mut blobs = vec![descriptor_digest(m.config())?];
            for layer in m.layers() {
                // Non-distributable (foreign) layers live elsewhere and need not be pushed.
                let media_type = layer.media_type().to_string();
                let foreign = media_type.contains("nondistributable")
                    || media_type.contains("foreign")
                    || layer.urls().as_ref().is_some_and(|u| !u.is_empty());
                if !foreign {
                    blobs.push(descriptor_digest(layer)?);
                }
            }
            let artifact_type =
                m.artifact_type().as_ref().map(|t| t.to_string()).or_else(|| Some(m.config().media_type().to_string()));
            let subject = m.subject().as_ref().map(descriptor_digest).transpose()?;
            Parsed { blobs, manifests: vec![], subject, artifact_type, annotations }
        }
        OCI_INDEX | DOCKER_MANIFEST_LIST => {
            let i: ImageIndex =
                serde_json::from_value(json).map_err(|e| invalid(format!("invalid image index: {e}")))?;
            let manifests = i.manifests().iter().map(descriptor_digest).collect::<Result<_>>()?;
            let subject = i.subject().as_ref().map(descriptor_digest).transpose()?;
            let artifact_type = i.artifact_type().as_ref().map(|t| t.to_string());
            Parsed { blobs: vec![], manifests, subject, artifact_type, annotations }
        }
        other => {
            return Err(invalid(format!(
                "unsupported manifest media type {other:?}; supported: {OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_MANIFEST_LIST}"
            )));
        }
    };
    Ok((media_type, parsed))
}

impl Registry {
    async fn read_record(&self, key: &str) -> Result<Option<Record>> {
        self.store.read_opt(key).await?.map(Record::decode).transpose()
    }

    fn manifest_key(name: &Name, reference: &Reference) -> String {
        match reference {
            Reference::Tag(t) => keys::tag(name, t),
            Reference::Digest(d) => keys::manifest(name, d),
        }
    }

    /// `GET`/`HEAD /v2/<name>/manifests/<reference>`: the manifest as pushed.
    pub(crate) async fn get_manifest(&self, name: &Name, reference: &str) -> Result<Reply> {
        let reference = existing_reference(name, reference)?;
        let record =
            self.read_record(&Self::manifest_key(name, &reference)).await?.ok_or_else(|| unknown(name, &reference))?;
        Ok(Reply::new(StatusCode::OK)
            .header(headers::CONTENT_DIGEST, record.digest.to_string())
            .bytes(&record.media_type, record.bytes))
    }

    /// `PUT /v2/<name>/manifests/<reference>`: validates, checks references, stores, tags.
    pub(crate) async fn put_manifest(
        &self,
        name: &Name,
        reference: &str,
        req: &Req,
        body: &mut RequestBody,
    ) -> Result<Reply> {
        let reference = Reference::parse(reference)?;
        // `?tag=` (spec 1.1+dev): tags to point at a manifest pushed by digest.
        let mut tags = req.query.get_all("tag").map(Tag::parse).collect::<Result<Vec<_>>>()?;
        if let Reference::Tag(tag) = &reference {
            tags.push(tag.clone());
        }
        let declared = content_length(&req.headers)?;
        // The body is held until the manifest is stored: charged to the upload memory budget.
        let _reserved =
            self.buffers.reserve(declared.map_or(MAX_MANIFEST_SIZE, |l| l as usize).min(MAX_MANIFEST_SIZE)).await;
        let bytes = read_limited(body, declared).await?;
        let content_type = header(&req.headers, &CONTENT_TYPE).map(|v| v.split(';').next().unwrap_or(v).trim());
        let (media_type, parsed) = parse(content_type.filter(|t| !t.is_empty()), &bytes)?;
        let digest = match &reference {
            Reference::Digest(d) => {
                let actual = Digest::of(d.algorithm(), &bytes);
                if actual != *d {
                    return Err(RegistryError::new(
                        ErrorKind::DigestInvalid,
                        format!("manifest digest is {actual}, not {d}"),
                    ));
                }
                actual
            }
            Reference::Tag(_) => Digest::of(Algorithm::Sha256, &bytes),
        };
        // Checking the references and storing happen while no garbage-collection sweep of the
        // repository runs (see `gc`).
        let intent = self.begin_manifest_write(name).await?;
        let stored = self.store_manifest(name, Record { digest, media_type, bytes }, &parsed, &tags).await;
        self.end_manifest_write(intent).await;
        stored
    }

    /// Checks a new manifest's references, stores it, tags it, records it as a referrer.
    async fn store_manifest(&self, name: &Name, record: Record, parsed: &Parsed, tags: &[Tag]) -> Result<Reply> {
        let digest = record.digest.clone();
        // A manifest the repository has already was checked when it arrived: a re-push only tags.
        let known = self.store.exists(&keys::manifest(name, &digest)).await?;
        if !known {
            self.check_references(name, parsed).await?;
        }
        let descriptor = parsed
            .subject
            .as_ref()
            .map(|_| referrer_descriptor(&digest, &record.media_type, record.bytes.len(), parsed));
        let record = record.encode();
        if !known {
            self.store.put(&keys::manifest(name, &digest), record.clone()).await?;
        }
        let mut reply = Reply::new(StatusCode::CREATED)
            .header(LOCATION, format!("/v2/{name}/manifests/{digest}"))
            .header(headers::CONTENT_DIGEST, digest.to_string());
        for tag in tags {
            self.store.put(&keys::tag(name, tag), record.clone()).await?;
            reply = reply.append_header(headers::OCI_TAG, tag.as_str());
        }
        if let (Some(subject), Some(descriptor)) = (&parsed.subject, descriptor) {
            if !known {
                self.store.put(&keys::referrer(name, subject, &digest), descriptor).await?;
            }
            reply = reply.header(headers::OCI_SUBJECT, subject.to_string());
        }
        if !known {
            self.store.create(&keys::catalog(name), Bytes::new()).await?;
        }
        Ok(reply)
    }

    /// Every blob and manifest a manifest references must be in this repository.
    async fn check_references(&self, name: &Name, parsed: &Parsed) -> Result<()> {
        let blobs = self.absent(&parsed.blobs, keys::blob_links_prefix(name), |d| keys::blob_link(name, d));
        let manifests = self.absent(&parsed.manifests, keys::manifests_prefix(name), |d| keys::manifest(name, d));
        let (blobs, manifests) = futures_util::future::try_join(blobs, manifests).await?;
        let missing = |d: &Digest, what: &str| {
            RegistryError::new(
                ErrorKind::ManifestBlobUnknown,
                format!("{what} {d} is not in repository {name}; push it first"),
            )
            .with_detail(serde_json::json!({ "digest": d.to_string() }))
        };
        match (blobs.first(), manifests.first()) {
            (Some(d), _) => Err(missing(d, "blob")),
            (None, Some(d)) => Err(missing(d, "manifest")),
            (None, None) => Ok(()),
        }
    }

    /// Which of `wanted` have no key (`key(d)`) under `prefix`: one listing when the repository
    /// has at most a page of such keys (the usual case: a push costs one request, not one per
    /// layer), else one `head` per digest.
    async fn absent(&self, wanted: &[Digest], prefix: String, key: impl Fn(&Digest) -> String) -> Result<Vec<Digest>> {
        if wanted.len() > 1 {
            let page = self.store.list(&prefix, None, 1000).await?;
            if !page.truncated {
                let present: std::collections::HashSet<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
                return Ok(wanted.iter().filter(|d| !present.contains(key(d).as_str())).cloned().collect());
            }
        }
        let checks = wanted
            .iter()
            .map(|d| async { Ok::<_, RegistryError>((!self.store.exists(&key(d)).await?).then(|| d.clone())) });
        Ok(futures_util::future::try_join_all(checks).await?.into_iter().flatten().collect())
    }

    /// `DELETE /v2/<name>/manifests/<reference>`: by tag removes only the tag; by digest
    /// removes the manifest, the tags pointing to it and its referrer entry (202).
    pub(crate) async fn delete_manifest(&self, name: &Name, reference: &str) -> Result<Reply> {
        let reference = existing_reference(name, reference)?;
        let key = Self::manifest_key(name, &reference);
        let record = self.read_record(&key).await?.ok_or_else(|| unknown(name, &reference))?;
        if let Reference::Digest(digest) = &reference {
            if let Ok((_, parsed)) = parse(Some(&record.media_type), &record.bytes)
                && let Some(subject) = parsed.subject
            {
                self.store.delete(&keys::referrer(name, &subject, digest)).await?;
            }
            for tag in self.tags_pointing_to(name, digest).await? {
                self.store.delete(&keys::tag(name, &tag)).await?;
            }
        }
        self.store.delete(&key).await?;
        Ok(Reply::new(StatusCode::ACCEPTED))
    }

    pub(crate) async fn tags_pointing_to(&self, name: &Name, digest: &Digest) -> Result<Vec<Tag>> {
        let prefix = keys::tags_prefix(name);
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list(&prefix, after.as_deref(), 1000).await?;
            for key in page.objects.iter().map(|o| &o.key) {
                if let Some(record) = self.read_record(key).await?
                    && record.digest == *digest
                    && let Ok(tag) = Tag::parse(&key[prefix.len()..])
                {
                    found.push(tag);
                }
            }
            match (page.truncated, page.last_key()) {
                (true, Some(last)) => after = Some(last.to_string()),
                _ => return Ok(found),
            }
        }
    }
}

/// The descriptor listed by the referrers API for a manifest with a `subject`.
fn referrer_descriptor(digest: &Digest, media_type: &str, size: usize, parsed: &Parsed) -> Bytes {
    let mut d = serde_json::json!({ "mediaType": media_type, "digest": digest.to_string(), "size": size });
    if let Some(t) = &parsed.artifact_type {
        d["artifactType"] = t.clone().into();
    }
    if let Some(a) = &parsed.annotations {
        d["annotations"] = a.clone();
    }
    Bytes::from(d.to_string())
}

/// Parses the reference of a read or delete: a tag that could never have been pushed is simply
/// unknown (404), a malformed digest is DIGEST_INVALID (400).
fn existing_reference(name: &Name, reference: &str) -> Result<Reference> {
    Reference::parse(reference).map_err(|e| match e.kind {
        ErrorKind::DigestInvalid => e,
        _ => RegistryError::new(
            ErrorKind::ManifestUnknown,
            format!("manifest tag {reference:?} is not in repository {name}"),
        ),
    })
}

fn unknown(name: &Name, reference: &Reference) -> RegistryError {
    let what = match reference {
        Reference::Tag(t) => format!("tag {t}"),
        Reference::Digest(d) => format!("digest {d}"),
    };
    RegistryError::new(ErrorKind::ManifestUnknown, format!("manifest {what} is not in repository {name}"))
}

/// Reads a manifest body of at most [`MAX_MANIFEST_SIZE`] bytes.
async fn read_limited(body: &mut RequestBody, declared: Option<u64>) -> Result<Bytes> {
    let too_large = || {
        RegistryError::new(
            ErrorKind::ManifestTooLarge,
            format!("manifest exceeds the limit of {MAX_MANIFEST_SIZE} bytes"),
        )
    };
    if declared.is_some_and(|l| l > MAX_MANIFEST_SIZE as u64) {
        return Err(too_large());
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| invalid(format!("the request body could not be read: {e}")))?;
        if buf.len() + chunk.len() > MAX_MANIFEST_SIZE {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    if declared.is_some_and(|l| l != buf.len() as u64) {
        return Err(RegistryError::new(ErrorKind::SizeInvalid, "Content-Length does not match the body"));
    }
    Ok(buf.freeze())
}

/// Property tests: no bytes, JSON or not, panic the manifest parser or the record decoder;
/// records round-trip.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    /// JSON shaped like manifests and indexes, with fields of any type.
    fn manifest_like() -> impl Strategy<Value = Vec<u8>> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,20}".prop_map(serde_json::Value::from),
            "sha256:[0-9a-f]{64}".prop_map(serde_json::Value::from),
        ];
        let value = leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(
                    "schemaVersion|mediaType|config|layers|manifests|digest|size|subject|artifactType|annotations|platform",
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        });
        value.prop_map(|v| serde_json::to_vec(&v).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn any_bytes_are_a_manifest_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..400), typed in any::<bool>()) {
            let _ = parse(typed.then_some(OCI_MANIFEST), &bytes);
            let _ = Record::decode(Bytes::from(bytes));
        }

        #[test]
        fn manifest_shaped_json_is_a_manifest_or_an_error(bytes in manifest_like(), kind in 0..4usize) {
            let types = [None, Some(OCI_MANIFEST), Some(OCI_INDEX), Some(DOCKER_MANIFEST)];
            let _ = parse(types[kind], &bytes);
        }

        #[test]
        fn records_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..400), media_type in "[a-z./+-]{1,60}") {
            let record = Record { digest: Digest::of(crate::digest::Algorithm::Sha256, &bytes), media_type, bytes: Bytes::from(bytes) };
            let back = Record::decode(record.encode()).unwrap();
            prop_assert_eq!((back.digest, back.media_type, back.bytes), (record.digest, record.media_type, record.bytes));
        }
    }
}
