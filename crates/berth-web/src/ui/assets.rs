//! The UI's two assets, embedded in the binary: the stylesheet and the script. Their URLs carry a
//! hash of their content (`/-/static/<hash>/<file>`), so they are cached for a year and a new
//! build's assets are fetched anew.

use std::sync::OnceLock;

use berth_core::http::Body;
use bytes::Bytes;
use http::header::CACHE_CONTROL;
use http::{HeaderValue, Response, StatusCode};
use sha2::{Digest, Sha256};

/// An embedded file.
pub(crate) struct Asset {
    file: &'static str,
    content_type: &'static str,
    content: &'static str,
    hash: OnceLock<String>,
}

/// `style.css`.
pub(crate) static STYLE: Asset = Asset {
    file: "style.css",
    content_type: "text/css; charset=utf-8",
    content: include_str!("../../assets/style.css"),
    hash: OnceLock::new(),
};

/// `ui.js`.
pub(crate) static SCRIPT: Asset = Asset {
    file: "ui.js",
    content_type: "text/javascript; charset=utf-8",
    content: include_str!("../../assets/ui.js"),
    hash: OnceLock::new(),
};

impl Asset {
    fn hash(&self) -> &str {
        self.hash.get_or_init(|| {
            let digest = Sha256::digest(self.content.as_bytes());
            digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
        })
    }

    /// Where pages link it.
    pub(crate) fn href(&self) -> String {
        format!("/-/static/{}/{}", self.hash(), self.file)
    }
}

/// The asset at `/-/static/<rest>`, when `rest` is one's current `<hash>/<file>`.
pub(crate) fn serve(rest: &str) -> Option<Response<Body>> {
    let asset = [&STYLE, &SCRIPT].into_iter().find(|a| rest == format!("{}/{}", a.hash(), a.file))?;
    let mut response =
        super::response(StatusCode::OK, asset.content_type, Bytes::from_static(asset.content.as_bytes()));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    Some(response)
}
