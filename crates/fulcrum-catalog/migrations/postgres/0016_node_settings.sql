-- The settings every node of a cluster must share (the duplicate policy,
-- the default character set), as each live node has them: a node started
-- with other ones warns, and so do the others.
ALTER TABLE nodes ADD COLUMN settings TEXT;
