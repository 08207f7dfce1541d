//! Which catalog a pack store belongs to. A platform is one catalog and
//! one pack store; a node configured with the right catalog and another
//! store (a wrong bucket or root), or the reverse, would acknowledge
//! writes the rest of the cluster cannot read, and its GC would delete
//! the other platform's packs as unreferenced. The catalog keeps the
//! platform's id (meta `platform_id`), the store a small object naming it
//! (`fulcrum-platform`); they must agree before anything is committed or
//! collected. Stores and catalogs from before the marker are told apart
//! by a pack the catalog lists: present in the store, the marker is
//! written; missing, the store is the wrong one.

use fulcrum_store::pack_path;
use fulcrum_types::{PackId, Tier};
use tracing::info;

use crate::engine::Inner;
use crate::error::{EngineError, EngineResult};

/// The store object naming the platform, beside `packs/`.
const MARKER: &str = "fulcrum-platform";
/// The catalog's meta key holding the same id.
const META: &str = "platform_id";

/// Whether this process has found its catalog and store to agree.
#[derive(Default)]
pub(crate) struct Identity(tokio::sync::OnceCell<()>);

impl Identity {
    /// Ok once catalog and store are known to agree (checked on first
    /// use, and again after a failure: an unreachable store is not
    /// remembered as a wrong one).
    pub(crate) async fn ensure(&self, inner: &Inner) -> EngineResult<()> {
        self.0.get_or_try_init(|| check(inner)).await.map(|_| ())
    }
}

impl crate::Engine {
    /// Whether this node's pack store and catalog are one platform's
    /// (checked once; see the module doc).
    pub async fn check_platform(&self) -> EngineResult<()> {
        self.inner.identity.ensure(&self.inner).await
    }
}

async fn check(inner: &Inner) -> EngineResult<()> {
    let store = inner.backend.name().to_string();
    let wrong = |what: String| {
        EngineError::WrongStore(format!(
            "{what}; check the pack backend (FULCRUM_BACKEND: bucket and root) and the catalog \
             (FULCRUM_CATALOG_URL) this node is given: no data is stored and nothing collected until they \
             are one platform's"
        ))
    };
    let in_catalog = inner.catalog.get_meta(META).await?;
    let in_store = match inner.backend.read(MARKER).await {
        Ok(b) => Some(String::from_utf8_lossy(&b).trim().to_string()),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    if let (Some(c), Some(s)) = (&in_catalog, &in_store) {
        return match c == s {
            true => Ok(()),
            false => Err(wrong(format!(
                "the pack store {store} belongs to platform {s}, the catalog to platform {c}"
            ))),
        };
    }
    // One side has no id yet: a new platform, one from before the marker,
    // or a catalog and a store of different platforms.
    // A few of the newest packs: a store that lost one pack (damage,
    // which verify reports) is still this platform's.
    let packs = inner.catalog.newest_packs(Tier::Hot.as_str(), 3).await?;
    let mut held = false;
    for pack in &packs {
        let pid = PackId::parse(pack)
            .map_err(|e| EngineError::Corrupt(format!("pack id {pack:?}: {e}")))?;
        if inner.backend.size(&pack_path(&pid)).await?.is_some() {
            held = true;
            break;
        }
    }
    match packs.first() {
        Some(pack) if !held => {
            return Err(wrong(format!(
                "the catalog lists packs the pack store {store} does not hold (pack {pack})"
            )))
        }
        Some(_) => {}
        None if in_catalog.is_none() && in_store.is_some() => {
            return Err(wrong(format!(
                "the pack store {store} holds platform {}'s packs and this catalog is new",
                in_store.unwrap_or_default()
            )))
        }
        None => {}
    }
    let proposed = in_store
        .clone()
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
    // Nodes starting together agree on the first id written.
    let id = inner.catalog.init_meta(META, &proposed).await?;
    match in_store {
        Some(s) if s != id => Err(wrong(format!(
            "the pack store {store} belongs to platform {s}, the catalog to platform {id}"
        ))),
        Some(_) => Ok(()),
        None => {
            inner
                .backend
                .write(MARKER, vec![bytes::Bytes::from(id.clone())])
                .await?;
            info!(platform = %id, store, "pack store marked as this platform's");
            Ok(())
        }
    }
}
