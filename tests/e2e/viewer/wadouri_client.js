// Loads instances as cornerstone's `wadouri:` image loader does: one GET of
// the WADO-URI URL (no Accept header beyond the browser's default), the
// answer parsed with dicom-parser, the library that loader is built on.
// Prints, per URL, what a viewer reads from it as one JSON list on stdout.
//
//   node wadouri_client.js URL...
'use strict';

const crypto = require('crypto');
const http = require('http');
const zlib = require('zlib');
const dicomParser = require('dicom-parser');

function get(url) {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers: { Accept: '*/*' } }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'] || '', body: Buffer.concat(chunks) }));
      })
      .on('error', reject);
  });
}

// Deflated datasets: what the loader does with pako, with node's zlib.
function inflater(bytes, position) {
  const inflated = zlib.inflateRawSync(Buffer.from(bytes.buffer, bytes.byteOffset + position, bytes.length - position));
  const whole = new Uint8Array(position + inflated.length);
  whole.set(bytes.subarray(0, position));
  whole.set(inflated, position);
  return whole;
}

async function main() {
  const out = [];
  for (const url of process.argv.slice(2)) {
    const res = await get(url);
    const entry = { url, status: res.status, type: res.type, sha256: crypto.createHash('sha256').update(res.body).digest('hex') };
    if (res.status === 200 && res.type.startsWith('application/dicom')) {
      let ds;
      try {
        ds = dicomParser.parseDicom(new Uint8Array(res.body.buffer, res.body.byteOffset, res.body.length), { inflater });
      } catch (e) {
        entry.error = String(e && e.exception ? e.exception : e);
        out.push(entry);
        continue;
      }
      entry.sop = ds.string('x00080018');
      entry.transferSyntax = ds.string('x00020010');
      entry.rows = ds.uint16('x00280010');
      const pixels = ds.elements.x7fe00010;
      if (pixels && Number(ds.intString('x00280008') || 1) === 1) {
        // The one frame, as the loader cuts it out of the file.
        let frame;
        if (pixels.encapsulatedPixelData) {
          frame = dicomParser.readEncapsulatedPixelDataFromFragments(ds, pixels, 0, pixels.fragments.length);
        } else {
          const size = (ds.uint16('x00280010') * ds.uint16('x00280011') * (ds.uint16('x00280002') || 1) * ds.uint16('x00280100')) / 8;
          frame = ds.byteArray.subarray(pixels.dataOffset, pixels.dataOffset + size);
        }
        entry.frame1 = crypto.createHash('sha256').update(frame).digest('hex');
      }
    }
    out.push(entry);
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  process.stderr.write(`wadouri_client: ${e && e.stack ? e.stack : e}\n`);
  process.exit(2);
});
