//! Repository locks, so a prune never deletes blobs a concurrent backup
//! counts on: a backup holds a shared lock, forget/prune an exclusive one.
//! A lock is a small file refreshed every few minutes; one not refreshed
//! for `STALE` belongs to a process that died and is ignored.

use std::time::Duration;

use bytes::Bytes;
use fulcrum_catalog::now_ms;

use crate::error::{BackupError, BackupResult};
use crate::repo::Repo;

const STALE: Duration = Duration::from_secs(30 * 60);
const REFRESH: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct LockInfo {
    host: String,
    pid: u32,
    exclusive: bool,
    time_ms: i64,
}

/// A lock held until `release` (or drop, which leaves the file to go
/// stale).
pub struct RepoLock {
    repo: Repo,
    path: String,
    refresh: tokio::task::JoinHandle<()>,
}

impl RepoLock {
    pub async fn release(self) {
        self.refresh.abort();
        let _ = self.repo.backend().delete(&self.path).await;
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        self.refresh.abort();
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn lock_bytes(exclusive: bool) -> Bytes {
    let info = LockInfo {
        host: hostname(),
        pid: std::process::id(),
        exclusive,
        time_ms: now_ms(),
    };
    Bytes::from(serde_json::to_vec(&info).unwrap_or_default())
}

impl Repo {
    /// Takes a shared (backup, restore) or exclusive (forget, prune) lock.
    pub async fn lock(&self, exclusive: bool) -> BackupResult<RepoLock> {
        let path = format!("locks/{}", hex::encode(rand::random::<[u8; 8]>()));
        let b = self.backend();
        b.write(&path, vec![lock_bytes(exclusive)]).await?;
        let fresh_after = now_ms() - STALE.as_millis() as i64;
        for f in b.list("locks/").await? {
            if f.path == path {
                continue;
            }
            let Ok(data) = b.read(&f.path).await else {
                continue; // released meanwhile
            };
            let Ok(other) = serde_json::from_slice::<LockInfo>(&data) else {
                continue;
            };
            if other.time_ms < fresh_after {
                if exclusive {
                    let _ = b.delete(&f.path).await;
                }
                continue;
            }
            if exclusive || other.exclusive {
                let _ = b.delete(&path).await;
                return Err(BackupError::Locked(format!(
                    "{} by {} (pid {}) on {}; wait for it to finish",
                    if other.exclusive {
                        "being pruned"
                    } else {
                        "in use"
                    },
                    other.host,
                    other.pid,
                    b.name()
                )));
            }
        }
        let refresh = {
            let (repo, path) = (self.clone(), path.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(REFRESH).await;
                    let _ = repo
                        .backend()
                        .write(&path, vec![lock_bytes(exclusive)])
                        .await;
                }
            })
        };
        Ok(RepoLock {
            repo: self.clone(),
            path,
            refresh,
        })
    }
}
