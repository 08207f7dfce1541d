//! Files and folders only their owner may read: a data directory holds the
//! catalog (S3 secrets included) and the credentials file, so it is made
//! mode 0700, as PostgreSQL makes its own, and secret files 0600.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Creates `dir` (and missing parents) readable by its owner only; an
/// existing folder is left as it is.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes `data` to a new file at `path` that only its owner may read
/// (an existing file is truncated first; its mode is not changed).
pub fn write_private_file(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Whether `dir` lets other users than its owner in (group or other bits).
pub fn shared_with_others(dir: &Path) -> io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(dir)?.permissions().mode() & 0o077 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_dirs_and_files_are_the_owners_alone() {
        let t = tempfile::tempdir().expect("tmp");
        let dir = t.path().join("a/data");
        create_private_dir(&dir).expect("create");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert!(!shared_with_others(&dir).expect("mode"));
        assert!(shared_with_others(t.path()).is_ok());
        let f = dir.join("secret.toml");
        write_private_file(&f, b"k = 1\n").expect("write");
        assert_eq!(mode(&f), 0o600);
        assert_eq!(std::fs::read(&f).expect("read"), b"k = 1\n");
        // Again over an existing folder and file.
        create_private_dir(&dir).expect("exists");
        write_private_file(&f, b"k").expect("rewrite");
        assert_eq!(std::fs::read(&f).expect("read"), b"k");
    }
}
