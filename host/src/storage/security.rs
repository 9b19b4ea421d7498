//! SQLite hardening for guest statements, modelled on workerd's `setupSecurity`.
//!
//! Guests share nothing but their own database file, so the rules here keep a guest inside it:
//! no ATTACH/DETACH (and an attached-database limit of 0 besides), no transaction control (the
//! host owns the event transaction), a short allow-list of PRAGMAs, no `load_extension`, no
//! access to the host's reserved `_do_` tables, no TEMP objects (their memory is outside the
//! database size limit), and SQLite limits on statement length, columns and bound variables.
//!
//! The authorizer runs while a statement is prepared. It applies only while
//! [`GuestMode`] is on: the host's own statements (BEGIN/COMMIT, the alarm and metadata tables)
//! are prepared with it off.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::{Connection, config::DbConfig};

/// Prefix of the tables the host keeps in every object database. Guests may not touch them.
pub const RESERVED_PREFIX: &str = "_do_";

/// Limits applied to every object connection. Chosen to match Cloudflare's documented SQL
/// limits where they exist (100 KB statements, 100 columns, 100 bound parameters).
const LIMITS: &[(Limit, i32)] = &[
    (Limit::SQLITE_LIMIT_ATTACHED, 0),
    (Limit::SQLITE_LIMIT_SQL_LENGTH, 100_000),
    (Limit::SQLITE_LIMIT_COLUMN, 100),
    (Limit::SQLITE_LIMIT_VARIABLE_NUMBER, 100),
    (Limit::SQLITE_LIMIT_LENGTH, 16 * 1024 * 1024),
    (Limit::SQLITE_LIMIT_EXPR_DEPTH, 100),
    (Limit::SQLITE_LIMIT_COMPOUND_SELECT, 50),
    (Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 1_000),
    (Limit::SQLITE_LIMIT_TRIGGER_DEPTH, 100),
    (Limit::SQLITE_LIMIT_FUNCTION_ARG, 32),
];

/// PRAGMAs a guest may run. `true` means the guest may also set it; `false` means read only.
const ALLOWED_PRAGMAS: &[(&str, bool)] = &[
    ("data_version", false),
    ("defer_foreign_keys", true),
    ("foreign_key_check", true),
    ("foreign_key_list", true),
    ("foreign_keys", true),
    ("freelist_count", false),
    ("index_info", true),
    ("index_list", true),
    ("index_xinfo", true),
    ("integrity_check", false),
    ("optimize", false),
    ("page_count", false),
    ("page_size", false),
    ("quick_check", false),
    ("table_info", true),
    ("table_list", true),
    ("table_xinfo", true),
    ("user_version", false),
];

/// Virtual table modules a guest may create (full-text search).
const ALLOWED_VTABLE_MODULES: &[&str] = &["fts5"];

/// Switch between guest statements (authorizer enforced) and host statements.
#[derive(Clone, Default)]
pub struct GuestMode(Arc<AtomicBool>);

impl GuestMode {
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }

    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Applies connection-level hardening and installs the authorizer.
pub fn harden(conn: &mut Connection, mode: GuestMode) -> rusqlite::Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DDL, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DML, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_ATTACH_CREATE, false)?;
    for &(limit, value) in LIMITS {
        conn.set_limit(limit, value)?;
    }
    conn.authorizer(Some(move |ctx: AuthContext<'_>| {
        if !mode.is_on() {
            return Authorization::Allow;
        }
        // `ANALYZE` (plain, or run by `PRAGMA optimize`) asks once per table: skipping the
        // host's tables keeps their statistics out of `sqlite_stat1`, which the guest can read.
        if let AuthAction::Analyze { table_name } = ctx.action
            && is_reserved(table_name)
        {
            return Authorization::Ignore;
        }
        match authorize(&ctx.action) {
            Ok(()) => Authorization::Allow,
            Err(()) => Authorization::Deny,
        }
    }))?;
    Ok(())
}

/// The guest policy. `Err` denies the statement (the guest sees `access-denied`).
fn authorize(action: &AuthAction<'_>) -> Result<(), ()> {
    use AuthAction::*;
    let ok_name = |name: &str| if is_reserved(name) { Err(()) } else { Ok(()) };
    match *action {
        Select | Recursive | Reindex { .. } | Analyze { .. } => Ok(()),
        // SQLite reads the statistics tables into memory with the schema: only ANALYZE (whose
        // own writes are not authorized statement by statement) may fill them.
        Insert { table_name } | Update { table_name, .. } if is_statistics(table_name) => Err(()),
        Read { table_name, .. }
        | Insert { table_name }
        | Delete { table_name }
        | Update { table_name, .. }
        | CreateTable { table_name }
        | DropTable { table_name }
        | AlterTable { table_name, .. } => ok_name(table_name),
        CreateIndex {
            index_name,
            table_name,
        }
        | DropIndex {
            index_name,
            table_name,
        } => ok_name(index_name).and(ok_name(table_name)),
        CreateTrigger {
            trigger_name,
            table_name,
        }
        | DropTrigger {
            trigger_name,
            table_name,
        } => ok_name(trigger_name).and(ok_name(table_name)),
        CreateView { view_name } | DropView { view_name } => ok_name(view_name),
        CreateVtable {
            table_name,
            module_name,
        }
        | DropVtable {
            table_name,
            module_name,
        } => {
            if ALLOWED_VTABLE_MODULES
                .iter()
                .any(|m| m.eq_ignore_ascii_case(module_name))
            {
                ok_name(table_name)
            } else {
                Err(())
            }
        }
        Function { function_name } => {
            if function_name.eq_ignore_ascii_case("load_extension") {
                Err(())
            } else {
                Ok(())
            }
        }
        Pragma {
            pragma_name,
            pragma_value,
        } => {
            let allowed = ALLOWED_PRAGMAS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(pragma_name));
            match allowed {
                Some((_, settable)) if *settable || pragma_value.is_none() => Ok(()),
                _ => Err(()),
            }
        }
        // The host owns the event transaction; attached databases would escape the object's
        // file; TEMP objects live outside the size limit.
        Transaction { .. } | Savepoint { .. } | Attach { .. } | Detach { .. } => Err(()),
        CreateTempIndex { .. }
        | CreateTempTable { .. }
        | CreateTempTrigger { .. }
        | CreateTempView { .. }
        | DropTempIndex { .. }
        | DropTempTable { .. }
        | DropTempTrigger { .. }
        | DropTempView { .. } => Err(()),
        _ => Err(()),
    }
}

/// Whether `name` is one of SQLite's statistics tables (`sqlite_stat1`, ...).
fn is_statistics(name: &str) -> bool {
    starts_with_name(name, "sqlite_stat")
}

/// Whether `name` is in the host's reserved namespace (case-insensitive, as SQLite names are).
pub fn is_reserved(name: &str) -> bool {
    starts_with_name(name, RESERVED_PREFIX)
}

/// Whether a statement is a plain `CREATE` (table, index, view or trigger; not `CREATE
/// VIRTUAL TABLE`, whose module makes tables of its own with derived names). A plain `CREATE`
/// whose text does not mention the reserved prefix ([`mentions_reserved`]) cannot tie the
/// schema to the reserved namespace: every name it gives, and every table its foreign keys
/// point to, is written in its text (SQL names have no escapes that could spell the prefix
/// otherwise), and it changes no other schema entry. (`ALTER TABLE ... RENAME` does not
/// qualify: it renames a virtual table's own tables after the new name, which can add the
/// prefix; an FTS5 table renamed to `_do` gets `_do_data`, for one.)
pub fn is_plain_create(statement_sql: &str) -> bool {
    let word = first_keyword(statement_sql);
    if !word.eq_ignore_ascii_case("create") {
        return false;
    }
    let after = word.as_ptr() as usize - statement_sql.as_ptr() as usize + word.len();
    !first_keyword(&statement_sql[after..]).eq_ignore_ascii_case("virtual")
}

/// Whether a statement's text mentions the reserved prefix anywhere (ignoring ASCII case, as
/// SQLite does for names).
pub fn mentions_reserved(statement_sql: &str) -> bool {
    let prefix = RESERVED_PREFIX.as_bytes();
    statement_sql
        .as_bytes()
        .windows(prefix.len())
        .any(|w| w.eq_ignore_ascii_case(prefix))
}

/// Whether `name` starts with `prefix`, ignoring ASCII case as SQLite does for names. Compares
/// bytes: a name may have a multi-byte character where the prefix ends.
fn starts_with_name(name: &str, prefix: &str) -> bool {
    name.as_bytes()
        .get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// Whether a statement may change the schema (`CREATE ...`, `ALTER ...`): the host checks such
/// guest statements after they run, for what the authorizer cannot see (`reserved_ties` in the
/// parent module).
pub fn may_change_schema(statement_sql: &str) -> bool {
    let word = first_keyword(statement_sql);
    word.eq_ignore_ascii_case("create") || word.eq_ignore_ascii_case("alter")
}

/// Statements the authorizer cannot see: VACUUM (including `VACUUM INTO`, which would write a
/// copy of the database anywhere on the host) has no authorizer action code.
pub fn denied_keyword(statement_sql: &str) -> Option<&'static str> {
    let word = first_keyword(statement_sql);
    if word.eq_ignore_ascii_case("vacuum") {
        Some("VACUUM")
    } else {
        None
    }
}

/// The first keyword of a statement, skipping whitespace, comments and empty statements.
pub(super) fn first_keyword(mut sql: &str) -> &str {
    loop {
        // SQLite skips empty statements (a leading `;`) before the one it compiles, but the
        // statement's text starts with them.
        sql = sql.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if let Some(rest) = sql.strip_prefix("--") {
            sql = rest.find('\n').map_or("", |i| &rest[i + 1..]);
        } else if let Some(rest) = sql.strip_prefix("/*") {
            sql = rest.find("*/").map_or("", |i| &rest[i + 2..]);
        } else {
            break;
        }
    }
    let end = sql
        .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .unwrap_or(sql.len());
    &sql[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names() {
        assert!(is_reserved("_do_alarm"));
        assert!(is_reserved("_DO_x"));
        assert!(!is_reserved("_d"));
        assert!(!is_reserved("do_x"));
        assert!(is_statistics("SQLITE_STAT4"));
        // A multi-byte character across the prefix's end (this used to slice a `str` there).
        assert!(!is_statistics("sqlite_staé1"));
    }

    #[test]
    fn plain_creates() {
        assert!(is_plain_create("CREATE TABLE t (x)"));
        assert!(is_plain_create(" /* c */ create temp view v AS SELECT 1"));
        assert!(is_plain_create("CREATE UNIQUE INDEX i ON t (x)"));
        assert!(!is_plain_create("CREATE VIRTUAL TABLE f USING fts5(x)"));
        assert!(!is_plain_create(
            "create /* x */ virtual table f using fts5(x)"
        ));
        assert!(!is_plain_create("ALTER TABLE f RENAME TO _do"));
    }

    #[test]
    fn mentions_of_the_reserved_prefix() {
        assert!(mentions_reserved(
            "CREATE TABLE c (v REFERENCES \"_DO_META\"(value))"
        ));
        assert!(mentions_reserved("alter table t rename to [_Do_x]"));
        assert!(mentions_reserved("CREATE TABLE t (x) -- _do_"));
        assert!(!mentions_reserved(
            "CREATE TABLE IF NOT EXISTS players (id TEXT PRIMARY KEY, name TEXT NOT NULL)"
        ));
        // A doubled quote inside a name is a quote character, not a way to spell the prefix.
        assert!(!mentions_reserved("CREATE TABLE \"_do\"\"_x\" (v)"));
        assert!(!mentions_reserved("_do"));
    }

    #[test]
    fn keywords() {
        assert_eq!(denied_keyword("  vacuum"), Some("VACUUM"));
        assert_eq!(
            denied_keyword("/* x */ -- y\n VACUUM INTO '/tmp/x'"),
            Some("VACUUM")
        );
        assert_eq!(denied_keyword("SELECT 1"), None);
        assert_eq!(denied_keyword("/* unterminated"), None);
        assert!(may_change_schema("-- x\n alter TABLE t RENAME TO u"));
        assert!(may_change_schema(";ALTER TABLE t RENAME TO u"));
        assert!(may_change_schema(" ; /* */ ;\n CREATE TABLE t (x)"));
        assert_eq!(denied_keyword(";; VACUUM"), Some("VACUUM"));
        assert!(may_change_schema("CREATE TABLE t (x)"));
        assert!(!may_change_schema("SELECT 'CREATE'"));
        assert!(!may_change_schema("DROP TABLE t"));
    }
}
