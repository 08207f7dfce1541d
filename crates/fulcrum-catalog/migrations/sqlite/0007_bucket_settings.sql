-- Per-bucket settings S3 keeps beside a bucket (its tag set, ...): one
-- text value per bucket and name, removed with the bucket.
CREATE TABLE bucket_settings (
    bucket_id BIGINT NOT NULL REFERENCES buckets(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (bucket_id, name)
);
