// Plays what the OHIF viewer (v3, lazy study load, wadors image and
// thumbnail rendering) asks a DICOMweb server, with the npm packages OHIF
// itself is built on: dicomweb-client for QIDO-RS and metadata, dcmjs to
// naturalize datasets, and cornerstone's frame request (one frame per GET,
// Accept `multipart/related; type=application/octet-stream;
// transfer-syntax=*`, the first part only, its codec chosen from the part's
// transfer-syntax parameter). Prints one JSON report on stdout.
//
//   node ohif_client.js WADO_ROOT [PATIENT_NAME_FRAGMENT]
'use strict';

global.XMLHttpRequest = require('xhr2');
const crypto = require('crypto');
const http = require('http');
const { api } = require('dicomweb-client');
const dcmjs = require('dcmjs');

const [wadoRoot, nameFragment] = process.argv.slice(2);
const client = new api.DICOMwebClient({ url: wadoRoot, singlepart: 'bulkdata,video' });

// The frame request of cornerstone's wadors loader, with the Accept header
// OHIF's generateAcceptHeader gives (omitQuotationForMultipartRequest).
function getRaw(url, accept) {
  return new Promise((resolve, reject) => {
    const headers = accept ? { Accept: accept } : {};
    http
      .get(url, { headers }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'] || '', body: Buffer.concat(chunks) }));
      })
      .on('error', reject);
  });
}

// cornerstone's extractMultipart: the boundary is the first line starting
// with "--" before the first blank line; the part header must be spelled
// "Content-Type:"; the data ends 2 bytes before the next boundary.
function extractMultipart(type, body) {
  if (!type.includes('multipart')) {
    return { contentType: type, data: body };
  }
  const headerEnd = body.indexOf('\r\n\r\n');
  if (headerEnd < 0) throw new Error('no blank line after the part header');
  const header = body.subarray(0, headerEnd).toString('latin1');
  const lines = header.split('\r\n');
  const boundary = lines.find((l) => l.startsWith('--'));
  if (!boundary) throw new Error('no boundary line');
  const ctLine = lines.find((l) => l.startsWith('Content-Type:'));
  const contentType = ctLine ? ctLine.slice('Content-Type:'.length).trim() : '';
  const start = headerEnd + 4;
  const end = body.indexOf(boundary, start);
  if (end < 0) throw new Error('no closing boundary');
  return { contentType, data: body.subarray(start, end - 2) };
}

// cornerstone's getTransferSyntaxForContentType.
function transferSyntaxOf(contentType) {
  const m = /transfer-syntax="?([^";,\s]+)"?/.exec(contentType);
  if (m) return m[1];
  const defaults = {
    'image/jpeg': '1.2.840.10008.1.2.4.50',
    'image/x-jls': '1.2.840.10008.1.2.4.80',
    'image/jls': '1.2.840.10008.1.2.4.80',
    'image/jll': '1.2.840.10008.1.2.4.70',
    'image/jp2': '1.2.840.10008.1.2.4.90',
    'image/jpx': '1.2.840.10008.1.2.4.92',
    'image/x-dicom-rle': '1.2.840.10008.1.2.5',
  };
  return defaults[contentType.split(';')[0].trim()] || '1.2.840.10008.1.2';
}

// [path, uri] of every BulkDataURI in a DICOM JSON dataset; a path is the
// tags down to the element, sequence item indexes between (0054xxxx/0/...).
function bulkDataURIs(ds, prefix) {
  const out = [];
  for (const [tag, el] of Object.entries(ds)) {
    const path = prefix + tag;
    if (el.BulkDataURI) out.push([path, el.BulkDataURI]);
    if (el.vr === 'SQ' && el.Value) {
      el.Value.forEach((item, i) => out.push(...bulkDataURIs(item, `${path}/${i}/`)));
    }
  }
  return out;
}

const first = (ds, tag) => (ds[tag] && ds[tag].Value ? ds[tag].Value[0] : undefined);

async function main() {
  const report = { studies: [], problems: [] };
  const problem = (msg) => report.problems.push(msg);

  // 1. Worklist: OHIF's study search, page by page (101 asked, 100 shown).
  const studies = [];
  for (let offset = 0; ; offset += 100) {
    const queryParams = {
      limit: 101,
      offset,
      fuzzymatching: false,
      includefield: '00081030,00080060,00080090,00100030',
    };
    if (nameFragment) queryParams.PatientName = `*${nameFragment}*`;
    const page = await client.searchForStudies({ queryParams });
    studies.push(...page.slice(0, 100));
    if (page.length < 101) break;
  }
  for (const st of studies) {
    for (const tag of ['0020000D', '00080020', '00100010', '00100020', '00201208']) {
      if (!(tag in st)) problem(`study search: ${tag} missing`);
    }
    if (!('00080061' in st) && !('00080060' in st)) problem('study search: no modality');
    const studyUID = first(st, '0020000D');
    const study = { uid: studyUID, series: [] };
    report.studies.push(study);

    // 2. Lazy load: the series of the study, then each series' metadata.
    const series = await client.searchForSeries({
      studyInstanceUID: studyUID,
      queryParams: { includefield: '00080021,00080031,0008103E,00200011' },
    });
    for (const se of series) {
      const seriesUID = first(se, '0020000E');
      const metadata = await client.retrieveSeriesMetadata({ studyInstanceUID: studyUID, seriesInstanceUID: seriesUID });
      const entry = { uid: seriesUID, modality: first(se, '00080060'), instances: [] };
      study.series.push(entry);
      for (const raw of metadata) {
        const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(JSON.parse(JSON.stringify(raw)));
        const sop = ds.SOPInstanceUID;
        const inst = { sop, rows: ds.Rows, columns: ds.Columns, frames: [] };
        entry.instances.push(inst);
        // Bulk data other than pixels (waveforms, LUTs, overlays, also in
        // sequences), fetched as OHIF does: single part, no Accept header.
        inst.bulk = {};
        for (const [path, uri] of bulkDataURIs(raw, '')) {
          if (!/^https?:\/\//.test(uri)) problem(`${sop} ${path}: BulkDataURI not absolute: ${uri}`);
          if (path === '7FE00010') continue;
          const res = await getRaw(uri, null);
          if (res.status !== 200) problem(`${sop} ${path}: bulk data HTTP ${res.status}`);
          const part = extractMultipart(res.type, res.body);
          inst.bulk[path] = crypto.createHash('sha256').update(part.data).digest('hex');
        }
        if (!ds.Rows || !('7FE00010' in raw)) continue; // not an image
        const nframes = Number(ds.NumberOfFrames || 1);
        for (let f = 1; f <= nframes; f++) {
          const url = `${wadoRoot}/studies/${studyUID}/series/${seriesUID}/instances/${sop}/frames/${f}`;
          const res = await getRaw(url, 'multipart/related; type=application/octet-stream; transfer-syntax=*');
          if (res.status !== 200 && res.status !== 206) {
            problem(`${sop} frame ${f}: HTTP ${res.status} ${res.body.toString().slice(0, 200)}`);
            inst.frames.push(null);
            continue;
          }
          const part = extractMultipart(res.type, res.body);
          inst.frames.push({
            ts: transferSyntaxOf(part.contentType),
            bytes: part.data.length,
            sha256: crypto.createHash('sha256').update(part.data).digest('hex'),
          });
        }
      }
    }
  }
  process.stdout.write(JSON.stringify(report));
}

main().catch((e) => {
  process.stderr.write(`ohif_client: ${e && e.stack ? e.stack : e}\n`);
  process.exit(2);
});
