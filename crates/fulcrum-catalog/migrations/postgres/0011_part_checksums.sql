-- The additional checksums a part was uploaded with (x-amz-checksum-*),
-- as a JSON object of the object metadata entries they become
-- ({":checksum-sha256": "<base64>"}); NULL when it came with none. A
-- completed upload's object gets their composite checksum, and ListParts
-- returns them.
ALTER TABLE upload_parts ADD COLUMN checksums TEXT;
