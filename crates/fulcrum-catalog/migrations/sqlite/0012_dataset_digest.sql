-- A digest of an instance's dataset (its bytes after the file meta group,
-- from the chunk ids of that part): the same dataset received under
-- another file meta (over DIMSE, then imported from its file; or from two
-- senders) is recognised as already stored. NULL in rows written before.
ALTER TABLE dicom_instances ADD COLUMN dataset_digest TEXT;
