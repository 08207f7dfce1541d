-- Foundation schema: tenants, buckets, objects and their chunk lists,
-- chunks and the packs that hold them, multipart uploads, node heartbeats.
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

CREATE TABLE buckets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant, name)
);

CREATE TABLE packs (
    id TEXT PRIMARY KEY,
    tier TEXT NOT NULL DEFAULT 'hot',
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);

CREATE TABLE chunks (
    id BLOB PRIMARY KEY,
    pack_id TEXT NOT NULL,
    pack_offset BIGINT NOT NULL,
    stored_len BIGINT NOT NULL,
    raw_len BIGINT NOT NULL,
    flags BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    condemned_at BIGINT
);
CREATE INDEX chunks_by_pack ON chunks (pack_id);

CREATE TABLE objects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket_id BIGINT NOT NULL REFERENCES buckets(id),
    key TEXT NOT NULL,
    size BIGINT NOT NULL,
    etag TEXT NOT NULL,
    content_type TEXT,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (bucket_id, key)
);

CREATE TABLE object_chunks (
    object_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    chunk_id BLOB NOT NULL,
    PRIMARY KEY (object_id, seq)
);
CREATE INDEX object_chunks_by_chunk ON object_chunks (chunk_id);

CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    bucket_id BIGINT NOT NULL REFERENCES buckets(id),
    key TEXT NOT NULL,
    content_type TEXT,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE upload_parts (
    upload_id TEXT NOT NULL,
    part_number BIGINT NOT NULL,
    size BIGINT NOT NULL,
    etag TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);

CREATE TABLE upload_part_chunks (
    upload_id TEXT NOT NULL,
    part_number BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    chunk_id BLOB NOT NULL,
    PRIMARY KEY (upload_id, part_number, seq)
);
CREATE INDEX upload_part_chunks_by_chunk ON upload_part_chunks (chunk_id);

CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    heartbeat_at BIGINT NOT NULL,
    oldest_inflight BIGINT NOT NULL
);
