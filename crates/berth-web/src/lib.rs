//! berth's web front, what both shells (`berth serve`, the Lambda function) answer every request
//! with: [`Site::handle`] sends the registry API (`/v2/…`, `/token`) to the engine, with CORS
//! headers for the origins `--cors-origin` lists ([`cors`]), and every other path to the web UI
//! ([`ui`]), on the same origin, so the UI needs no CORS at all; and answers the health probes
//! `/livez` and `/readyz` ([`health`]) without credentials.

pub mod cors;
pub mod health;
pub mod ui;

use berth_core::Registry;
use berth_core::http::{Body, RequestBody};
use http::{Request, Response};

use self::cors::Cors;
use self::health::Health;
use self::ui::Ui;

/// How the web front is set up; the composition root fills it in.
#[derive(Debug, Clone, Default)]
pub struct SiteConfig {
    /// Serve the web UI at `/`.
    pub ui: bool,
    /// Origins whose pages may call the API from a browser (`*`: any).
    pub cors_origins: Vec<String>,
    /// The registry's public URL, when configured (the host in the UI's pull commands).
    pub public_url: Option<String>,
}

/// The registry with its web front.
#[derive(Clone)]
pub struct Site {
    registry: Registry,
    cors: Cors,
    ui: Option<Ui>,
    health: Health,
}

impl Site {
    /// The web front of `registry`.
    pub fn new(registry: Registry, config: SiteConfig) -> Self {
        let ui = config.ui.then(|| Ui::new(config.public_url.clone()));
        Self { registry, cors: Cors::new(config.cors_origins), ui, health: Health::default() }
    }

    /// The registry behind it.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Answers one request.
    pub async fn handle(&self, request: Request<RequestBody>) -> Response<Body> {
        let path = request.uri().path();
        if health::is_probe(path) {
            return self.health.answer(&self.registry, request.method(), path).await;
        }
        if !is_api(path)
            && let Some(ui) = &self.ui
        {
            return ui.handle(&self.registry, request).await;
        }
        let Some(origin) = self.cors.allowed_origin(request.headers()) else {
            return self.registry.handle(request).await;
        };
        if cors::is_preflight(&request) {
            return self.cors.preflight(&origin, request.headers());
        }
        let mut response = self.registry.handle(request).await;
        self.cors.decorate(&mut response, origin);
        response
    }
}

/// Whether `path` is the registry API's: `/v2/…` or the token endpoint.
fn is_api(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/") || path == "/token"
}
