//! A held lease on a background job, renewed in the background while the
//! job runs and released when it ends (see `Catalog::try_lease`). In a
//! cluster this is what keeps GC, scrub, backup and lifecycle on one node
//! at a time; in the embedded setup it keeps a CLI `fulcrum gc` from racing
//! the server's own background GC.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fulcrum_catalog::Catalog;
use tracing::warn;

use crate::engine::Engine;
use crate::error::{EngineError, EngineResult};

/// Every maintenance job takes this one lease: GC, scrub, backup and tier
/// moves all relocate or read packs, and must not run over each other.
pub const MAINTENANCE_LEASE: &str = "maintenance";

const TTL: Duration = Duration::from_secs(30);

/// A lease this node holds until `release` (or drop).
pub struct Lease {
    catalog: Catalog,
    name: String,
    holder: String,
    lost: Arc<AtomicBool>,
    renew: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// False once a renewal failed: another node may have taken over, so
    /// the job should stop at its next safe point.
    pub fn is_held(&self) -> bool {
        !self.lost.load(Ordering::Relaxed)
    }

    /// Fails with `LeaseLost` when the lease was lost.
    pub fn check(&self) -> EngineResult<()> {
        if self.is_held() {
            Ok(())
        } else {
            Err(EngineError::LeaseLost(self.name.clone()))
        }
    }

    pub async fn release(self) {
        self.renew.abort();
        if let Err(e) = self.catalog.release_lease(&self.name, &self.holder).await {
            warn!(lease = %self.name, error = %e, "could not release lease; it expires by itself");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

impl Engine {
    /// Takes the lease `name` for this node, or fails with `Busy` naming
    /// the node that holds it.
    pub async fn lease(&self, name: &str) -> EngineResult<Lease> {
        let catalog = self.inner.catalog.clone();
        let holder = format!("{}:{}", self.inner.cfg.node_id, rand::random::<u32>());
        if !catalog
            .try_lease(name, &holder, TTL.as_millis() as i64)
            .await?
        {
            let by = catalog
                .lease_holder(name)
                .await?
                .map(|h| h.holder)
                .unwrap_or_else(|| "another node".into());
            return Err(EngineError::Busy(format!(
                "{name} is running on {by} (GC, scrub, backups and tier moves take \
                 turns); try again when it has ended"
            )));
        }
        let lost = Arc::new(AtomicBool::new(false));
        let renew = {
            let (catalog, name, holder, lost) = (
                catalog.clone(),
                name.to_string(),
                holder.clone(),
                lost.clone(),
            );
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(TTL / 3).await;
                    match catalog
                        .try_lease(&name, &holder, TTL.as_millis() as i64)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => {
                            warn!(lease = %name, "lease taken by another node");
                            lost.store(true, Ordering::Relaxed);
                            return;
                        }
                        Err(e) => {
                            warn!(lease = %name, error = %e, "lease renewal failed; retrying")
                        }
                    }
                }
            })
        };
        Ok(Lease {
            catalog,
            name: name.to_string(),
            holder,
            lost,
            renew,
        })
    }
}
