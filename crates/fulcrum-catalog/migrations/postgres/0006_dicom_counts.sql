-- The computed attributes QIDO-RS and C-FIND return, kept on the study and
-- series rows (refreshed in the transactions that add or remove their
-- instances) so a query reads them instead of counting: the number of
-- series and instances, and the modalities and SOP classes present (each a
-- comma-separated set; neither UIDs nor code strings hold a comma).
ALTER TABLE dicom_studies ADD COLUMN num_series BIGINT NOT NULL DEFAULT 0;
ALTER TABLE dicom_studies ADD COLUMN num_instances BIGINT NOT NULL DEFAULT 0;
ALTER TABLE dicom_studies ADD COLUMN modalities TEXT;
ALTER TABLE dicom_studies ADD COLUMN sop_classes TEXT;
ALTER TABLE dicom_series ADD COLUMN num_instances BIGINT NOT NULL DEFAULT 0;
ALTER TABLE dicom_series ADD COLUMN sop_classes TEXT;

UPDATE dicom_series SET
    num_instances = (SELECT COUNT(*) FROM dicom_instances i
        WHERE i.tenant = dicom_series.tenant AND i.series_uid = dicom_series.series_uid),
    sop_classes = (SELECT string_agg(DISTINCT i.sop_class_uid, ',') FROM dicom_instances i
        WHERE i.tenant = dicom_series.tenant AND i.series_uid = dicom_series.series_uid);
UPDATE dicom_studies SET
    num_series = (SELECT COUNT(*) FROM dicom_series r
        WHERE r.tenant = dicom_studies.tenant AND r.study_uid = dicom_studies.study_uid),
    modalities = (SELECT string_agg(DISTINCT r.modality, ',') FROM dicom_series r
        WHERE r.tenant = dicom_studies.tenant AND r.study_uid = dicom_studies.study_uid),
    num_instances = (SELECT COUNT(*) FROM dicom_instances i
        WHERE i.tenant = dicom_studies.tenant AND i.study_uid = dicom_studies.study_uid),
    sop_classes = (SELECT string_agg(DISTINCT i.sop_class_uid, ',') FROM dicom_instances i
        WHERE i.tenant = dicom_studies.tenant AND i.study_uid = dicom_studies.study_uid);
