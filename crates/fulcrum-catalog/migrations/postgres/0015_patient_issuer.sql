-- A patient is its Patient ID within the Issuer of Patient ID (0010,0021)
-- that assigned it: two sites' MRN1234 are two patients. NULL in rows
-- written before it was kept, until the studies' headers are read again
-- (once, in the background, at the first start after the upgrade).
ALTER TABLE dicom_studies ADD COLUMN issuer_of_patient_id TEXT;
