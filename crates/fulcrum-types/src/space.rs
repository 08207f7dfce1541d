//! Recognising "the disk is full" in any error chain, so every layer
//! (pack files, the SQLite catalog, an S3 backend) reports it the same way
//! and the protocols can answer 507 / out of resources.

/// True when `err` or one of its sources says the disk is full: ENOSPC
/// (or EDQUOT), or a backend's "storage full" answer (MinIO's
/// XMinioStorageFull, HTTP 507). OpenDAL keeps the I/O error as text in
/// its context, so the text is checked too.
pub fn no_space_in(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(28) | Some(122))
                || io.kind() == std::io::ErrorKind::StorageFull
                || io.kind() == std::io::ErrorKind::QuotaExceeded
            {
                return true;
            }
        }
        let text = format!("{e} {e:?}");
        if [
            "No space left on device",
            "os error 28",
            "Disk quota exceeded",
            "StorageFull",
            "Insufficient Storage",
        ]
        .iter()
        .any(|m| text.contains(m))
        {
            return true;
        }
        cur = e.source();
    }
    false
}
