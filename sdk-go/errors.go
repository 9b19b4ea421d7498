package dohost

import (
	"errors"

	alarmWIT "dohost.dev/go/dohost/internal/wit/imports/dohost_object_alarm"
	fetchWIT "dohost.dev/go/dohost/internal/wit/imports/dohost_object_fetch"
	sqlWIT "dohost.dev/go/dohost/internal/wit/imports/dohost_object_sql"
)

// Errors of [Cursor.One] and [Row.Scan].
var (
	// ErrNoRows: the query returned no rows where one was expected.
	ErrNoRows = errors.New("dohost: expected one row, got none")
	// ErrManyRows: [Cursor.One] found more than one row.
	ErrManyRows = errors.New("dohost: expected one row, got several")
)

// SQLErrorKind says why a statement failed. Its value is the WIT sql-error case name.
type SQLErrorKind string

// The kinds of [SQLError].
const (
	// The query does not parse, or names a table or column that does not exist.
	SQLSyntax SQLErrorKind = "syntax"
	// A UNIQUE, NOT NULL, CHECK, PRIMARY KEY or FOREIGN KEY constraint failed.
	SQLConstraint SQLErrorKind = "constraint"
	// The database reached the object's size limit, or the disk holding it is full (the
	// message says which); this event's writes will be rolled back even if the handler
	// succeeds.
	SQLDatabaseFull SQLErrorKind = "database-full"
	// A value, statement or result is larger than the host allows.
	SQLTooBig SQLErrorKind = "too-big"
	// The statement is not allowed for objects: ATTACH, transaction control, most PRAGMAs,
	// VACUUM, load_extension, the reserved _do_ tables.
	SQLAccessDenied SQLErrorKind = "access-denied"
	// The parameters do not fit the statement (wrong count, for example).
	SQLInvalidArgument SQLErrorKind = "invalid-argument"
	// Anything else, including a statement interrupted by the CPU time limit.
	SQLOther SQLErrorKind = "other"
)

// SQLError is a failed statement, as returned by [SQL.Exec]:
//
//	var sqlErr *dohost.SQLError
//	if errors.As(err, &sqlErr) && sqlErr.Kind == dohost.SQLConstraint { ... }
type SQLError struct {
	Kind SQLErrorKind
	// Message is SQLite's message.
	Message string
}

func (e *SQLError) Error() string {
	return "sql " + string(e.Kind) + " error: " + e.Message
}

func sqlError(e sqlWIT.SqlError) *SQLError {
	switch e.Tag() {
	case sqlWIT.SqlError_Syntax:
		return &SQLError{SQLSyntax, e.Syntax()}
	case sqlWIT.SqlError_Constraint:
		return &SQLError{SQLConstraint, e.Constraint()}
	case sqlWIT.SqlError_DatabaseFull:
		return &SQLError{SQLDatabaseFull, e.DatabaseFull()}
	case sqlWIT.SqlError_TooBig:
		return &SQLError{SQLTooBig, e.TooBig()}
	case sqlWIT.SqlError_AccessDenied:
		return &SQLError{SQLAccessDenied, e.AccessDenied()}
	case sqlWIT.SqlError_InvalidArgument:
		return &SQLError{SQLInvalidArgument, e.InvalidArgument()}
	default:
		return &SQLError{SQLOther, e.Other()}
	}
}

// FetchErrorKind says why an outbound fetch failed. Its value is the WIT fetch-error case name.
type FetchErrorKind string

// The kinds of [FetchError].
const (
	FetchNotEnabled     FetchErrorKind = "not-enabled"     // the host runs without outbound fetch
	FetchDenied         FetchErrorKind = "denied"          // the host's policy does not allow this destination
	FetchInvalidRequest FetchErrorKind = "invalid-request" // bad URL, method or header
	FetchDNS            FetchErrorKind = "dns"             // the host name did not resolve
	FetchConnect        FetchErrorKind = "connect"         // the connection failed
	FetchTimeout        FetchErrorKind = "timeout"         // no complete response in time
	FetchTooLarge       FetchErrorKind = "too-large"       // the response exceeded the size cap
	FetchOther          FetchErrorKind = "other"           // anything else
)

// FetchError is an outbound request that got no response, as returned by [Ctx.Fetch].
type FetchError struct {
	Kind    FetchErrorKind
	Message string
}

func (e *FetchError) Error() string {
	return "fetch " + string(e.Kind) + ": " + e.Message
}

func fetchError(e fetchWIT.FetchError) *FetchError {
	switch e.Tag() {
	case fetchWIT.FetchError_NotEnabled:
		return &FetchError{FetchNotEnabled, e.NotEnabled()}
	case fetchWIT.FetchError_Denied:
		return &FetchError{FetchDenied, e.Denied()}
	case fetchWIT.FetchError_InvalidRequest:
		return &FetchError{FetchInvalidRequest, e.InvalidRequest()}
	case fetchWIT.FetchError_Dns:
		return &FetchError{FetchDNS, e.Dns()}
	case fetchWIT.FetchError_Connect:
		return &FetchError{FetchConnect, e.Connect()}
	case fetchWIT.FetchError_Timeout:
		return &FetchError{FetchTimeout, e.Timeout()}
	case fetchWIT.FetchError_TooLarge:
		return &FetchError{FetchTooLarge, e.TooLarge()}
	default:
		return &FetchError{FetchOther, e.Other()}
	}
}

// AlarmErrorKind says why setting the alarm failed. Its value is the WIT alarm-error case name.
type AlarmErrorKind string

// The kinds of [AlarmError].
const (
	AlarmInvalidTime AlarmErrorKind = "invalid-time" // before 1970 or after 9999
	AlarmNotEnabled  AlarmErrorKind = "not-enabled"  // the host runs without alarms
)

// AlarmError is a rejected [Ctx.SetAlarm].
type AlarmError struct {
	Kind    AlarmErrorKind
	Message string
}

func (e *AlarmError) Error() string {
	return "alarm " + string(e.Kind) + ": " + e.Message
}

func alarmError(e alarmWIT.AlarmError) *AlarmError {
	if e.Tag() == alarmWIT.AlarmError_InvalidTime {
		return &AlarmError{AlarmInvalidTime, e.InvalidTime()}
	}
	return &AlarmError{AlarmNotEnabled, e.NotEnabled()}
}
