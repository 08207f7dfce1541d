-- Encapsulated Pixel Data: one character per item of `fragments` (the
-- Basic Offset Table first), '1' where the item opens with a codestream's
-- start marker, else '0'. Frames spread over several fragments without an
-- offset table are found by it. A column of its own, not a third field in
-- `fragments`, so nodes of an older version read rows written by a newer
-- one. NULL in rows written before it was kept.
ALTER TABLE dicom_instances ADD COLUMN frame_starts TEXT;
