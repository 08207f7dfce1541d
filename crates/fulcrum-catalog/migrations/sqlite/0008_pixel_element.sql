-- The element number of an instance's pixel tag (7FE0,eeee): 0010 Pixel
-- Data, 0008 Float Pixel Data, 0009 Double Float Pixel Data. With it, a
-- metadata request reads the header only; without it (rows written before
-- this column), the pixel element's own header is read to learn the tag,
-- which touches (decodes and verifies) the first chunk of the pixel data.
ALTER TABLE dicom_instances ADD COLUMN pixel_element BIGINT;
