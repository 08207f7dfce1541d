-- QIDO-RS instance results carry Bits Allocated (0028,0100) and Timezone
-- Offset From UTC (0008,0201) "if known" (PS3.18 Table 10.6.3-5). NULL in
-- rows written before they were kept.
ALTER TABLE dicom_instances ADD COLUMN bits_allocated BIGINT;
ALTER TABLE dicom_instances ADD COLUMN timezone_offset TEXT;
