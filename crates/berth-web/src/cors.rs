//! CORS for web UIs served from other origins (joxit's docker-registry-ui and the like), off until
//! `--cors-origin` names origins. A request from a listed origin gets, on every API answer,
//! `Access-Control-Allow-Origin` (that origin), `Access-Control-Allow-Credentials: true` and
//! `Access-Control-Expose-Headers` (the registry's headers scripts need: `Docker-Content-Digest`,
//! `Link`, `WWW-Authenticate`, `Location`, …); its preflight `OPTIONS` is answered `204` before
//! authentication (browsers send preflights without credentials) with the methods and the headers
//! it asked for. Requests from other origins get no CORS header, so browsers keep their answers
//! from the page. `*` lets every origin in (each is echoed, as credentials need).

use berth_core::http::{Body, RequestBody};
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

/// The methods of the registry API.
const METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE";

/// Request headers allowed when a preflight names none it needs.
const DEFAULT_HEADERS: &str = "Authorization, Accept, Content-Type, Content-Range, Range";

/// Response headers scripts may read.
const EXPOSED: &str = "Docker-Content-Digest, Docker-Distribution-API-Version, Docker-Upload-UUID, Link, Location, \
                       Range, WWW-Authenticate, OCI-Subject, OCI-Filters-Applied, OCI-Chunk-Min-Length, \
                       Content-Length, Content-Range, Retry-After";

/// How long browsers may cache a preflight's answer, in seconds.
const MAX_AGE: &str = "600";

/// The origins allowed to call the API from a browser.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    origins: Vec<String>,
}

/// Whether a request is a CORS preflight.
pub fn is_preflight(request: &Request<RequestBody>) -> bool {
    request.method() == Method::OPTIONS && request.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

impl Cors {
    /// CORS for `origins` (none: off). Origins are compared without a trailing `/`.
    pub fn new(origins: Vec<String>) -> Self {
        Self { origins: origins.into_iter().map(|o| o.trim().trim_end_matches('/').to_string()).collect() }
    }

    /// The request's `Origin`, when it is one of the allowed.
    pub fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.origins.iter().any(|o| o == "*" || o == text).then(|| origin.clone())
    }

    /// The answer to a preflight from allowed `origin`.
    pub fn preflight(&self, origin: &HeaderValue, request: &HeaderMap) -> Response<Body> {
        let asked = request
            .get(ACCESS_CONTROL_REQUEST_HEADERS)
            .filter(|v| v.to_str().is_ok_and(|s| s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_, ".contains(&b))))
            .cloned()
            .unwrap_or(HeaderValue::from_static(DEFAULT_HEADERS));
        let mut response = Response::new(Body::Empty);
        *response.status_mut() = StatusCode::NO_CONTENT;
        let headers = response.headers_mut();
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        headers.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(METHODS));
        headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked);
        headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
        headers.insert(VARY, HeaderValue::from_static("Origin"));
        response
    }

    /// Adds the CORS headers for allowed `origin` to an API answer.
    pub fn decorate(&self, response: &mut Response<Body>, origin: HeaderValue) {
        let headers = response.headers_mut();
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
        headers.append(VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.parse().unwrap(), HeaderValue::from_str(v).unwrap())).collect()
    }

    #[test]
    fn only_listed_origins_are_allowed() {
        let cors = Cors::new(vec!["https://ui.example.com/".into()]);
        assert!(cors.allowed_origin(&headers(&[("origin", "https://ui.example.com")])).is_some());
        assert!(cors.allowed_origin(&headers(&[("origin", "https://evil.example.com")])).is_none());
        assert!(cors.allowed_origin(&headers(&[])).is_none());
        assert!(Cors::new(vec![]).allowed_origin(&headers(&[("origin", "https://ui.example.com")])).is_none());
        let any = Cors::new(vec!["*".into()]);
        let origin = any.allowed_origin(&headers(&[("origin", "http://localhost:8080")])).unwrap();
        assert_eq!(origin, "http://localhost:8080", "the origin is echoed, as credentials need");
    }

    #[test]
    fn a_preflight_gets_the_headers_it_asked_for_and_odd_ones_are_not_echoed() {
        let cors = Cors::new(vec!["*".into()]);
        let origin = HeaderValue::from_static("http://ui");
        let ok = cors.preflight(&origin, &headers(&[("access-control-request-headers", "authorization, x-thing")]));
        assert_eq!(ok.status(), StatusCode::NO_CONTENT);
        assert_eq!(ok.headers()[ACCESS_CONTROL_ALLOW_HEADERS], "authorization, x-thing");
        let odd = cors.preflight(&origin, &headers(&[("access-control-request-headers", "a\"b")]));
        assert_eq!(odd.headers()[ACCESS_CONTROL_ALLOW_HEADERS], DEFAULT_HEADERS);
    }
}
