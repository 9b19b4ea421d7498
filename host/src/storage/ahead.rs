//! A new object's schema, created ahead on its spare database.
//!
//! Most objects begin their first event by creating their tables (`CREATE TABLE IF NOT
//! EXISTS ...` in a constructor), and on a new database that is the largest piece of SQLite's
//! work in the event: some 150-250 us to prepare and run one `CREATE TABLE` with its index
//! on the project's VM, more than the rest of the event's SQL. The host learns those leading
//! statements from the class's latest new object and runs them ahead on the next spares, in a
//! transaction it leaves open. The new object's first event then takes up that transaction:
//! each guest statement that is exactly the next one run ahead (same text, no parameters)
//! returns the result it had then, without running again. At the first guest statement that
//! differs (or the first other write of the event, or its end), whatever was run ahead and not
//! matched is rolled back, before anything else runs.
//!
//! What the object sees is what it would have seen had its statements run in its event: a
//! fresh database is always the same, and only statements whose outcome depends on nothing
//! else are run ahead: plain `CREATE TABLE` (listing its columns) and `CREATE INDEX` of the
//! object's own names, without parameters and without `SELECT` or `VALUES` (see
//! [`eligible`]). They commit, or roll back, with the event, like any of its statements. Their
//! CPU time is not charged to the event.
//!
//! The plan is the latest new object's: a new object whose first event begins differently
//! replaces it (one whose first event runs no SQL leaves it as it is).
//!
//! The queries and data changes that came after those in the same first event are prepared
//! ahead too (not run: into the connection's statement cache, authorized for the guest as any
//! guest statement is), so the event finds them prepared. Never a `PRAGMA`: preparing one can
//! already apply it. A prepared statement that no longer fits
//! the schema when it runs is prepared again by SQLite, as any cached statement is.
//!
//! Layout of the open transaction on a spare: `BEGIN`, then for each statement `i` a savepoint
//! `_do_ahead_i` and the statement. The event writes the object's ID after them; undoing
//! unmatched statements (`ROLLBACK TO _do_ahead_i`) undoes that write too, so it is written
//! again.

use std::sync::{Arc, Mutex};

use super::{ExecResult, HOST_CACHED, SqlStore, StorageError, is_single_statement, security};
use crate::bindings::sql::{SqlError, Value};

/// Most statements learned and run ahead.
const MOST_STATEMENTS: usize = 16;
/// Most statements learned and prepared ahead.
const MOST_PREPARED: usize = 8;
/// Longest statement run ahead, in bytes.
const LONGEST_STATEMENT: usize = 4096;

/// What the class's latest new object's first event ran: shared by the spare thread, which
/// runs and prepares them ahead, and new objects' stores, which learn them.
#[derive(Default)]
pub(super) struct Plan(Mutex<Option<Arc<Statements>>>);

/// The statements a first event began with, and the ones it ran after them.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Statements {
    /// Run ahead ([`eligible`] ones, in order).
    run: Arc<[String]>,
    /// Prepared ahead.
    prepare: Vec<String>,
}

impl Plan {
    pub(super) fn get(&self) -> Option<Arc<Statements>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, statements: Statements) {
        let mut plan = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if plan.as_deref() != Some(&statements) {
            let empty = statements.run.is_empty() && statements.prepare.is_empty();
            *plan = (!empty).then(|| Arc::new(statements));
        }
    }
}

/// Statements run ahead, in the transaction the spare's connection holds open.
pub(super) struct Ahead {
    statements: Arc<[String]>,
    /// The result of each statement that ran (a prefix of `statements`).
    results: Vec<ExecResult>,
    /// How many of them the object's event has matched so far.
    pub(super) matched: usize,
}

/// What a new object's store learns from its first event.
pub(super) struct Learn {
    plan: Arc<Plan>,
    seen: Vec<String>,
    /// Single statements that came after `seen`, to prepare ahead.
    later: Vec<String>,
    /// Set at the first statement that cannot be run ahead: nothing after it is learned.
    done: bool,
    /// Whether the event ran any statement (one that ran none teaches nothing).
    any: bool,
}

/// Whether a guest query may be run ahead: a single plain `CREATE TABLE` that defines its
/// columns, or `CREATE [UNIQUE] INDEX`, that does not touch the reserved namespace, without
/// parameters, and without `SELECT` or `VALUES` anywhere (`CREATE TABLE ... AS SELECT` and
/// `AS VALUES` evaluate expressions, which could read the clock or make large values).
fn eligible(query: &str, params: &[Value]) -> bool {
    if !params.is_empty()
        || query.len() > LONGEST_STATEMENT
        || !is_single_statement(query)
        || security::mentions_reserved(query)
    {
        return false;
    }
    let upper = query.to_ascii_uppercase();
    if upper.contains("SELECT") || upper.contains("VALUES") {
        return false;
    }
    let Some(rest) = word(query, "CREATE") else {
        return false;
    };
    if word(rest, "TABLE").is_some() {
        return defines_columns(query);
    }
    word(word(rest, "UNIQUE").unwrap_or(rest), "INDEX").is_some()
}

/// Whether a `CREATE TABLE` lists its columns (`CREATE TABLE [IF NOT EXISTS] [schema.]name (`)
/// rather than taking them from a query (`AS ...`). Anything unexpected (a comment between the
/// words, say) counts as not.
fn defines_columns(statement: &str) -> bool {
    (|| {
        let mut rest = word(statement, "CREATE")?;
        rest = word(rest, "TABLE")?;
        if let Some(after) = word(rest, "IF") {
            rest = word(word(after, "NOT")?, "EXISTS")?;
        }
        rest = name(rest)?;
        if let Some(after) = rest.trim_start().strip_prefix('.') {
            rest = name(after)?;
        }
        Some(rest.trim_start().starts_with('('))
    })()
    .unwrap_or(false)
}

/// `sql` after the keyword `keyword` (ignoring case and leading white space), if it starts
/// with it.
fn word<'a>(sql: &'a str, keyword: &str) -> Option<&'a str> {
    let sql = sql.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let rest = sql
        .get(..keyword.len())
        .filter(|w| w.eq_ignore_ascii_case(keyword))
        .map(|_| &sql[keyword.len()..])?;
    (!rest.starts_with(is_name_char)).then_some(rest)
}

/// `sql` after the name it starts with (bare, or quoted with `"`, `` ` ``, `'` or `[]`).
fn name(sql: &str) -> Option<&str> {
    let sql = sql.trim_start();
    let close = match sql.chars().next()? {
        '"' => '"',
        '`' => '`',
        '\'' => '\'',
        '[' => ']',
        c if is_name_char(c) => {
            let end = sql.find(|c| !is_name_char(c)).unwrap_or(sql.len());
            return Some(&sql[end..]);
        }
        _ => return None,
    };
    // A quote inside is written twice.
    let mut rest = &sql[1..];
    loop {
        let at = rest.find(close)?;
        rest = &rest[at + 1..];
        if close == ']' || !rest.starts_with(close) {
            return Some(rest);
        }
        rest = &rest[1..];
    }
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
}

/// Whether a guest query may be prepared ahead: a single query or data change (preparing a
/// `PRAGMA` can already apply it), and not one of the host's own statements (those are never
/// taken from the cache for a guest).
fn preparable(query: &str) -> bool {
    let kind = security::first_keyword(query).to_ascii_uppercase();
    query.len() <= LONGEST_STATEMENT
        && matches!(
            kind.as_str(),
            "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "WITH"
        )
        && is_single_statement(query)
        && !HOST_CACHED.contains(&query.trim())
}

impl SqlStore {
    /// Runs `plan`'s leading statements ahead on this spare's connection, leaving the
    /// transaction open, and prepares the others (see the module's documentation).
    pub(super) fn ahead(&mut self, plan: &Statements) {
        self.run_ahead(&plan.run);
        if self.ahead.is_some() {
            // The schema changed: every cached statement would be prepared again at its first
            // run, the ID's upsert (warmed up) included, and the statements run ahead never
            // run again. Start the cache over with the upsert.
            self.conn.flush_prepared_statement_cache();
            if let Err(e) = self.host_statement(super::META_UPSERT) {
                tracing::debug!("cannot prepare the ID's upsert ahead: {e}");
            }
        }
        self.guest.set(true);
        for query in &plan.prepare {
            // One that fails to prepare (its table not made ahead, say) fails in the event too.
            let _ = self.guest_cached(query);
        }
        self.guest.set(false);
    }

    /// Runs `plan` ahead and leaves the transaction open. Stops at the first statement that
    /// fails; runs nothing if the first does.
    fn run_ahead(&mut self, plan: &Arc<[String]>) {
        if plan.is_empty() || !self.conn.is_autocommit() {
            return;
        }
        if let Err(e) = self.conn.execute_batch("BEGIN") {
            tracing::debug!("cannot run statements ahead on a spare database: {e}");
            return;
        }
        let mut results = Vec::new();
        for (i, statement) in plan.iter().enumerate() {
            if self
                .conn
                .execute_batch(&format!("SAVEPOINT _do_ahead_{i}"))
                .is_err()
            {
                break;
            }
            self.guest.set(true);
            let ran = self.exec_guest(statement, &[]);
            self.guest.set(false);
            match ran {
                Ok(out) => results.push(out),
                Err(e) => {
                    tracing::debug!("a statement new objects began with fails ahead: {e:?}");
                    let undo = format!("ROLLBACK TO _do_ahead_{i}; RELEASE _do_ahead_{i}");
                    if self.conn.is_autocommit() || self.conn.execute_batch(&undo).is_err() {
                        self.rollback_quietly();
                        return;
                    }
                    break;
                }
            }
        }
        if results.is_empty() {
            self.rollback_quietly();
            return;
        }
        self.ahead = Some(Ahead {
            statements: plan.clone(),
            results,
            matched: 0,
        });
    }

    /// This store's first event teaches `plan` the statements it begins with.
    pub(super) fn learn_into(&mut self, plan: Arc<Plan>) {
        self.learn = Some(Learn {
            plan,
            seen: Vec::new(),
            later: Vec::new(),
            done: false,
            any: false,
        });
    }

    /// The result of the guest query run ahead, if `query` is exactly the next one that was.
    pub(super) fn take_ahead(&mut self, query: &str, params: &[Value]) -> Option<ExecResult> {
        let ahead = self.ahead.as_mut()?;
        if !self.in_event
            || !params.is_empty()
            || ahead.matched >= ahead.results.len()
            || ahead.statements[ahead.matched] != query
        {
            return None;
        }
        let out = ahead.results[ahead.matched].clone();
        ahead.matched += 1;
        Some(out)
    }

    /// Ends the statements run ahead: those the event matched stay in its transaction, the
    /// rest are rolled back. Called before anything else touches the database.
    pub(super) fn settle_ahead(&mut self) -> Result<(), StorageError> {
        let Some(ahead) = self.ahead.take() else {
            return Ok(());
        };
        if self.conn.is_autocommit() {
            return Ok(());
        }
        if !self.in_event {
            // No event took the transaction up: nothing in it is the object's.
            self.rollback_quietly();
            return Ok(());
        }
        let undo = ahead.matched < ahead.results.len();
        tracing::debug!(
            path = %self.path.display(),
            "the new object's event took up {} of {} statement(s) run ahead",
            ahead.matched,
            ahead.results.len()
        );
        let end = if undo {
            format!(
                "ROLLBACK TO _do_ahead_{}; RELEASE _do_ahead_0",
                ahead.matched
            )
        } else {
            "RELEASE _do_ahead_0".to_string()
        };
        let result = self
            .as_host(|conn| conn.execute_batch(&end))
            .map_err(StorageError::from)
            // The rollback took the object's ID (written after them) with it.
            .and_then(|()| if undo { self.write_metas(&[]) } else { Ok(()) });
        if let Err(e) = result {
            // The event cannot go on from a known state: none of it is committed.
            tracing::warn!(path = %self.path.display(), "cannot end the statements run ahead: {e}");
            self.rollback_quietly();
            self.doomed = true;
            if let Err(e) = self.conn.execute_batch("BEGIN") {
                tracing::warn!("cannot restart the event transaction: {e}");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Notes a guest query of the first event (and whether it succeeded), for the plan.
    pub(super) fn learn(&mut self, query: &str, params: &[Value], ok: bool) {
        let Some(learn) = &mut self.learn else {
            return;
        };
        learn.any = true;
        if !learn.done {
            if ok && learn.seen.len() < MOST_STATEMENTS && eligible(query, params) {
                learn.seen.push(query.to_owned());
                return;
            }
            learn.done = true;
        }
        if ok
            && learn.later.len() < MOST_PREPARED
            && preparable(query)
            && !learn.later.iter().any(|q| q == query)
        {
            learn.later.push(query.to_owned());
        }
    }

    /// At the end of the first event: a committed one teaches the plan what it began with.
    pub(super) fn finish_learning(&mut self, committed: bool) {
        if let Some(learn) = self.learn.take()
            && committed
            && learn.any
        {
            learn.plan.set(Statements {
                run: learn.seen.into(),
                prepare: learn.later,
            });
        }
    }
}

/// [`SqlError`] for a failure to end the statements run ahead.
pub(super) fn settle_error(e: StorageError) -> SqlError {
    SqlError::Other(format!("the database cannot go on with this event: {e}"))
}

#[cfg(test)]
mod tests {
    use super::{defines_columns, eligible, preparable};

    #[test]
    fn only_plain_creates_of_tables_and_indexes_are_run_ahead() {
        for ok in [
            "CREATE TABLE IF NOT EXISTS players (id TEXT PRIMARY KEY, name TEXT NOT NULL)",
            "create table t (a)",
            "CREATE INDEX IF NOT EXISTS i ON t (a);",
            "CREATE UNIQUE INDEX u ON t (a) WHERE a > 0",
            "CREATE TABLE t (at TEXT DEFAULT (datetime('now')))",
            "CREATE TABLE IF NOT EXISTS main.\"odd \"\" name\" (a)",
            "CREATE TABLE [x y](a)",
            "CREATE TABLE `t`(a) STRICT",
        ] {
            assert!(eligible(ok, &[]), "{ok}");
        }
        for no in [
            "CREATE TABLE t AS SELECT 1",
            "CREATE TABLE IF NOT EXISTS t AS VALUES (CURRENT_TIMESTAMP, random())",
            "create table \"a (\"\"b\" as values (1)",
            "CREATE TABLE t /* ( */ AS VALUES (1)",
            "CREATE TEMP TABLE t (a)",
            "CREATE VIRTUAL TABLE f USING fts5(a)",
            "CREATE VIEW v AS SELECT 1",
            "CREATE TRIGGER g AFTER INSERT ON t BEGIN DELETE FROM t; END",
            "CREATE TABLE _do_x (a)",
            "CREATE TABLE a (x); CREATE TABLE b (y)",
            "INSERT INTO t VALUES (1)",
            "DROP TABLE t",
        ] {
            assert!(!eligible(no, &[]), "{no}");
        }
        assert!(!eligible(
            "CREATE TABLE t (a)",
            &[crate::bindings::sql::Value::Integer(1)]
        ));
    }

    #[test]
    fn a_table_run_ahead_lists_its_columns() {
        assert!(defines_columns("CREATE TABLE \"a (\"\"b\" (x)"));
        assert!(defines_columns("create table if not exists s.'t'(x)"));
        assert!(!defines_columns("CREATE TABLE \"a (\"\"b\" AS x"));
        assert!(!defines_columns("CREATE TABLE t /* ( */ AS x"));
        assert!(!defines_columns("CREATE TABLE [t (x)"));
        assert!(!defines_columns("CREATE TABLEt (x)"));
    }

    #[test]
    fn only_queries_and_data_changes_are_prepared_ahead() {
        for ok in [
            "SELECT count(*) FROM players",
            "INSERT OR REPLACE INTO players (id, name) VALUES (?, ?)",
            "  with x AS (SELECT 1) SELECT * FROM x",
            "DELETE FROM t",
        ] {
            assert!(preparable(ok), "{ok}");
        }
        for no in [
            "PRAGMA foreign_keys = OFF",
            "PRAGMA defer_foreign_keys = ON",
            "CREATE TABLE t (a)",
            "SELECT 1; SELECT 2",
            super::super::META_UPSERT,
        ] {
            assert!(!preparable(no), "{no}");
        }
    }
}
