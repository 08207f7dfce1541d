-- The imaging archive's index: studies, series and instances per tenant,
-- with the attributes QIDO-RS and C-FIND match on. `*_key` columns hold
-- the upper-cased names that case-insensitive matching compares. Study
-- indexes end with study_uid so a lookup also yields results in the
-- order pages are cut in. An
-- instance points at its Part 10 object in the tenant's DICOM bucket.
CREATE TABLE dicom_studies (
    tenant TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    patient_id TEXT,
    patient_name TEXT,
    patient_name_key TEXT,
    patient_birth_date TEXT,
    patient_sex TEXT,
    study_date TEXT,
    study_time TEXT,
    accession_number TEXT,
    referring_physician TEXT,
    referring_physician_key TEXT,
    study_description TEXT,
    study_id TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, study_uid)
);
CREATE INDEX dicom_studies_patient ON dicom_studies (tenant, patient_id, study_uid);
CREATE INDEX dicom_studies_accession ON dicom_studies (tenant, accession_number, study_uid);
CREATE INDEX dicom_studies_date ON dicom_studies (tenant, study_date, study_uid);
CREATE INDEX dicom_studies_name ON dicom_studies (tenant, patient_name_key, study_uid);

CREATE TABLE dicom_series (
    tenant TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    modality TEXT,
    series_number BIGINT,
    series_description TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, series_uid)
);
CREATE INDEX dicom_series_study ON dicom_series (tenant, study_uid, modality);

CREATE TABLE dicom_instances (
    tenant TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    instance_number BIGINT,
    transfer_syntax TEXT NOT NULL,
    object_key TEXT NOT NULL,
    size BIGINT NOT NULL,
    etag TEXT NOT NULL,
    dataset_offset BIGINT NOT NULL,
    header_len BIGINT NOT NULL,
    pixel_offset BIGINT,
    pixel_len BIGINT,
    pixel_vr TEXT,
    fragments TEXT,
    num_frames BIGINT,
    num_rows BIGINT,
    num_columns BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, sop_uid)
);
CREATE INDEX dicom_instances_series ON dicom_instances (tenant, series_uid, instance_number);
CREATE INDEX dicom_instances_study ON dicom_instances (tenant, study_uid, sop_class_uid);
