-- The ideographic and phonetic component groups of a study's PatientName
-- (`Wang^XiaoDong=王^小东`, `Yamada^Tarou=山田^太郎=やまだ^たろう`), each
-- keyed as patient_name_key is (upper-cased, `^` as space), so a query
-- for one group finds the name: `王^小东`, `山田*`. '' when the name has no
-- such group; NULL when the study has no name (or rows written before
-- this column: the catalog fills them when it opens). Indexed only where
-- a group exists: most names have none, and their upserts skip these
-- indexes. Byte-ordered (COLLATE "C") like the other key columns, so
-- prefix matches (LIKE '王%') can use the indexes.
ALTER TABLE dicom_studies ADD COLUMN patient_name_ideo_key TEXT COLLATE "C";
ALTER TABLE dicom_studies ADD COLUMN patient_name_phon_key TEXT COLLATE "C";
CREATE INDEX dicom_studies_name_ideo ON dicom_studies (tenant, patient_name_ideo_key, study_uid)
    WHERE patient_name_ideo_key <> '';
CREATE INDEX dicom_studies_name_phon ON dicom_studies (tenant, patient_name_phon_key, study_uid)
    WHERE patient_name_phon_key <> '';
