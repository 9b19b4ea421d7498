//! The guest's `storage.sql` interface, backed by the object's [`SqlStore`].
//!
//! `exec` runs the whole query inside [`SqlStore::exec`] and hands the guest the first page of
//! rows; the rest wait in a [`Cursor`] resource in the store's `ResourceTable` until the guest
//! pages through them or drops it.

use std::collections::VecDeque;

use wasmtime::component::Resource;

use crate::bindings::sql::{self, ResultSet, Row, SqlError, Value};
use crate::object::ObjectState;

/// Rows per page handed to the guest.
pub const PAGE_ROWS: usize = 1000;

/// Rows of a result not yet handed to the guest.
pub struct Cursor {
    rows: VecDeque<Row>,
}

impl sql::Host for ObjectState {
    fn exec(
        &mut self,
        query: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<ResultSet, SqlError>> {
        let out = match self.sql()?.exec(&query, &params) {
            Ok(out) => out,
            Err(e) => return Ok(Err(e)),
        };
        self.metrics.rows_read += out.rows_read;
        self.metrics.rows_written += out.rows_written;
        let mut rows = out.rows;
        let more = if rows.len() > PAGE_ROWS {
            let rest: VecDeque<Row> = rows.split_off(PAGE_ROWS).into();
            Some(self.table.push(Cursor { rows: rest })?)
        } else {
            None
        };
        Ok(Ok(ResultSet {
            columns: out.columns,
            rows,
            rows_read: out.rows_read,
            rows_written: out.rows_written,
            more,
        }))
    }

    fn database_size(&mut self) -> wasmtime::Result<u64> {
        Ok(self.sql()?.database_size()?)
    }
}

impl sql::HostCursor for ObjectState {
    fn next_page(&mut self, cursor: Resource<Cursor>, max_rows: u32) -> wasmtime::Result<Vec<Row>> {
        let cursor = self.table.get_mut(&cursor)?;
        let n = (max_rows as usize).min(PAGE_ROWS).min(cursor.rows.len());
        Ok(cursor.rows.drain(..n).collect())
    }

    fn drop(&mut self, cursor: Resource<Cursor>) -> wasmtime::Result<()> {
        self.table.delete(cursor)?;
        Ok(())
    }
}
