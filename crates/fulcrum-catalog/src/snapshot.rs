//! Point-in-time exports of the catalog, for backups: every table that
//! describes stored data (tenants, buckets, objects and their chunk lists,
//! the chunks they use, protocol indexes such as DICOM's, and any table a
//! later migration adds) read in one transaction, so the export is
//! consistent while writes go on; and the import of such an export into a
//! fresh catalog.
//!
//! Runtime state is left out: node heartbeats, leases, unfinished
//! multipart uploads and the pack table (a restore writes its own packs and
//! rewrites chunk locations through `import`'s callback).
//!
//! Encoding: `MAGIC`, then per table `T name ncols col…`, per row `R` and
//! one tagged value per column, and `E` at the end. Tables are discovered
//! from the database, so a table added by a later migration is exported
//! without changes here. Rows keep the database's own order (insertion
//! order on SQLite), which keeps consecutive exports similar for dedup.

use sqlx::{Arguments, Column, Row, ValueRef};

use crate::db::{Catalog, DbKind};
use crate::error::{db, CatalogError, CatalogResult};

const MAGIC: &[u8; 8] = b"FCDUMP01";

/// Tables not exported: runtime state and data a restore rebuilds.
const SKIPPED: &[&str] = &[
    "leases",
    "nodes",
    "packs",
    "uploads",
    "upload_parts",
    "upload_part_chunks",
    "upload_locks",
];

/// Exported first, parents before children (foreign keys).
const FIRST: &[&str] = &[
    "meta",
    "tenants",
    "buckets",
    "objects",
    "object_chunks",
    "chunks",
];

/// One column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_blob(&self) -> Option<&[u8]> {
        match self {
            Value::Blob(v) => Some(v),
            _ => None,
        }
    }
}

/// Receives an export table by table, row by row.
pub trait ExportSink: Send {
    fn table(&mut self, name: &str, columns: &[String]);
    fn row(&mut self, values: &[Value]);
}

/// Encodes an export into the dump format.
#[derive(Debug, Default)]
pub struct DumpWriter {
    buf: Vec<u8>,
}

impl DumpWriter {
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(1 << 20);
        buf.extend_from_slice(MAGIC);
        Self { buf }
    }

    fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(b);
    }

    /// Ends the dump and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(b'E');
        self.buf
    }
}

impl ExportSink for DumpWriter {
    fn table(&mut self, name: &str, columns: &[String]) {
        self.buf.push(b'T');
        self.bytes(name.as_bytes());
        self.buf
            .extend_from_slice(&(columns.len() as u32).to_le_bytes());
        for c in columns {
            self.bytes(c.as_bytes());
        }
    }

    fn row(&mut self, values: &[Value]) {
        self.buf.push(b'R');
        for v in values {
            match v {
                Value::Null => self.buf.push(0),
                Value::Int(i) => {
                    self.buf.push(1);
                    self.buf.extend_from_slice(&i.to_le_bytes());
                }
                Value::Real(f) => {
                    self.buf.push(2);
                    self.buf.extend_from_slice(&f.to_le_bytes());
                }
                Value::Text(s) => {
                    self.buf.push(3);
                    self.bytes(s.as_bytes());
                }
                Value::Blob(b) => {
                    self.buf.push(4);
                    self.bytes(b);
                }
            }
        }
    }
}

/// One table of a parsed dump.
#[derive(Debug, Clone, Default)]
pub struct DumpTable {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl DumpTable {
    /// Position of `column`.
    pub fn col(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == column)
    }
}

/// A parsed dump.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    pub tables: Vec<DumpTable>,
}

impl Dump {
    pub fn table(&self, name: &str) -> Option<&DumpTable> {
        self.tables.iter().find(|t| t.name == name)
    }

    pub fn table_mut(&mut self, name: &str) -> Option<&mut DumpTable> {
        self.tables.iter_mut().find(|t| t.name == name)
    }

    /// Parses dump bytes; a damaged dump is an error, never a partial one.
    pub fn parse(data: &[u8]) -> CatalogResult<Self> {
        let mut r = Reader { data, at: 0 };
        if r.take(MAGIC.len())? != MAGIC {
            return Err(bad("not a Fulcrum catalog dump"));
        }
        let mut dump = Dump::default();
        loop {
            match r.u8()? {
                b'T' => {
                    let name = r.text()?;
                    let n = r.u32()? as usize;
                    let columns = (0..n).map(|_| r.text()).collect::<CatalogResult<_>>()?;
                    dump.tables.push(DumpTable {
                        name,
                        columns,
                        rows: Vec::new(),
                    });
                }
                b'R' => {
                    let t = dump
                        .tables
                        .last_mut()
                        .ok_or_else(|| bad("row before any table"))?;
                    let row = (0..t.columns.len())
                        .map(|_| r.value())
                        .collect::<CatalogResult<_>>()?;
                    t.rows.push(row);
                }
                b'E' if r.at == data.len() => return Ok(dump),
                _ => return Err(bad("unknown record")),
            }
        }
    }
}

fn bad(reason: &str) -> CatalogError {
    CatalogError::BadDump(reason.to_string())
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> CatalogResult<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or_else(|| bad("truncated"))?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> CatalogResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> CatalogResult<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn eight(&mut self) -> CatalogResult<[u8; 8]> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(a)
    }

    fn blob(&mut self) -> CatalogResult<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }

    fn text(&mut self) -> CatalogResult<String> {
        String::from_utf8(self.blob()?).map_err(|_| bad("text is not UTF-8"))
    }

    fn value(&mut self) -> CatalogResult<Value> {
        Ok(match self.u8()? {
            0 => Value::Null,
            1 => Value::Int(i64::from_le_bytes(self.eight()?)),
            2 => Value::Real(f64::from_le_bytes(self.eight()?)),
            3 => Value::Text(self.text()?),
            4 => Value::Blob(self.blob()?),
            _ => return Err(bad("unknown value tag")),
        })
    }
}

impl Catalog {
    /// The tables an export covers, parents first.
    async fn exported_tables(&self, conn: &mut sqlx::AnyConnection) -> CatalogResult<Vec<String>> {
        let sql = match self.kind() {
            DbKind::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%'"
            }
            DbKind::Postgres => {
                "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                 AND table_name NOT LIKE '_sqlx%'"
            }
        };
        let mut names: Vec<String> = sqlx::query_scalar(sql)
            .fetch_all(&mut *conn)
            .await
            .map_err(db("list tables"))?;
        names.retain(|n| !SKIPPED.contains(&n.as_str()));
        names.sort_by_key(|n| {
            (
                FIRST.iter().position(|f| f == n).unwrap_or(FIRST.len()),
                n.clone(),
            )
        });
        Ok(names)
    }

    /// Exports every data table in one read transaction (a consistent point
    /// in time while writers go on). Chunks are limited to those objects
    /// use.
    pub async fn export(&self, sink: &mut dyn ExportSink) -> CatalogResult<()> {
        use futures::TryStreamExt;
        let mut tx = self.pool.begin().await.map_err(db("begin export"))?;
        if self.kind() == DbKind::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await
                .map_err(db("export isolation"))?;
        }
        let tables = self.exported_tables(&mut tx).await?;
        for t in tables {
            let sql = if t == "chunks" {
                "SELECT c.* FROM chunks c WHERE EXISTS \
                 (SELECT 1 FROM object_chunks oc WHERE oc.chunk_id = c.id)"
                    .to_string()
            } else {
                format!("SELECT * FROM {t}")
            };
            let mut columns: Option<Vec<String>> = None;
            let mut rows = sqlx::query(crate::dynamic(sql)).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await.map_err(db("export rows"))? {
                if columns.is_none() {
                    let cols: Vec<String> =
                        row.columns().iter().map(|c| c.name().to_string()).collect();
                    sink.table(&t, &cols);
                    columns = Some(cols);
                }
                let values = (0..row.len())
                    .map(|i| value_of(&row, i))
                    .collect::<CatalogResult<Vec<_>>>()?;
                sink.row(&values);
            }
            drop(rows);
            if columns.is_none() {
                sink.table(&t, &[]);
            }
        }
        tx.commit().await.map_err(db("end export"))?;
        Ok(())
    }

    /// Imports a dump into this (freshly created) catalog in one
    /// transaction, replacing the rows `open` created (the default tenant).
    /// Tables unknown to this catalog's schema are an error.
    pub async fn import(&self, dump: &Dump) -> CatalogResult<()> {
        let mut tx = self.begin_write().await.map_err(db("begin import"))?;
        for t in dump.tables.iter().rev() {
            sqlx::query(crate::dynamic(format!("DELETE FROM {}", t.name)))
                .execute(&mut *tx)
                .await
                .map_err(db("clear table"))?;
        }
        for t in &dump.tables {
            if t.columns.is_empty() || t.rows.is_empty() {
                continue;
            }
            let prefix = format!("INSERT INTO {} ({})", t.name, t.columns.join(", "));
            crate::commit::insert_rows(
                &mut tx,
                (&prefix, t.columns.len(), ""),
                &t.rows,
                "import rows",
                |args, row| {
                    for v in row {
                        match v {
                            Value::Null => args.add(None::<String>)?,
                            Value::Int(i) => args.add(*i)?,
                            Value::Real(f) => args.add(*f)?,
                            Value::Text(s) => args.add(s.as_str())?,
                            Value::Blob(b) => args.add(b.as_slice())?,
                        }
                    }
                    Ok(())
                },
            )
            .await?;
        }
        // A dump from before the stored counts (migration 0006) has none.
        crate::dicom::refresh_all_counts(&mut tx).await?;
        tx.commit().await.map_err(db("commit import"))?;
        // A dump written before the name group keys existed, or before
        // names were keyed group by group.
        self.fill_name_group_keys().await?;
        self.rekey_names().await?;
        Ok(())
    }
}

fn value_of(row: &sqlx::any::AnyRow, i: usize) -> CatalogResult<Value> {
    use sqlx::any::AnyTypeInfoKind as K;
    let raw = row.try_get_raw(i).map_err(db("export value"))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let kind = raw.type_info().kind();
    Ok(match kind {
        K::Null => Value::Null,
        K::Bool => Value::Int(row.try_get::<bool, _>(i).map_err(db("export bool"))? as i64),
        K::SmallInt | K::Integer | K::BigInt => {
            Value::Int(row.try_get::<i64, _>(i).map_err(db("export int"))?)
        }
        K::Real | K::Double => Value::Real(row.try_get::<f64, _>(i).map_err(db("export real"))?),
        K::Text => Value::Text(row.try_get::<String, _>(i).map_err(db("export text"))?),
        K::Blob => Value::Blob(row.try_get::<Vec<u8>, _>(i).map_err(db("export blob"))?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumps_round_trip_and_damage_is_refused() {
        let mut w = DumpWriter::new();
        w.table("t", &["a".into(), "b".into()]);
        w.row(&[Value::Int(-7), Value::Text("é".into())]);
        w.row(&[Value::Null, Value::Blob(vec![0, 1, 2])]);
        w.table("empty", &[]);
        w.table("u", &["x".into()]);
        w.row(&[Value::Real(1.5)]);
        let bytes = w.finish();
        let d = Dump::parse(&bytes).expect("parses");
        assert_eq!(d.tables.len(), 3);
        assert_eq!(d.table("t").map(|t| t.rows.len()), Some(2));
        assert_eq!(d.table("t").and_then(|t| t.col("b")), Some(1));
        assert_eq!(
            d.table("u").map(|t| t.rows[0][0].clone()),
            Some(Value::Real(1.5))
        );
        for cut in [0, 8, 20, bytes.len() - 1] {
            assert!(Dump::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(Dump::parse(&extra).is_err());
    }
}
