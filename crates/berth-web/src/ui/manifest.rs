//! Manifests and image configs as the UI reads them: leniently (the OCI and the Docker forms,
//! absent and `null` fields alike), only to show them. The engine validated them on push.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Image config media types (OCI, Docker).
const IMAGE_CONFIGS: [&str; 2] =
    ["application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"];

/// A manifest: an image, an index or an artifact.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Manifest {
    pub(crate) artifact_type: Option<String>,
    pub(crate) config: Option<Descriptor>,
    pub(crate) layers: Option<Vec<Descriptor>>,
    pub(crate) manifests: Option<Vec<Descriptor>>,
    pub(crate) subject: Option<Descriptor>,
    pub(crate) annotations: Option<BTreeMap<String, String>>,
}

/// A descriptor: what a manifest points to.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Descriptor {
    pub(crate) media_type: String,
    pub(crate) digest: String,
    pub(crate) size: u64,
    pub(crate) platform: Option<Platform>,
    pub(crate) artifact_type: Option<String>,
    pub(crate) annotations: Option<BTreeMap<String, String>>,
}

/// An index entry's platform.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct Platform {
    pub(crate) architecture: String,
    pub(crate) os: String,
    pub(crate) variant: Option<String>,
}

impl Manifest {
    /// The manifest in `bytes` (an empty one if they are not JSON).
    pub(crate) fn parse(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    /// The layers (an artifact's blobs).
    pub(crate) fn layers(&self) -> &[Descriptor] {
        self.layers.as_deref().unwrap_or_default()
    }

    /// The entries of an index.
    pub(crate) fn entries(&self) -> &[Descriptor] {
        self.manifests.as_deref().unwrap_or_default()
    }

    /// Whether it is an index (or a Docker manifest list).
    pub(crate) fn is_index(&self) -> bool {
        self.manifests.is_some()
    }

    /// The config, when it is an image's (not an artifact's).
    pub(crate) fn image_config(&self) -> Option<&Descriptor> {
        self.config.as_ref().filter(|c| IMAGE_CONFIGS.contains(&c.media_type.as_str()))
    }

    /// Compressed size of what it points to: config and layers.
    pub(crate) fn size(&self) -> u64 {
        self.config.iter().chain(self.layers()).map(|d| d.size).sum()
    }

    /// What it is: an artifact's type, else the config's media type when it is not an image's.
    pub(crate) fn artifact(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.as_str()).filter(|t| !IMAGE_CONFIGS.contains(t)))
    }

    /// An index's entries that are images for a platform (not attestations, which buildx adds
    /// as `unknown/unknown`).
    pub(crate) fn platform_entries(&self) -> impl Iterator<Item = &Descriptor> {
        self.entries().iter().filter(|d| !d.is_attestation())
    }
}

impl Descriptor {
    /// Whether it is an attestation manifest of an index (buildx's provenance and SBOM).
    pub(crate) fn is_attestation(&self) -> bool {
        let reference_type = self.annotations.as_ref().and_then(|a| a.get("vnd.docker.reference.type"));
        reference_type.is_some_and(|t| t == "attestation-manifest")
            || self.platform.as_ref().is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
    }

    /// `os/architecture[/variant]`, or what the entry is.
    pub(crate) fn platform_text(&self) -> String {
        match &self.platform {
            _ if self.is_attestation() => "attestation".into(),
            Some(p) => platform(&p.os, &p.architecture, p.variant.as_deref()),
            None => "—".into(),
        }
    }
}

/// `os/architecture[/variant]`.
pub(crate) fn platform(os: &str, architecture: &str, variant: Option<&str>) -> String {
    match variant.filter(|v| !v.is_empty()) {
        Some(variant) => format!("{os}/{architecture}/{variant}"),
        None => format!("{os}/{architecture}"),
    }
}

/// A readable name of a manifest's kind.
pub(crate) fn kind(media_type: &str, manifest: &Manifest) -> String {
    if let Some(artifact) = manifest.artifact() {
        return format!("artifact ({artifact})");
    }
    match media_type {
        "application/vnd.oci.image.index.v1+json" => "OCI index".into(),
        "application/vnd.oci.image.manifest.v1+json" => "OCI image".into(),
        "application/vnd.docker.distribution.manifest.list.v2+json" => "Docker manifest list".into(),
        "application/vnd.docker.distribution.manifest.v2+json" => "Docker image".into(),
        other => other.to_string(),
    }
}

/// An image config.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Config {
    pub(crate) created: Option<String>,
    pub(crate) architecture: String,
    pub(crate) os: String,
    pub(crate) variant: Option<String>,
    pub(crate) config: Option<Runtime>,
    pub(crate) history: Option<Vec<History>>,
}

/// How a container of the image runs.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct Runtime {
    pub(crate) env: Option<Vec<String>>,
    pub(crate) entrypoint: Option<Vec<String>>,
    pub(crate) cmd: Option<Vec<String>>,
    pub(crate) working_dir: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) labels: Option<BTreeMap<String, String>>,
    pub(crate) exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
}

/// One step of the image's build.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct History {
    pub(crate) created: Option<String>,
    pub(crate) created_by: Option<String>,
    pub(crate) comment: Option<String>,
    pub(crate) empty_layer: bool,
}

impl Config {
    /// The config in `bytes` (an empty one if they are not JSON).
    pub(crate) fn parse(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or_default()
    }
}

/// A command as a shell would show it: `["sh", "-c", "echo hi"]` → `sh -c "echo hi"`.
pub(crate) fn command(words: &[String]) -> String {
    let quote = |w: &String| {
        if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c)) {
            w.clone()
        } else {
            format!("{w:?}")
        }
    };
    words.iter().map(quote).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_and_oci_forms_and_nulls_read() {
        let config = Config::parse(
            br#"{"architecture":"arm64","os":"linux","variant":"v8","created":"2024-01-02T03:04:05Z",
                 "config":{"Env":null,"Cmd":["sh","-c","echo hi"],"Labels":{"a":"<b>"}},
                 "history":[{"created_by":"/bin/sh -c #(nop) ADD file","empty_layer":false},{"created_by":"CMD","empty_layer":true}]}"#,
        );
        assert_eq!(platform(&config.os, &config.architecture, config.variant.as_deref()), "linux/arm64/v8");
        let runtime = config.config.unwrap();
        assert!(runtime.env.is_none());
        assert_eq!(command(runtime.cmd.as_deref().unwrap()), "sh -c \"echo hi\"");
        assert_eq!(config.history.unwrap().len(), 2);
        assert!(Config::parse(b"not json").history.is_none());

        let index = Manifest::parse(
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
                 {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a","size":1,"platform":{"os":"linux","architecture":"amd64"}},
                 {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:b","size":1,"platform":{"os":"unknown","architecture":"unknown"},
                  "annotations":{"vnd.docker.reference.type":"attestation-manifest"}}]}"#,
        );
        assert!(index.is_index());
        assert_eq!(index.platform_entries().map(|d| d.platform_text()).collect::<Vec<_>>(), ["linux/amd64"]);
        assert_eq!(index.entries()[1].platform_text(), "attestation");
        let artifact = Manifest::parse(
            br#"{"config":{"mediaType":"application/vnd.dev.cosign.artifact.sig.v1+json","digest":"sha256:c","size":2},
                 "layers":[{"mediaType":"x","digest":"sha256:d","size":40}]}"#,
        );
        assert_eq!(artifact.artifact(), Some("application/vnd.dev.cosign.artifact.sig.v1+json"));
        assert_eq!(artifact.size(), 42);
        assert!(artifact.image_config().is_none());
    }
}
