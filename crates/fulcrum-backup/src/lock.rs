//! Repository locks, so a prune never deletes blobs a concurrent backup
//! counts on: a backup holds a shared lock, forget/prune an exclusive one.
//! A lock is a small file refreshed every few minutes; one not refreshed
//! for `STALE` belongs to a process that died and is ignored, as is at
//! once one taken on this host by a process that no longer runs (a backup
//! killed with -9 used to block forget for half an hour).

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
    /// The holder's PID namespace and boot (`/proc/self/ns/pid`, boot id):
    /// a pid means this host's process only when both match ours
    /// (containers may share a host name). Empty in older locks.
    #[serde(default)]
    pid_space: String,
}

/// This process's PID namespace and boot, as `holder_gone` compares them.
fn pid_space() -> String {
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    if ns.is_empty() || boot.trim().is_empty() {
        return String::new();
    }
    format!("{ns} {}", boot.trim())
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

/// True when `other` was taken on this host, in this PID namespace since
/// this boot, by a process that is gone (Linux: no /proc/<pid>).
fn holder_gone(other: &LockInfo) -> bool {
    let ours = pid_space();
    other.host == hostname()
        && !ours.is_empty()
        && other.pid_space == ours
        && other.pid != std::process::id()
        && !std::path::Path::new("/proc")
            .join(other.pid.to_string())
            .exists()
}

fn lock_bytes(exclusive: bool) -> Bytes {
    let info = LockInfo {
        host: hostname(),
        pid: std::process::id(),
        exclusive,
        time_ms: now_ms(),
        pid_space: pid_space(),
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
            if other.time_ms < fresh_after || holder_gone(&other) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use fulcrum_engine::{BackendConfig, MasterKey};

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_lock_of_a_process_gone_from_this_host_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repo::init(
            &BackendConfig::Fs {
                root: dir.path().to_path_buf(),
            },
            &MasterKey::generate(),
        )
        .await
        .expect("init");
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let gone = child.id();
        child.wait().expect("wait");
        let lock = |host: String, pid: u32| {
            let info = LockInfo {
                host,
                pid,
                exclusive: false,
                time_ms: now_ms(),
                pid_space: pid_space(),
            };
            vec![Bytes::from(serde_json::to_vec(&info).expect("json"))]
        };
        let b = repo.backend();
        // A live holder (this test process, seen from another pid's
        // view: the parent) blocks an exclusive lock; a gone one does not.
        b.write(
            "locks/live",
            lock(hostname(), std::os::unix::process::parent_id()),
        )
        .await
        .expect("write");
        assert!(matches!(repo.lock(true).await, Err(BackupError::Locked(_))));
        b.delete("locks/live").await.expect("delete");
        b.write("locks/dead", lock(hostname(), gone))
            .await
            .expect("write");
        b.write("locks/elsewhere", lock("another-host".into(), gone))
            .await
            .expect("write");
        assert!(
            matches!(repo.lock(true).await, Err(BackupError::Locked(_))),
            "another host's lock holds"
        );
        b.delete("locks/elsewhere").await.expect("delete");
        // Same host name, another PID namespace (a container): it holds.
        let mut other = LockInfo {
            host: hostname(),
            pid: gone,
            exclusive: false,
            time_ms: now_ms(),
            pid_space: "pid:[1] other-boot".into(),
        };
        let json = |i: &LockInfo| vec![Bytes::from(serde_json::to_vec(i).expect("json"))];
        b.write("locks/container", json(&other))
            .await
            .expect("write");
        assert!(
            matches!(repo.lock(true).await, Err(BackupError::Locked(_))),
            "another PID namespace's lock holds"
        );
        other.pid_space = pid_space();
        b.write("locks/container", json(&other))
            .await
            .expect("write");
        repo.lock(true)
            .await
            .expect("the dead holder's lock is ignored")
            .release()
            .await;
    }
}
