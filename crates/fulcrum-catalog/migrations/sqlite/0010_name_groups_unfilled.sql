-- The study rows whose name group keys are still to be filled (written
-- before 0009, or restored from an older dump): the catalog looks for them
-- each time it opens. Indexed, that look-up reads an empty index instead
-- of every study row.
CREATE INDEX dicom_studies_name_groups_unfilled ON dicom_studies (tenant, study_uid)
    WHERE patient_name IS NOT NULL AND patient_name_ideo_key IS NULL;
