-- Archive tier and lifecycle. `last_read_at`: when the object was last
-- read (set by reads at most about once a day, never by writes; NULL:
-- never read since it was written). `archived_at`: when a tier move left
-- all of the object's chunks on the archive tier (NULL: hot, or promoted
-- back). Each bucket's S3 lifecycle configuration is kept as JSON rules.
ALTER TABLE objects ADD COLUMN last_read_at BIGINT;
ALTER TABLE objects ADD COLUMN archived_at BIGINT;

CREATE TABLE bucket_lifecycle (
    bucket_id BIGINT PRIMARY KEY REFERENCES buckets(id) ON DELETE CASCADE,
    rules TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX packs_by_tier ON packs (tier, id);
