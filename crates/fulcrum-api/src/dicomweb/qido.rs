//! QIDO-RS (PS3.18 10.6): search for studies, series and instances at
//! every level and nested. Query keys become archive matchers
//! (fulcrum_dicom::query); results are DICOM JSON with a RetrieveURL.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use dicom_core::dictionary::DataDictionary;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_object::InMemDicomObject;
use fulcrum_dicom::header_keys::{HeaderKey, HeaderKeys};
use fulcrum_dicom::query::{self, lookup, matcher, returnable};
use fulcrum_dicom::{Column, DicomMatch, DicomQuery, Level, Matcher, MAX_RESULTS};
use serde_json::Value;

use super::json::{dataset, parse_tag, strings};
use super::media::{accept_list, dataset_format, DatasetFormat};
use super::wado::xml_parts;
use super::xml;
use super::{ApiError, ApiResult, Base, Ctx};

/// A parsed QIDO query string.
#[derive(Debug, Default)]
pub(crate) struct Search {
    pub filters: Vec<(Column, Matcher)>,
    pub fields: Vec<Tag>,
    pub limit: Option<u32>,
    pub offset: u32,
    /// Parameters ignored (PS3.18 8.3.4: answered with a Warning header).
    pub ignored: Vec<String>,
    /// includefield attributes the index does not hold (named in a Warning
    /// header, as ignored matching keys are).
    pub not_returned: Vec<String>,
    /// Matching asked for (`…matching=true`) that this archive does not
    /// perform: (parameter, what), each answered with the Warning PS3.18
    /// 8.3.4.5 words.
    pub not_performed: Vec<(&'static str, &'static str)>,
    /// Attributes the index does not hold, matched and returned from the
    /// stored headers (see fulcrum_dicom::header_keys).
    pub header: HeaderKeys,
}

/// A real DICOM attribute this archive does not index (vs. a typo), or a
/// path to one inside sequences (`00400275.00401001`, keywords too): its
/// tags from the top and the VR of the last (a private tag's taken as LO).
fn known_elsewhere(key: &str) -> Option<(Vec<Tag>, VR)> {
    let mut path = Vec::new();
    let mut vr = VR::LO;
    for part in key.split('.') {
        let entry = match parse_tag(part) {
            Some(tag) => {
                path.push(tag);
                StandardDataDictionary.by_tag(tag)
            }
            None => {
                let e = StandardDataDictionary.by_name(part)?;
                path.push(e.tag.inner());
                Some(e)
            }
        };
        vr = entry.map_or(VR::LO, |e| e.vr.relaxed());
    }
    Some((path, vr))
}

/// Candidates a search matching on header-held attributes reads at most;
/// past them it answers what it found with a Warning.
const HEADER_SCAN_CAP: usize = 50_000;

/// Catalog matches read at a time while matching on headers.
const HEADER_PAGE: u32 = 500;

fn parse_number(name: &str, v: &str) -> ApiResult<u32> {
    v.trim().parse().map_err(|_| {
        ApiError::bad_request(format!("{name}={v:?}: expected a non-negative integer"))
    })
}

fn parse_bool(name: &str, v: &str) -> ApiResult<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be true or false"
        ))),
    }
}

/// Reads the query parameters of a search at `level`. Results carry their
/// level's attributes, and those of the levels `above` it that the target
/// resource implies (PS3.18 10.6.3.3: All Series carry the study's
/// attributes, All Instances the study's and the series', a Study's
/// Instances the series'), then those asked for.
pub(crate) fn parse(level: Level, above: &[Level], raw: Option<&str>) -> ApiResult<Search> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut s = Search::default();
    let mut fuzzy = false;
    for (k, v) in &pairs {
        if k.eq_ignore_ascii_case("fuzzymatching") {
            fuzzy = parse_bool(k, v)?;
        }
    }
    let mut fields: Vec<Tag> = query::default_fields(level);
    for l in above {
        fields.extend(
            query::default_fields(*l)
                .into_iter()
                .filter(|t| query::by_tag(*t).is_some_and(|a| returnable(a, level))),
        );
    }
    for (k, v) in &pairs {
        match k.to_ascii_lowercase().as_str() {
            // accept: the Accept header by now (see accept_param).
            "fuzzymatching" | "accept" => {}
            "limit" => s.limit = Some(parse_number("limit", v)?),
            "offset" => s.offset = parse_number("offset", v)?,
            "emptyvaluematching" if parse_bool(k, v)? => {
                s.not_performed
                    .push(("emptyvaluematching", "Empty Value Matching"));
            }
            "multiplevaluematching" if parse_bool(k, v)? => {
                s.not_performed
                    .push(("multiplevaluematching", "Multiple Value Matching"));
            }
            "emptyvaluematching" | "multiplevaluematching" => {}
            "includefield" => {
                for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    if name.eq_ignore_ascii_case("all") {
                        fields.extend(query::all_fields(level));
                    } else if let Some(a) = lookup(name) {
                        if returnable(a, level) {
                            fields.push(a.tag);
                        } else if a.level < level {
                            // A patient's counts below patient level:
                            // not kept, named in the Warning. Lower levels'
                            // attributes are not returned (PS3.18 10.6.3.3).
                            s.not_returned.push(name.to_string());
                        }
                    } else if let Some((path, vr)) = known_elsewhere(name) {
                        // A real attribute the index does not hold is read
                        // from the stored headers (a nested one: its top
                        // sequence, whole).
                        if !s.header.0.iter().any(|k| k.tag == path[0]) {
                            let key = HeaderKey::within(&path, vr, "", false)
                                .map_err(|e| ApiError::bad_request(format!("{name}: {e}")))?;
                            s.header.0.push(key);
                        }
                    } else {
                        return Err(ApiError::bad_request(format!(
                            "includefield={name}: not a DICOM attribute keyword or tag"
                        )));
                    }
                }
            }
            _ => {
                // Attributes the index cannot match, and parameters that
                // are no attribute at all (cache busters such as `_=…`),
                // are ignored with a Warning rather than failing viewers.
                let Some(a) = lookup(k) else {
                    match known_elsewhere(k) {
                        Some((path, vr)) => {
                            let key = HeaderKey::within(&path, vr, v, fuzzy).map_err(|form| {
                                ApiError::bad_request(format!("{k}={v}: {form}"))
                            })?;
                            // A return-only key of the same attribute is
                            // this one's (matched keys return it too).
                            s.header
                                .0
                                .retain(|h| h.tag != key.tag || h.matcher.is_some());
                            s.header.0.push(key);
                        }
                        None => s.ignored.push(k.clone()),
                    }
                    continue;
                };
                let m = matcher(a, v, fuzzy);
                if let Err(form) = query::check_values(a, m.as_ref()) {
                    return Err(ApiError::bad_request(format!("{k}={v}: {form}")));
                }
                match (a.column, m) {
                    (Some(col), Some(m)) => s.filters.push((col, m)),
                    (_, None) => {}
                    // Computed attributes (counts) are returned, not matched.
                    (None, Some(_)) => s.ignored.push(a.keyword.to_string()),
                }
                if returnable(a, level) {
                    fields.push(a.tag);
                }
            }
        }
    }
    let mut seen = Vec::with_capacity(fields.len());
    for t in fields {
        if !seen.contains(&t) {
            seen.push(t);
        }
    }
    s.fields = seen;
    Ok(s)
}

fn retrieve_url(base: &Base, level: Level, m: &DicomMatch) -> Option<String> {
    let st = &m.study.study_uid;
    match level {
        Level::Patient => None,
        Level::Study => Some(base.study(st)),
        Level::Series => m.series.as_ref().map(|r| base.series(st, &r.series_uid)),
        Level::Instance => match (&m.series, &m.instance) {
            (Some(r), Some(i)) => Some(base.instance(st, &r.series_uid, &i.sop_uid)),
            _ => None,
        },
    }
}

async fn search(
    ctx: Ctx,
    base: Base,
    headers: HeaderMap,
    (level, above): (Level, &[Level]),
    fixed: Vec<(Column, Matcher)>,
    raw: Option<String>,
) -> ApiResult<Response> {
    let accept = accept_list(
        headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let Some(format) = dataset_format(&accept, false) else {
        return Err(ApiError::not_acceptable(
            "search results are sent as application/dicom+json or multipart/related; \
             type=\"application/dicom+xml\"",
        ));
    };
    let mut s = parse(level, above, raw.as_deref())?;
    let mut filters = fixed;
    filters.append(&mut s.filters);
    let q = DicomQuery {
        tenant: ctx.tenant.to_string(),
        level,
        filters,
        limit: s.limit,
        offset: s.offset,
    };
    let (matches, scanned) = matching(&ctx, q.clone(), &s.header).await?;
    let out: Vec<Value> = matches
        .iter()
        .map(|(m, header)| {
            let mut ds = query::to_dataset(m, &s.fields);
            s.header.fill(header.as_ref(), &mut ds);
            let extra = retrieve_url(&base, level, m)
                .map(|u| vec![(Tag(0x0008, 0x1190), strings("UR", &[&u]))])
                .unwrap_or_default();
            dataset(&ds, None, extra)
        })
        .collect();
    let mut res = match format {
        DatasetFormat::Json => {
            let mut res = Value::Array(out).to_string().into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/dicom+json"),
            );
            res
        }
        DatasetFormat::Xml => xml_parts(out.iter().map(xml::document).collect()),
    };
    let mut warnings: Vec<String> = s
        .not_performed
        .iter()
        .map(|(name, what)| {
            format!(
                "299 fulcrum: \"The {name} parameter is not supported. {what} has not been performed.\""
            )
        })
        .collect();
    if !s.ignored.is_empty() {
        warnings.push(format!(
            "299 fulcrum: \"The following parameters were ignored: {} (neither a DICOM attribute nor a search parameter, or a computed attribute, which is returned but not matched)\"",
            s.ignored.join(", ")
        ));
    }
    if !s.not_returned.is_empty() {
        warnings.push(format!(
            "299 fulcrum: \"The following attributes are not held by the index and are not returned: {}; \
             WADO-RS metadata has every attribute\"",
            s.not_returned.join(", ")
        ));
    }
    if let Some(n) = scanned {
        warnings.push(format!(
            "299 fulcrum: \"Matching on attributes the index does not hold stopped after {n} candidates; \
             add indexed keys (PatientID, StudyDate, AccessionNumber…) to narrow the search\""
        ));
    }
    if matches.len() as u32 >= q.limit.unwrap_or(MAX_RESULTS).min(MAX_RESULTS)
        && q.limit.is_none_or(|l| l > MAX_RESULTS)
    {
        warnings.push(format!(
            "299 fulcrum: \"The number of results exceeded the maximum of {MAX_RESULTS}; use limit and offset to page\""
        ));
    }
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&w.replace(['\r', '\n'], " ")) {
            res.headers_mut().append(header::WARNING, v);
        }
    }
    Ok(res)
}

/// The matches of `q` with the headers standing for them when `keys`
/// are asked for. Keys with values are matched on the headers: the index's
/// matches are read a page at a time and filtered, then `q`'s offset and
/// limit applied; `Some(n)` when it stopped after HEADER_SCAN_CAP
/// candidates.
async fn matching(
    ctx: &Ctx,
    q: DicomQuery,
    keys: &HeaderKeys,
) -> ApiResult<(Vec<(DicomMatch, Option<InMemDicomObject>)>, Option<usize>)> {
    let (tenant, level) = (ctx.tenant.to_string(), q.level);
    if !keys.filter() {
        let page = ctx.archive.query(&q).await?;
        return Ok((
            ctx.archive.with_headers(&tenant, level, page, keys).await?,
            None,
        ));
    }
    let want = q.limit.unwrap_or(MAX_RESULTS).min(MAX_RESULTS) as usize;
    let mut skip = q.offset as usize;
    let (mut out, mut scanned) = (Vec::new(), 0usize);
    let mut page_q = DicomQuery {
        limit: Some(HEADER_PAGE),
        offset: 0,
        ..q
    };
    loop {
        let page = ctx.archive.query(&page_q).await?;
        let full = page.len() == HEADER_PAGE as usize;
        scanned += page.len();
        for pair in ctx.archive.with_headers(&tenant, level, page, keys).await? {
            if skip > 0 {
                skip -= 1;
            } else if out.len() < want {
                out.push(pair);
            }
        }
        if !full || out.len() >= want {
            return Ok((out, None));
        }
        if scanned >= HEADER_SCAN_CAP {
            return Ok((out, Some(scanned)));
        }
        page_q.offset += HEADER_PAGE;
    }
}

fn exact(col: Column, v: String) -> (Column, Matcher) {
    (col, Matcher::Exact(v))
}

pub(crate) async fn studies(
    State(ctx): State<Ctx>,
    base: Base,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    search(ctx, base, headers, (Level::Study, &[]), Vec::new(), q).await
}

pub(crate) async fn all_series(
    State(ctx): State<Ctx>,
    base: Base,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    search(
        ctx,
        base,
        headers,
        (Level::Series, &[Level::Study]),
        Vec::new(),
        q,
    )
    .await
}

pub(crate) async fn all_instances(
    State(ctx): State<Ctx>,
    base: Base,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let above = &[Level::Study, Level::Series];
    search(ctx, base, headers, (Level::Instance, above), Vec::new(), q).await
}

pub(crate) async fn study_series(
    State(ctx): State<Ctx>,
    Path(st): Path<String>,
    base: Base,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let fixed = vec![exact(Column::StudyUid, st)];
    search(ctx, base, headers, (Level::Series, &[]), fixed, q).await
}

pub(crate) async fn study_instances(
    State(ctx): State<Ctx>,
    Path(st): Path<String>,
    base: Base,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let fixed = vec![exact(Column::StudyUid, st)];
    search(
        ctx,
        base,
        headers,
        (Level::Instance, &[Level::Series]),
        fixed,
        q,
    )
    .await
}

pub(crate) async fn series_instances(
    State(ctx): State<Ctx>,
    Path((st, se)): Path<(String, String)>,
    base: Base,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let fixed = vec![exact(Column::StudyUid, st), exact(Column::SeriesUid, se)];
    search(ctx, base, headers, (Level::Instance, &[]), fixed, q).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_dictionary_std::tags;

    #[test]
    fn parses_keys_includefield_and_paging() {
        let s = parse(
            Level::Study,
            &[],
            Some("PatientID=P1&00100010=DOE*&fuzzymatching=true&includefield=StudyDescription,00081030&limit=5&offset=10"),
        )
        .expect("valid");
        assert_eq!(s.limit, Some(5));
        assert_eq!(s.offset, 10);
        assert_eq!(s.filters.len(), 2);
        assert!(s.fields.contains(&tags::STUDY_DESCRIPTION));
        let s = parse(
            Level::Study,
            &[],
            Some("PatientName=doe&fuzzymatching=true"),
        )
        .expect("valid");
        assert_eq!(s.filters[0].1, Matcher::Fuzzy("doe".into()));
        let s = parse(
            Level::Study,
            &[],
            Some("includefield=all&includefield=00191010"),
        )
        .expect("valid");
        assert!(s.fields.contains(&tags::NUMBER_OF_STUDY_RELATED_INSTANCES));
        assert!(!s.fields.contains(&tags::SOP_INSTANCE_UID));
    }

    #[test]
    fn rejects_bad_parameters() {
        for q in [
            "limit=-1",
            "offset=x",
            "fuzzymatching=maybe",
            "includefield=NotAnAttribute",
        ] {
            let e = parse(Level::Study, &[], Some(q)).expect_err(q);
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{q}");
        }
        // Unsupported matching keys and stray parameters are ignored (and
        // reported in a Warning header), as PS3.18 8.3.4 lets viewers expect.
        for q in ["_=1700000000", "NumberOfStudyRelatedSeries=3"] {
            let s = parse(Level::Study, &[], Some(q)).expect(q);
            assert!(s.filters.is_empty() && s.ignored.len() == 1, "{q}");
        }
        // Attributes the index does not hold are matched and returned
        // from the stored headers.
        let s = parse(
            Level::Study,
            &[],
            Some("BodyPartExamined=HEAD&includefield=00080080,PixelSpacing,00091010"),
        )
        .expect("parses");
        assert!(s.filters.is_empty() && s.ignored.is_empty() && s.not_returned.is_empty());
        let keys: Vec<(Tag, VR, bool)> = s
            .header
            .0
            .iter()
            .map(|k| (k.tag, k.vr, k.matcher.is_some()))
            .collect();
        assert_eq!(
            keys,
            [
                (tags::BODY_PART_EXAMINED, VR::CS, true),
                (tags::INSTITUTION_NAME, VR::LO, false),
                (tags::PIXEL_SPACING, VR::DS, false),
                (Tag(0x0009, 0x1010), VR::LO, false),
            ]
        );
        let e = parse(Level::Study, &[], Some("SeriesDate=2020")).expect_err("no date");
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
    }
}
