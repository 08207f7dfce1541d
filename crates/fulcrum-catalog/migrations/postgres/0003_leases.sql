-- Leases: a background job (GC, scrub, backup, lifecycle) runs on one node
-- at a time. A holder renews its lease well before `expires_at`; a lease
-- whose holder died expires and another node takes it.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
