//! The referrers API and `OCI-Subject`.

use http::StatusCode;
use serde_json::json;

use super::{Harness, image};
use crate::common::{OCI_INDEX, OCI_MANIFEST, sha256};

#[tokio::test]
async fn referrers_are_listed_filtered_and_removed() {
    let h = Harness::new();
    let (subject, subject_digest) = image(&h, "ref", 1, json!({})).await;
    let descriptor = json!({"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": subject.len()});
    // Referrers may arrive before their subject.
    let (sig, sig_digest) = image(
        &h,
        "ref",
        2,
        json!({"artifactType": "application/vnd.example.sig", "subject": descriptor, "annotations": {"k": "sig"}}),
    )
    .await;
    let r = h.put_manifest("ref", &sig_digest, OCI_MANIFEST, &sig).await;
    assert_eq!((r.status, r.header("oci-subject")), (StatusCode::CREATED, Some(subject_digest.as_str())));
    h.put_manifest("ref", "subject", OCI_MANIFEST, &subject).await;
    // Without artifactType the config media type stands in.
    let (sbom, sbom_digest) = image(&h, "ref", 3, json!({"subject": descriptor})).await;
    h.put_manifest("ref", &sbom_digest, OCI_MANIFEST, &sbom).await;
    let index = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": "application/vnd.example.bundle",
        "manifests": [], "subject": descriptor}),
    )
    .unwrap();
    let index_digest = sha256(&index);
    assert_eq!(
        h.put_manifest("ref", &index_digest, OCI_INDEX, &index).await.header("oci-subject"),
        Some(subject_digest.as_str())
    );

    let r = h.get(&format!("/v2/ref/referrers/{subject_digest}")).await;
    assert_eq!((r.status, r.header("content-type")), (StatusCode::OK, Some(OCI_INDEX)));
    let body = r.json();
    assert_eq!((body["schemaVersion"].clone(), body["mediaType"].clone()), (json!(2), json!(OCI_INDEX)));
    let mut found: Vec<(String, String, String)> = body["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["digest"].as_str().unwrap().into(),
                d["artifactType"].as_str().unwrap().into(),
                d["mediaType"].as_str().unwrap().into(),
            )
        })
        .collect();
    found.sort();
    let mut expected = vec![
        (sig_digest.clone(), "application/vnd.example.sig".to_string(), OCI_MANIFEST.to_string()),
        (sbom_digest.clone(), "application/vnd.oci.image.config.v1+json".to_string(), OCI_MANIFEST.to_string()),
        (index_digest.clone(), "application/vnd.example.bundle".to_string(), OCI_INDEX.to_string()),
    ];
    expected.sort();
    assert_eq!(found, expected);
    let sig_entry =
        body["manifests"].as_array().unwrap().iter().find(|d| d["digest"] == json!(sig_digest)).unwrap().clone();
    assert_eq!(sig_entry["annotations"], json!({"k": "sig"}));
    assert_eq!(sig_entry["size"], json!(sig.len()));

    let filtered = h.get(&format!("/v2/ref/referrers/{subject_digest}?artifactType=application/vnd.example.sig")).await;
    assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(filtered.json()["manifests"].as_array().unwrap().len(), 1);

    assert_eq!(h.delete(&format!("/v2/ref/manifests/{sig_digest}")).await.status, StatusCode::ACCEPTED);
    let after = h.get(&format!("/v2/ref/referrers/{subject_digest}")).await.json();
    assert_eq!(after["manifests"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn unknown_subjects_have_an_empty_index_and_bad_digests_are_400() {
    let h = Harness::new();
    let r = h.get(&format!("/v2/nothing/here/referrers/{}", sha256(b"x"))).await;
    assert_eq!((r.status, r.header("content-type")), (StatusCode::OK, Some(OCI_INDEX)));
    assert_eq!(r.json(), json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}));
    let r = h.get("/v2/nothing/referrers/sha256:short").await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"));
}
