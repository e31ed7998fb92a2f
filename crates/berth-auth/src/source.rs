//! The policy in force, and reloading it from where it came from while the registry runs: a
//! changed policy file or S3 object applies within the reload interval on every instance, with
//! no restart. A policy that no longer parses is logged and ignored; the previous one stays.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::policy::Policy;

/// Where the policy text is read from (a file, an S3 object); implemented by the shells.
#[async_trait::async_trait]
pub trait PolicySource: Send + Sync {
    /// The whole policy document.
    async fn read(&self) -> Result<String, String>;
}

/// The current policy and, when it has a source, when to read it again.
pub(crate) struct Current {
    policy: RwLock<Arc<Policy>>,
    reload: Option<Reload>,
}

struct Reload {
    source: Arc<dyn PolicySource>,
    every: Duration,
    /// When the next read is due, and the hash of the text last read.
    state: Mutex<(Instant, Option<[u8; 32]>)>,
}

impl Current {
    pub(crate) fn new(policy: Policy, source: Option<(Arc<dyn PolicySource>, Duration)>) -> Self {
        let reload =
            source.map(|(source, every)| Reload { source, every, state: Mutex::new((Instant::now() + every, None)) });
        Self { policy: RwLock::new(Arc::new(policy)), reload }
    }

    /// The policy in force.
    pub(crate) fn get(&self) -> Arc<Policy> {
        self.policy.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Starts a background read of the source when one is due; requests go on with the policy
    /// in force meanwhile.
    pub(crate) fn refresh(self: &Arc<Self>) {
        let Some(reload) = &self.reload else { return };
        {
            let mut state = reload.state.lock().unwrap_or_else(|e| e.into_inner());
            if Instant::now() < state.0 {
                return;
            }
            state.0 = Instant::now() + reload.every;
        }
        let current = self.clone();
        tokio::spawn(async move { current.reload().await });
    }

    async fn reload(&self) {
        let Some(reload) = &self.reload else { return };
        let text = match reload.source.read().await {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the auth policy; keeping the one in force");
                return;
            }
        };
        let hash: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        let previous = reload.state.lock().unwrap_or_else(|e| e.into_inner()).1;
        if previous == Some(hash) {
            return;
        }
        match Policy::parse(&text) {
            Ok(policy) => {
                *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
                reload.state.lock().unwrap_or_else(|e| e.into_inner()).1 = Some(hash);
                if previous.is_some() {
                    tracing::info!("auth policy changed: reloaded");
                }
            }
            Err(e) => tracing::error!(error = %e, "the auth policy no longer parses; keeping the one in force"),
        }
    }
}
