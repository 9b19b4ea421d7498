package dohost

import (
	"fmt"
	"iter"

	sqlWIT "dohost.dev/go/dohost/internal/wit/imports/dohost_object_sql"
)

// pageRows is how many rows to ask the host for per page of a long result (its maximum).
const pageRows = 1000

// SQL is the object's SQLite database (storage.sql); it is Ctx.SQL.
//
// Every statement runs inside the current event's implicit transaction: its writes commit when
// the event succeeds and roll back when it fails, so objects never issue BEGIN or COMMIT.
//
// # Values
//
// SQLite values cross as Go values the way database/sql/driver does it:
//
//	SQLite   result value        parameters accepted
//	NULL     nil                 nil, a nil pointer
//	INTEGER  int64               int, int8...int64, uint...uint64 (up to MaxInt64), bool (0/1)
//	REAL     float64             float32, float64 (NaN is stored as NULL by SQLite)
//	TEXT     string              string
//	BLOB     []byte              []byte (even nil: an empty blob)
//
// Parameters may also be of types defined on these (type PlayerID string) or pointers to them.
type SQL struct {
	// Only the SDK hands these out: host calls are valid only inside an object's handler.
	_ struct{}
}

// Exec runs query with params bound to its ? placeholders and returns its result.
//
// query may hold several statements separated by ';' (each takes as many params as it has
// placeholders); the result is the last statement's. A failed statement returns a
// [*SQLError]; statements before it in query stay applied within the event's transaction.
//
//	_, err := ctx.SQL.Exec("INSERT OR REPLACE INTO kv VALUES (?, ?)", "greeting", "hello")
func (s *SQL) Exec(query string, params ...any) (*Cursor, error) {
	values := make([]sqlWIT.Value, len(params))
	for i, p := range params {
		v, err := toWITValue(p)
		if err != nil {
			return nil, fmt.Errorf("dohost: parameter %d of %q: %w", i+1, query, err)
		}
		values[i] = v
	}
	result := sqlWIT.Exec(query, values)
	if result.IsErr() {
		return nil, sqlError(result.Err())
	}
	set := result.Ok()
	c := &Cursor{
		columns:     set.Columns,
		page:        set.Rows,
		rowsRead:    set.RowsRead,
		rowsWritten: set.RowsWritten,
	}
	if set.More.IsSome() {
		c.more = set.More.Some()
	}
	return c, nil
}

// QueryRow runs query like [SQL.Exec] and returns its first row, for reading with
// [Row.Scan]. As in database/sql, errors are deferred to Scan, which returns [ErrNoRows] when
// there is no row; further rows are ignored.
//
//	var n int64
//	err := ctx.SQL.QueryRow("SELECT count(*) FROM players").Scan(&n)
func (s *SQL) QueryRow(query string, params ...any) *Row {
	c, err := s.Exec(query, params...)
	if err != nil {
		return &Row{err: err}
	}
	defer c.Close()
	row, ok := c.Next()
	if !ok {
		return &Row{err: ErrNoRows}
	}
	return row
}

// DatabaseSize is the current size of the database in bytes.
func (s *SQL) DatabaseSize() uint64 {
	return sqlWIT.DatabaseSize()
}

// Cursor is the result of [SQL.Exec]: column names, counters, and the rows.
//
// Read the rows with Next, All, One or Raw; each row is handed out once. Long results arrive in
// pages that the cursor fetches from the host as needed. Reading the last row, or Close,
// releases what the host holds for the result.
type Cursor struct {
	columns               []string
	page                  [][]sqlWIT.Value
	more                  *sqlWIT.Cursor
	rowsRead, rowsWritten uint64
}

// Columns are the column names of the last statement, in order (empty for statements without
// results).
func (c *Cursor) Columns() []string { return c.columns }

// RowsRead is how many rows SQLite visited (returned plus stepped over by scans), over all
// statements of the query.
func (c *Cursor) RowsRead() uint64 { return c.rowsRead }

// RowsWritten is how many rows were inserted, updated or deleted, over all statements of the
// query.
func (c *Cursor) RowsWritten() uint64 { return c.rowsWritten }

// Next returns the next row; ok is false when there are no more.
func (c *Cursor) Next() (row *Row, ok bool) {
	values, ok := c.nextValues()
	if !ok {
		return nil, false
	}
	return &Row{columns: c.columns, values: values}, true
}

// All iterates over the remaining rows:
//
//	for row := range cursor.All() { ... }
func (c *Cursor) All() iter.Seq[*Row] {
	return func(yield func(*Row) bool) {
		for {
			row, ok := c.Next()
			if !ok || !yield(row) {
				return
			}
		}
	}
}

// Raw iterates over the remaining rows as plain values, in column order (see [SQL] for their
// Go types).
func (c *Cursor) Raw() iter.Seq[[]any] {
	return func(yield func([]any) bool) {
		for {
			values, ok := c.nextValues()
			if !ok || !yield(values) {
				return
			}
		}
	}
}

// One returns the only row of the result: [ErrNoRows] if there is none, [ErrManyRows] if
// there are several.
func (c *Cursor) One() (*Row, error) {
	defer c.Close()
	row, ok := c.Next()
	if !ok {
		return nil, ErrNoRows
	}
	if _, more := c.nextValues(); more {
		return nil, ErrManyRows
	}
	return row, nil
}

// Close releases the rows the host still holds for this result; Next returns no more rows.
// Reading the last row closes the cursor too.
func (c *Cursor) Close() {
	c.page = nil
	if c.more != nil {
		c.more.Drop()
		c.more = nil
	}
}

func (c *Cursor) nextValues() ([]any, bool) {
	for len(c.page) == 0 {
		if c.more == nil {
			return nil, false
		}
		c.page = c.more.NextPage(pageRows)
		if len(c.page) == 0 {
			c.Close()
			return nil, false
		}
	}
	wit := c.page[0]
	c.page = c.page[1:]
	values := make([]any, len(wit))
	for i, v := range wit {
		values[i] = fromWITValue(v)
	}
	return values, true
}

// Row is one result row: its values and the result's column names.
type Row struct {
	columns []string
	values  []any
	// err is a failure deferred from [SQL.QueryRow] to Scan.
	err error
}

// Columns are the column names, in order.
func (r *Row) Columns() []string { return r.columns }

// Values are the row's values in column order (see [SQL] for their Go types).
func (r *Row) Values() []any { return r.values }

// Get is the value of the column named name; ok is false if there is no such column.
func (r *Row) Get(name string) (value any, ok bool) {
	for i, c := range r.columns {
		if c == name && i < len(r.values) {
			return r.values[i], true
		}
	}
	return nil, false
}

// Map is the row as a map from column name to value, for example to encode it as JSON
// (a blob becomes base64, as encoding/json does with []byte).
func (r *Row) Map() map[string]any {
	m := make(map[string]any, len(r.values))
	for i, v := range r.values {
		if i < len(r.columns) {
			m[r.columns[i]] = v
		}
	}
	return m
}

// Err is the error [SQL.QueryRow] deferred to Scan, if any.
func (r *Row) Err() error { return r.err }

// Scan copies the row's values into dest, one pointer per column, converting them:
//
//   - *int64, *int, *int32, ... and *uint64, ...: INTEGER (checked against the type's range)
//   - *float64, *float32: REAL or INTEGER
//   - *bool: INTEGER (0 is false)
//   - *string: TEXT or BLOB; *[]byte: BLOB or TEXT (a copy)
//   - *any: any value as is (nil for NULL)
//   - a pointer to a pointer (**string, **int64, ...): nil for NULL, else as above
//
// NULL into any other type is an error, as is a value that does not convert. Types defined on
// these (type PlayerID string) work too.
func (r *Row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	if len(dest) != len(r.values) {
		return fmt.Errorf("dohost: Scan got %d destinations for a row of %d columns", len(dest), len(r.values))
	}
	for i, d := range dest {
		if err := scanValue(r.values[i], d); err != nil {
			name := "?"
			if i < len(r.columns) {
				name = r.columns[i]
			}
			return fmt.Errorf("dohost: column %d (%s): %w", i, name, err)
		}
	}
	return nil
}

func fromWITValue(v sqlWIT.Value) any {
	switch v.Tag() {
	case sqlWIT.Value_Integer:
		return v.Integer()
	case sqlWIT.Value_Real:
		return v.Real()
	case sqlWIT.Value_Text:
		return v.Text()
	case sqlWIT.Value_Blob:
		if b := v.Blob(); b != nil {
			return b
		}
		return []byte{} // an empty blob is not NULL
	default:
		return nil
	}
}
