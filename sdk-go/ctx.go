package dohost

import (
	"time"

	alarmWIT "dohost.dev/go/dohost/internal/wit/imports/dohost_object_alarm"
	fetchWIT "dohost.dev/go/dohost/internal/wit/imports/dohost_object_fetch"
	identityWIT "dohost.dev/go/dohost/internal/wit/imports/dohost_object_identity"
)

// Ctx is the object's view of the host: its database, identity, alarm and outbound fetch.
// The SDK passes it to the constructor given to [Register]; keep it (or its SQL) in the object.
type Ctx struct {
	// SQL is the object's SQLite database.
	SQL *SQL
}

// ID is the object's ID: 64 lower-case hex digits, unique per class and host key.
func (c *Ctx) ID() string {
	return identityWIT.Id()
}

// Name is the name the object's ID was derived from; ok is false for an object created from
// a unique ID.
func (c *Ctx) Name() (name string, ok bool) {
	n := identityWIT.Name()
	if n.IsNone() {
		return "", false
	}
	return n.Some(), true
}

// SetAlarm schedules the alarm at at (millisecond precision), replacing any previous one.
//
// Like a write, it takes effect when the current event commits; a time in the past fires as
// soon as possible. The object's [AlarmHandler.Alarm] runs when it fires. It fails with an
// [*AlarmError] for a time before 1970 or after 9999.
//
//	err := ctx.SetAlarm(time.Now().Add(time.Minute))
func (c *Ctx) SetAlarm(at time.Time) error {
	result := alarmWIT.Set(at.UnixMilli())
	if result.IsErr() {
		return alarmError(result.Err())
	}
	return nil
}

// Alarm is the scheduled alarm time, including changes made earlier in this event; ok is
// false when no alarm is set.
func (c *Ctx) Alarm() (at time.Time, ok bool) {
	ms := alarmWIT.Get()
	if ms.IsNone() {
		return time.Time{}, false
	}
	return time.UnixMilli(ms.Some()), true
}

// DeleteAlarm cancels the alarm, if any, when the current event commits.
func (c *Ctx) DeleteAlarm() {
	alarmWIT.Delete()
}

// Fetch sends req through the host's fetch policy and waits for the whole response. Failures
// to get a response are [*FetchError]s; an HTTP error status is a response, not an error.
//
// The object handles no other event while it waits.
//
//	resp, err := ctx.Fetch(dohost.NewRequest("GET", "https://example.com/data.json", nil))
func (c *Ctx) Fetch(req *Request) (*Response, error) {
	result := fetchWIT.Send(req.toWIT())
	if result.IsErr() {
		return nil, fetchError(result.Err())
	}
	return responseFromWIT(result.Ok()), nil
}
