-- Retention and WORM (S3 Object Lock). A bucket's lock configuration:
-- whether Object Lock is enabled and the default retention new objects
-- get (mode and a period of days or years).
CREATE TABLE bucket_locks (
    bucket_id BIGINT PRIMARY KEY,
    enabled BIGINT NOT NULL,
    default_mode TEXT,
    default_days BIGINT,
    default_years BIGINT
);

-- Per-object retention (mode GOVERNANCE|COMPLIANCE, retain-until in ms
-- since the epoch) and legal hold. Keyed by object id, so a DICOM
-- instance's previous version (renamed under versions/) keeps its own.
-- A row exists only for objects with a retention or a legal hold.
CREATE TABLE object_locks (
    object_id BIGINT PRIMARY KEY,
    mode TEXT,
    retain_until BIGINT,
    legal_hold BIGINT NOT NULL DEFAULT 0
);

-- The Object Lock headers of CreateMultipartUpload, applied at completion.
CREATE TABLE upload_locks (
    upload_id TEXT PRIMARY KEY,
    mode TEXT,
    retain_until BIGINT,
    legal_hold BIGINT NOT NULL DEFAULT 0
);
