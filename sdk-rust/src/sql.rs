//! `storage.sql`: the object's own SQLite database ([`Sql`]), query results ([`Cursor`]) and
//! their rows ([`Row`]).
//!
//! Every statement runs inside the current event's implicit transaction: its writes commit when
//! the event succeeds and roll back when it fails, so objects never issue `BEGIN` or `COMMIT`.

use std::rc::Rc;

use serde::de::DeserializeOwned;

use crate::__private::bindings::dohost::object::sql as wit;
use crate::{Error, FromValue, Params, Result, Value};

/// Rows asked of the host per page when a result is longer than its first page (the host's
/// maximum).
const PAGE_ROWS: u32 = 1000;

/// Handle to the object's SQLite database; get one from [`Ctx::sql`](crate::Ctx::sql).
#[derive(Debug, Clone, Copy)]
pub struct Sql {
    // Only the SDK hands these out: host calls are valid only inside an exported object.
    _private: (),
}

impl Sql {
    pub(crate) const fn new() -> Self {
        Self { _private: () }
    }

    /// Run `query` with `params` bound to its `?` placeholders and return its result.
    ///
    /// `query` may hold several statements separated by `;` (each takes as many `params` as it
    /// has placeholders); the result is the last statement's.
    ///
    /// ```no_run
    /// # fn demo(sql: dohost_sdk::Sql) -> dohost_sdk::Result<()> {
    /// sql.exec("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT)", ())?;
    /// sql.exec("INSERT OR REPLACE INTO kv VALUES (?, ?)", ("greeting", "hello"))?;
    /// let v: String = sql.exec("SELECT v FROM kv WHERE k = ?", ("greeting",))?.one()?.get(0)?;
    /// # Ok(()) }
    /// ```
    pub fn exec(&self, query: &str, params: impl Params) -> Result<Cursor> {
        let result = wit::exec(query, &params.into_values()).map_err(crate::SqlError::from)?;
        Ok(Cursor {
            columns: result.columns.into(),
            page: result.rows.into_iter(),
            more: result.more,
            rows_read: result.rows_read,
            rows_written: result.rows_written,
        })
    }

    /// Current size of the database in bytes.
    pub fn database_size(&self) -> u64 {
        wit::database_size()
    }
}

/// The result of [`Sql::exec`]: column names, counters, and an iterator over the [`Row`]s.
///
/// Long results arrive in pages; iterating fetches further pages from the host as needed.
/// Dropping the cursor releases the rows the host still holds.
#[derive(Debug)]
pub struct Cursor {
    columns: Rc<[String]>,
    page: std::vec::IntoIter<Vec<Value>>,
    more: Option<wit::Cursor>,
    rows_read: u64,
    rows_written: u64,
}

impl Cursor {
    /// Column names of the last statement, in order (empty for statements without results).
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Rows SQLite visited (returned plus stepped over by scans), over all statements.
    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }

    /// Rows inserted, updated or deleted, over all statements.
    pub fn rows_written(&self) -> u64 {
        self.rows_written
    }

    /// The only row of the result; an error if there are none or several.
    pub fn one(mut self) -> Result<Row> {
        let Some(row) = self.next() else {
            return Err(Error::msg(
                "Expected exactly one result from SQL query, but got no results.",
            ));
        };
        if self.next_values().is_some() {
            return Err(Error::msg(
                "Expected exactly one result from SQL query, but got multiple results.",
            ));
        }
        Ok(row)
    }

    /// Every remaining row as plain values, without column names.
    pub fn raw(self) -> RawRows {
        RawRows(self)
    }

    /// Every remaining row deserialized into `T`, by column name (see [`Row::deserialize`]).
    pub fn deserialize<T: DeserializeOwned>(self) -> Result<Vec<T>> {
        self.map(|row| row.deserialize()).collect()
    }

    fn next_values(&mut self) -> Option<Vec<Value>> {
        loop {
            if let Some(values) = self.page.next() {
                return Some(values);
            }
            let page = self.more.as_ref()?.next_page(PAGE_ROWS);
            if page.is_empty() {
                // Exhausted: drop the host cursor now rather than when `self` goes.
                self.more = None;
                return None;
            }
            self.page = page.into_iter();
        }
    }
}

impl Iterator for Cursor {
    type Item = Row;

    fn next(&mut self) -> Option<Row> {
        let values = self.next_values()?;
        Some(Row {
            columns: Rc::clone(&self.columns),
            values,
        })
    }
}

/// The rows of a [`Cursor`] as plain `Vec<Value>`s; see [`Cursor::raw`].
#[derive(Debug)]
pub struct RawRows(Cursor);

impl Iterator for RawRows {
    type Item = Vec<Value>;

    fn next(&mut self) -> Option<Vec<Value>> {
        self.0.next_values()
    }
}

/// One result row: its values and the result's column names.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    columns: Rc<[String]>,
    values: Vec<Value>,
}

impl Row {
    /// The value of `column` (an index or a column name), converted to `T`.
    ///
    /// ```no_run
    /// # fn demo(row: dohost_sdk::Row) -> dohost_sdk::Result<()> {
    /// let id: String = row.get(0)?;
    /// let name: Option<String> = row.get("name")?;
    /// # Ok(()) }
    /// ```
    pub fn get<T: FromValue>(&self, column: impl ColumnIndex) -> Result<T> {
        let index = column.index(&self.columns, self.values.len())?;
        // `index` was checked against `values` by `ColumnIndex::index`.
        T::from_value(&self.values[index]).map_err(|e| {
            let name = self.columns.get(index).map_or("?", String::as_str);
            Error::Message(format!("column {index} ({name}): {e}"))
        })
    }

    /// The row's values in column order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// The column names, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The row's values, consuming it.
    pub fn into_values(self) -> Vec<Value> {
        self.values
    }

    /// The row deserialized into `T`: a struct or map reads columns by name, a tuple or
    /// sequence reads them in order.
    ///
    /// `Integer` columns also read as `bool` (0 is false), `Null` as `None` or `()`.
    ///
    /// ```no_run
    /// # fn demo(sql: dohost_sdk::Sql) -> dohost_sdk::Result<()> {
    /// #[derive(serde::Deserialize)]
    /// struct Player { id: String, name: String }
    ///
    /// let players: Vec<Player> = sql.exec("SELECT id, name FROM players", ())?.deserialize()?;
    /// # Ok(()) }
    /// ```
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(crate::de::RowDeserializer::new(&self.columns, &self.values))
    }
}

/// A way to name a column of a [`Row`]: its index (`usize`) or its name (`&str`).
pub trait ColumnIndex {
    /// The index of this column among `columns`, checked against the row's `len`.
    fn index(&self, columns: &[String], len: usize) -> Result<usize>;
}

impl ColumnIndex for usize {
    fn index(&self, _columns: &[String], len: usize) -> Result<usize> {
        if *self < len {
            Ok(*self)
        } else {
            Err(Error::Message(format!(
                "column index {self} out of range for a row of {len} columns"
            )))
        }
    }
}

impl ColumnIndex for &str {
    fn index(&self, columns: &[String], len: usize) -> Result<usize> {
        columns
            .iter()
            .position(|c| c == self)
            .filter(|i| *i < len)
            .ok_or_else(|| Error::Message(format!("no column named {self:?}")))
    }
}

impl ColumnIndex for &String {
    fn index(&self, columns: &[String], len: usize) -> Result<usize> {
        self.as_str().index(columns, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        Row {
            columns: vec!["id".to_owned(), "name".to_owned()].into(),
            values: vec![Value::Integer(7), Value::Text("Ada".into())],
        }
    }

    #[test]
    fn get_by_index_and_name() {
        let row = row();
        assert_eq!(row.get::<i64>(0).ok(), Some(7));
        assert_eq!(row.get::<String>("name").ok().as_deref(), Some("Ada"));
        assert!(row.get::<i64>(2).is_err());
        assert!(row.get::<i64>("missing").is_err());
        let err = row.get::<i64>("name").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("column 1 (name): expected integer, got text")
        );
    }

    #[test]
    fn deserialize_by_name_and_position() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Player {
            id: u32,
            name: String,
        }
        let row = row();
        assert_eq!(
            row.deserialize::<Player>().ok(),
            Some(Player {
                id: 7,
                name: "Ada".into()
            })
        );
        assert_eq!(
            row.deserialize::<(i64, String)>().ok(),
            Some((7, "Ada".into()))
        );
    }
}
