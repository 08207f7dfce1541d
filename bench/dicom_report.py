"""The DICOM section of BENCHMARKS.md and bench/dicom_chart.svg, from the
results of bench/dicom_bench.py."""

from __future__ import annotations

import math
import os
from html import escape

from benchlib import machine_description, median

MB = 1000 * 1000
QIDO_KINDS = ["PatientID", "AccessionNumber", "StudyDate range (7 days)", "PatientName wildcard"]
T = {  # issue 3, "Performance"
    "stow_ct": 3.0, "stow_small": 3.0, "cstore": 10.0, "wado": 2.0,
    "qido_p99_ms": 20.0, "physical_pct": 60.0, "second_pct": 1.0, "edited_pct": 2.0, "rss_mb": 300.0,
}


def _m(res, name, key):
    return res.med(name, key) if name in res.v else None


def _fmt(v, unit="", digits=1):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:,.{digits}f}{(' ' + unit) if unit else ''}"


def _cell(res, name, key, unit, digits=1):
    if name not in res.v:
        return "not run"
    v = _m(res, name, key)
    failed = key in res.err[name] or key.split(":")[0] in res.err[name]
    if v is None:
        return "failed" if failed else "—"
    return _fmt(v, unit, digits) + (" (errors)" if failed else "")


def _ok(flag):
    if flag is None:
        return "—"
    return "yes" if flag else "**no**"


def _build(path):
    p = os.path.abspath(str(path))
    if "/target/release/" in p:
        return "release build"
    if "/target/debug/" in p:
        return "**debug build** (`target/debug/fulcrum`; speeds not representative)"
    return f"`{p}`"


def qido_worst_p99(res, prefix):
    vals = [_m(res, "Fulcrum", f"{prefix}:{k}:p99") for k in QIDO_KINDS]
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None


def render(res, d, a, dd, fsync_ms, versions, names):
    F, O = "Fulcrum", "Orthanc"
    dd_w, dd_r = median([w for w, _ in dd]), median([r for _, r in dd])
    ct_mb = d["ct_bytes"] / MB
    small_kb = d["small_bytes"] / d["small_n"] / 1000
    out = []
    w = out.append
    w("## DICOM imaging (Fulcrum vs Orthanc)")
    w("")
    if a.quick:
        w("**`--quick` run: one round and reduced data sizes; a check of the harness, not numbers to quote.**")
        w("")
    w(f"Written by `bench/run.sh dicom{' --quick' if a.quick else ''}` (do not edit by hand; "
      "`bench/dicom_bench.py --help` lists the options). Fulcrum and Orthanc run on the same machine, "
      f"in the same run, on the same generated data; each round starts both on fresh data directories "
      f"and alternates which goes first; {a.runs} round(s), the tables show medians. "
      f"Fulcrum: {_build(a.fulcrum)}, embedded defaults (local filesystem + SQLite catalog, every write durable "
      "before it is acknowledged). Orthanc: Debian's package started with its own configuration "
      "(SQLite index, `StorageCompression` off, DICOMweb plugin, other settings at their defaults) in the "
      "environment Debian's service gives it, i.e. without `TCP_NODELAY`: Orthanc's DIMSE side is DCMTK, "
      "which disables Nagle's algorithm only when that variable is set, and small C-STORE exchanges then "
      "wait for delayed ACKs. The C-STORE workload is therefore also run against an Orthanc started with "
      "`TCP_NODELAY=1` (second C-STORE row).")
    w("")
    w(f"Clients, the same for both: STOW-RS sends prebuilt `multipart/related; type=\"application/dicom\"` bodies of "
      f"{a.batch} instances per request over keep-alive HTTP/1.1 (the CT study from one client, the small "
      f"instances from {a.clients} concurrent clients); C-STORE is DCMTK `storescu` sending the whole directory "
      "over one association (`TCP_NODELAY=1`); WADO-RS is `curl` retrieving the whole study as "
      "`multipart/related`; QIDO-RS is a keep-alive client timing each study-level query to its last byte "
      f"({a.queries} queries of each kind after 20 warm-up queries).")
    w("")
    w(f"Machine: {machine_description()}. Versions: {'; '.join(versions.values())}.")
    w("")
    w(f"Machine limits (same run): sequential write `dd bs=1M count=1024 conv=fdatasync` **{dd_w:,.0f} MB/s**, "
      f"sequential read `dd iflag=direct` **{dd_r:,.0f} MB/s** (medians of 5, before and after the workloads), "
      f"fsync of a 4 KiB append **{fsync_ms:.2f} ms**.")
    w("")
    w("Data (bench/dicom_gen.py, deterministic):")
    w(f"- CT study: {d['ct_n']} slices 512×512, 16-bit (12 stored), explicit VR little endian, "
      f"{ct_mb:,.1f} MB: an anatomy-like phantom (body, fat, lungs with vessels, heart, liver, kidneys, "
      "spine, ribs, table) changing along the body, blurred, with 12 HU Gaussian noise, padding outside "
      "the reconstruction circle;")
    w("- its header-edited copy: PatientName/PatientID changed and new Study/Series/SOP Instance UIDs "
      "(a corrected or de-identified copy), pixel data byte-identical;")
    w(f"- {d['small_n']:,} small instances (64×64 CT/MR, {small_kb:.1f} KB each) for {d['small_n'] // 20:,} "
      f"patients, 2 studies each, 2 series of 5; {d['cstore_n']:,} more of the same kind for C-STORE;")
    w(f"- one multi-frame instance (Multi-frame Grayscale Word SC, 512×512 frames) of "
      f"{d['multiframe_bytes'] / MB:,.0f} MB;")
    qc = res.qido_counts
    if qc:
        w(f"- QIDO-RS index: {qc['instances']:,} instances ({qc['series']:,} series, {qc['studies']:,} studies, "
          f"{qc['patients']:,} patients) generated by bench/qido_index.py and inserted directly into Fulcrum's "
          "SQLite catalog tables (`dicom_studies`, `dicom_series`, `dicom_instances`) **while the server was "
          "stopped**, in the form the server writes them (no extra index, no ANALYZE); the objects those "
          "rows name are not stored, only the index is queried. Loading 1,000,000 instances into Orthanc "
          "would take a million Part 10 files sent through its API (tens of minutes at the STOW-RS rate below), "
          "so Orthanc's QIDO-RS latency is measured on what the benchmark "
          f"loads anyway ({d['small_n'] + d['cstore_n'] + 2 * d['ct_n']:,} instances, "
          f"{d['small_n'] // 10 + d['cstore_n'] // 10 + 2:,} studies), and Fulcrum is measured there too.")
    w("")
    w("![Fulcrum vs Orthanc and vs the issue's targets](bench/dicom_chart.svg)")
    w("")
    w("### Results against the targets (issue 3)")
    w("")
    w(f"| workload | Fulcrum | Orthanc | Fulcrum / Orthanc | target | met |")
    w("| --- | --- | --- | --- | --- | --- |")

    def ratio_row(label, key, unit, target, digits=1, okey=None):
        okey = okey or key
        f, o = _m(res, F, key), _m(res, O, okey)
        r = f / o if f is not None and o else None
        met = None if r is None else r >= target
        w(f"| {label} | {_cell(res, F, key, unit, digits)} | {_cell(res, O, okey, unit, digits)} | "
          f"{_fmt(r, '', 2) + '×' if r is not None else '—'} | ≥ {target:g}× | {_ok(met)} |")

    ratio_row(f"STOW-RS of the CT study ({d['ct_n']} slices, {ct_mb:,.0f} MB)", "stow_ct", "MB/s", T["stow_ct"])
    ratio_row(f"STOW-RS of {d['small_n']:,} small instances, {a.clients} clients", "stow_small", "instances/s",
              T["stow_small"])
    ratio_row(f"C-STORE of {d['cstore_n']:,} small instances, storescu, one association", "cstore",
              "instances/s", T["cstore"])
    ratio_row("C-STORE, the same, against Orthanc started with `TCP_NODELAY=1`", "cstore", "instances/s",
              T["cstore"], okey="cstore_nodelay")
    ratio_row("WADO-RS retrieve of the CT study", "wado", "MB/s", T["wado"])

    def abs_row(label, key, unit, limit, strict=True, digits=1, orthanc=True):
        f = _m(res, F, key)
        met = None if f is None else (f < limit if strict else f <= limit)
        o = _cell(res, O, key, unit, digits) if orthanc else "—"
        w(f"| {label} | {_cell(res, F, key, unit, digits)} | {o} | | {'<' if strict else '≤'} {limit:g} {unit} "
          f"| {_ok(met)} |")

    abs_row("physical storage of the CT study, % of its size", "physical_pct", "%", T["physical_pct"], strict=False)
    abs_row("second STOW-RS of the same study adds, % of its size", "second_pct", "%", T["second_pct"], digits=2)
    abs_row("header-edited copy adds, % of its size", "edited_pct", "%", T["edited_pct"], digits=2)
    worst = qido_worst_p99(res, "qido_1m")
    rows_label = f"{qc['instances']:,}" if qc else f"{a.qido_rows:,}"
    w(f"| QIDO-RS p99 with {rows_label} instances, worst of the 4 query kinds | {_fmt(worst, 'ms', 2)} | "
      f"not loaded (see above) | | < {T['qido_p99_ms']:g} ms | {_ok(None if worst is None else worst < T['qido_p99_ms'])} |")
    mf = d["multiframe_bytes"] / MB
    f_rss = _m(res, F, "multiframe_rss")
    w(f"| peak RSS while ingesting the {mf:,.0f} MB multi-frame instance (STOW-RS) | {_cell(res, F, 'multiframe_rss', 'MB', 0)} "
      f"| {_cell(res, O, 'multiframe_rss', 'MB', 0) if 'multiframe_rss' in res.v.get(O, {}) or 'multiframe' in res.err.get(O, {}) else 'not run'} "
      f"| | < {T['rss_mb']:g} MB | {_ok(None if f_rss is None else f_rss < T['rss_mb'])} |")
    w("")
    w("Storage percentages are (physical bytes after − before) / the study's size. Fulcrum: `physical_bytes` "
      "of `fulcrum stats --json` (pack bytes, after dedup and compression); Orthanc: the files of its "
      "storage directory (Orthanc keeps an instance it already has and stores nothing for a second STOW-RS; "
      "the edited copy is new instances for both).")
    w("")

    def rounds(name, key):
        vals = res.v.get(name, {}).get(key, [])
        return " / ".join(_fmt(v, "", 0) for v in vals) or "—"

    w(f"Per round, MB/s (Fulcrum; Orthanc): STOW-RS CT {rounds(F, 'stow_ct')}; {rounds(O, 'stow_ct')}. "
      f"WADO-RS CT {rounds(F, 'wado')}; {rounds(O, 'wado')}. "
      "A WADO-RS retrieve costs Fulcrum more CPU per byte than Orthanc: Fulcrum decompresses every chunk "
      "and verifies its BLAKE3 hash before sending it (corrupted data is never returned), while Orthanc "
      "sends its stored files as they are; both share the machine's 2 cores with curl, so Orthanc's rate "
      "bounds how far ahead Fulcrum can be.")
    w("")
    w("### Other measurements")
    w("")
    w("| measurement | Fulcrum | Orthanc | Fulcrum / Orthanc |")
    w("| --- | --- | --- | --- |")

    def plain_row(label, key, unit, digits=1, ratio=True):
        f, o = _m(res, F, key), _m(res, O, key)
        r = f"{f / o:.2f}×" if ratio and f is not None and o else ""
        w(f"| {label} | {_cell(res, F, key, unit, digits)} | {_cell(res, O, key, unit, digits)} | {r} |")

    plain_row("WADO-RS of the CT study read again (3rd and 4th retrieve, mean; not the target: "
              "Fulcrum's read cache keeps a chunk the second time it is decoded)", "wado_again", "MB/s")
    plain_row("second STOW-RS of the CT study (already stored)", "stow_ct_again", "MB/s")
    plain_row("STOW-RS of the header-edited copy", "stow_edited", "MB/s")
    plain_row(f"STOW-RS of the {mf:,.0f} MB multi-frame instance, one request", "multiframe", "MB/s")
    for key, label in [("on_disk_ct", "data directory on disk after the CT study"),
                       ("on_disk_all", "data directory on disk after all workloads of a round")]:
        f, o = _m(res, F, key), _m(res, O, key)
        w(f"| {label} | {_fmt(f / MB if f else None, 'MB')} | {_fmt(o / MB if o else None, 'MB')} | "
          f"{f'{f / o:.2f}×' if f and o else ''} |")
    w("")
    w("Peak RSS of the server process per workload (VmHWM, reset before each workload; MB):")
    w("")
    w("| workload | Fulcrum | Orthanc |")
    w("| --- | --- | --- |")
    for key, label in [("stow_ct", "STOW-RS CT study"), ("wado", "WADO-RS CT study"),
                       ("wado_again", "WADO-RS CT study, 2nd to 4th retrieve"),
                       ("stow_ct_again", "second STOW-RS CT"), ("stow_edited", "STOW-RS edited copy"),
                       ("stow_small", "STOW-RS small instances"), ("cstore", "C-STORE"),
                       ("cstore_nodelay", "C-STORE (Orthanc with TCP_NODELAY=1)"),
                       ("qido_small", "QIDO-RS (benchmark data)"), ("multiframe", f"STOW-RS {mf:,.0f} MB multi-frame"),
                       ("qido_1m", f"QIDO-RS ({rows_label} instances)")]:
        w(f"| {label} | {_cell(res, F, key + '_rss', '', 0)} | "
          f"{_cell(res, O, key + '_rss', '', 0) if key != 'qido_1m' else '—'} |")
    w("")
    w("### QIDO-RS latency (study level, ms, p50 / p99, mean number of matches)")
    w("")
    w(f"| query | Fulcrum, {rows_label} instances | Fulcrum, benchmark data | Orthanc, benchmark data |")
    w("| --- | --- | --- | --- |")
    examples = {"PatientID": "`PatientID=BP0001234`", "AccessionNumber": "`AccessionNumber=A000012345`",
                "StudyDate range (7 days)": "`StudyDate=20120301-20120307`",
                "PatientName wildcard": "`PatientName=KAMORI*`"}

    def lat(name, prefix, kind):
        if name not in res.v:
            return "not run"
        p50, p99 = _m(res, name, f"{prefix}:{kind}:p50"), _m(res, name, f"{prefix}:{kind}:p99")
        hits = _m(res, name, f"{prefix}:{kind}:hits")
        if p50 is None:
            return "failed" if prefix in res.err[name] or prefix == "qido_small" and "qido_small" in res.err[name] else "—"
        return f"{p50:.2f} / **{p99:.2f}** ({hits:,.1f})"

    for kind in QIDO_KINDS:
        w(f"| {kind}, e.g. {examples[kind]} | {lat(F, 'qido_1m', kind)} | {lat(F, 'qido_small', kind)} | "
          f"{lat(O, 'qido_small', kind)} |")
    w("")
    errs = [(n, k, m) for n in names for k, m in res.err[n].items()]
    if errs:
        w("### Errors seen in this run")
        w("")
        for n, k, m in errs:
            w(f"- {n}, `{k}`: {m.splitlines()[0][:300] if m else ''}")
        w("")
    return "\n".join(out)


# ------------------------------------------------------------- chart

def chart(res, a):
    """Two panels: speed ratios (log scale) and Fulcrum against its absolute limits."""
    F, O = "Fulcrum", "Orthanc"
    W, left, right = 940, 280, 230  # labels left, values in the right column
    bar_h, gap = 22, 12
    speed = [("STOW-RS CT study (MB/s)", "stow_ct", "stow_ct", T["stow_ct"], 1),
             ("STOW-RS small instances (inst/s)", "stow_small", "stow_small", T["stow_small"], 0),
             ("C-STORE, one association (inst/s)", "cstore", "cstore", T["cstore"], 0),
             ("C-STORE vs Orthanc with TCP_NODELAY", "cstore", "cstore_nodelay", T["cstore"], 0),
             ("WADO-RS CT study (MB/s)", "wado", "wado", T["wado"], 0)]
    worst = qido_worst_p99(res, "qido_1m")
    rows = res.qido_counts["instances"] if res.qido_counts else a.qido_rows
    rows_txt = f"{rows / 1e6:g}M" if rows >= 1_000_000 else f"{rows / 1e3:g}k"
    limits = [(f"QIDO-RS p99, {rows_txt} instances (worst kind)", worst, T["qido_p99_ms"], "ms"),
              ("physical storage of the CT study", _m(res, F, "physical_pct"), T["physical_pct"], "%"),
              ("second STOW-RS of the study adds", _m(res, F, "second_pct"), T["second_pct"], "%"),
              ("header-edited copy adds", _m(res, F, "edited_pct"), T["edited_pct"], "%"),
              ("peak RSS, multi-frame STOW-RS", _m(res, F, "multiframe_rss"), T["rss_mb"], "MB")]
    green, red, grey = "#2e7d32", "#c62828", "#9e9e9e"
    el = []
    y = 30
    el.append(f'<text x="{W / 2}" y="{y}" text-anchor="middle" font-size="17" font-weight="bold">'
              f'Fulcrum vs Orthanc — DICOM{" (--quick run, not representative)" if a.quick else ""}</text>')
    # panel 1: ratios on a log axis 0.1x .. max
    y += 30
    el.append(f'<text x="20" y="{y}" font-size="14" font-weight="bold">Speed: Fulcrum ÷ Orthanc '
              f'(higher is better; black tick = target)</text>')
    y += 16
    ratios = []
    for _, fkey, okey, _t, _d in speed:
        f, o = _m(res, F, fkey), _m(res, O, okey)
        ratios.append((f / o, f, o) if f is not None and o else None)
    hi = max([r[0] for r in ratios if r] + [t for _, _, _, t, _ in speed]) * 1.6
    lo = 0.1
    plot_w = W - left - right

    def xr(v):
        v = min(max(v, lo), hi)
        return left + plot_w * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    top = y
    n = len(speed)
    h = n * (bar_h + gap)
    for g in [0.1, 0.2, 0.5, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000]:
        if g > hi:
            break
        el.append(f'<line x1="{xr(g):.1f}" y1="{top}" x2="{xr(g):.1f}" y2="{top + h}" stroke="#e0e0e0"/>')
        el.append(f'<text x="{xr(g):.1f}" y="{top + h + 14}" text-anchor="middle" font-size="11" fill="#555">{g:g}×</text>')
    el.append(f'<line x1="{xr(1):.1f}" y1="{top}" x2="{xr(1):.1f}" y2="{top + h}" stroke="#757575" stroke-dasharray="4 3"/>')
    for i, ((label, _fk, _ok, target, digits), rr) in enumerate(zip(speed, ratios)):
        yy = top + i * (bar_h + gap) + gap / 2
        el.append(f'<text x="{left - 8}" y="{yy + bar_h * 0.7:.1f}" text-anchor="end" font-size="12">{escape(label)}</text>')
        if rr is None:
            el.append(f'<text x="{xr(1) + 6:.1f}" y="{yy + bar_h * 0.7:.1f}" font-size="12" fill="{grey}">not measured</text>')
        else:
            r, f, o = rr
            color = green if r >= target else red
            x0, x1 = sorted((xr(1), xr(r)))
            el.append(f'<rect x="{x0:.1f}" y="{yy:.1f}" width="{max(1.0, x1 - x0):.1f}" height="{bar_h}" fill="{color}"/>')
            txt = f"{r:.2f}×  ({f:,.{digits}f} vs {o:,.{digits}f})"
            el.append(f'<text x="{W - right + 12}" y="{yy + bar_h * 0.7:.1f}" font-size="12">{escape(txt)}</text>')
        el.append(f'<line x1="{xr(target):.1f}" y1="{yy - 3:.1f}" x2="{xr(target):.1f}" y2="{yy + bar_h + 3:.1f}" '
                  f'stroke="black" stroke-width="3"/>')
    y = top + h + 40
    # panel 2: Fulcrum / limit in %, 0..200 %
    el.append(f'<text x="20" y="{y}" font-size="14" font-weight="bold">Fulcrum against the absolute targets '
              f'(% of the limit; lower is better)</text>')
    y += 16
    top = y
    n = len(limits)
    h = n * (bar_h + gap)
    cap = 200.0

    def xp(v):
        return left + plot_w * min(max(v, 0.0), cap) / cap

    for g in [0, 25, 50, 75, 100, 125, 150, 175, 200]:
        el.append(f'<line x1="{xp(g):.1f}" y1="{top}" x2="{xp(g):.1f}" y2="{top + h}" stroke="#e0e0e0"/>')
        el.append(f'<text x="{xp(g):.1f}" y="{top + h + 14}" text-anchor="middle" font-size="11" fill="#555">{g}%</text>')
    el.append(f'<line x1="{xp(100):.1f}" y1="{top - 4}" x2="{xp(100):.1f}" y2="{top + h}" stroke="black" stroke-width="2"/>')
    for i, (label, v, limit, unit) in enumerate(limits):
        yy = top + i * (bar_h + gap) + gap / 2
        el.append(f'<text x="{left - 8}" y="{yy + bar_h * 0.7:.1f}" text-anchor="end" font-size="12">{escape(label)}</text>')
        if v is None:
            el.append(f'<text x="{left + 6}" y="{yy + bar_h * 0.7:.1f}" font-size="12" fill="{grey}">not measured</text>')
            continue
        pct = v / limit * 100
        ok = v <= limit if unit == "%" and limit == T["physical_pct"] else v < limit
        el.append(f'<rect x="{left}" y="{yy:.1f}" width="{max(1.0, xp(pct) - left):.1f}" height="{bar_h}" '
                  f'fill="{green if ok else red}"/>')
        digits = 0 if unit == "MB" else 2
        txt = f"{v:,.{digits}f} {unit} (limit {limit:g} {unit})" + (" off scale" if pct > cap else "")
        el.append(f'<text x="{W - right + 12}" y="{yy + bar_h * 0.7:.1f}" font-size="12">{escape(txt)}</text>')
    y = top + h + 30
    H = y + 10
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
            f'font-family="Helvetica, Arial, sans-serif">\n<rect width="{W}" height="{H}" fill="white"/>\n'
            + "\n".join(el) + "\n</svg>\n")
