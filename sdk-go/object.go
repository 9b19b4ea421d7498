package dohost

import (
	"errors"
	"fmt"
	"time"

	alarmExport "dohost.dev/go/dohost/internal/wit/exports/export_dohost_object_alarm_handler"
	handlerExport "dohost.dev/go/dohost/internal/wit/exports/export_dohost_object_handler"
	alarmWIT "dohost.dev/go/dohost/internal/wit/imports/dohost_object_alarm_handler"
	httpWIT "dohost.dev/go/dohost/internal/wit/imports/dohost_object_http_types"
	witTypes "go.bytecodealliance.org/pkg/wit/types"

	// The component's exports (//go:wasmexport functions); linked in through this import.
	_ "dohost.dev/go/dohost/internal/wit/exports/wit_exports"
)

// Object is a durable object: one instance per object ID, handling one event at a time.
//
// Fetch handles an HTTP request. A nil error commits the event's writes and sends the
// response; a non-nil error rolls them back and the host answers 500 with the error's text.
// Answer expected client mistakes (a bad body, an unknown path) with a response such as
// Text(msg).WithStatus(400) or [NotFound] and a nil error.
//
// An object that sets alarms also implements [AlarmHandler].
type Object interface {
	Fetch(req *Request) (*Response, error)
}

// AlarmHandler is implemented by objects that use the alarm ([Ctx.SetAlarm]).
//
// Alarm runs when the alarm fires. A nil error commits and clears the alarm (unless Alarm set
// a new one); an error rolls back and the host retries later with backoff. For an object
// without an Alarm method, a firing alarm does nothing and is cleared.
type AlarmHandler interface {
	Alarm(info AlarmInfo) error
}

// AlarmInfo says why [AlarmHandler.Alarm] is running.
type AlarmInfo struct {
	// ScheduledAt is the time the alarm was set for (millisecond precision).
	ScheduledAt time.Time
	// RetryCount is 0 on the first attempt, then 1, 2, ... on retries after failures.
	RetryCount int
}

// Register makes newObject the constructor of this component's object. Call it once, from an
// init function of package main:
//
//	func init() { dohost.Register(newRoom) }
//
// where newRoom is a func(*dohost.Ctx) (*room, error) and *room implements [Object].
//
// The SDK calls newObject on the first event an instance receives, inside that event's
// transaction: it typically creates the object's tables (CREATE TABLE IF NOT EXISTS ...). If it
// returns an error, that event fails and the next event calls it again. It is called again
// after any event that fails (see the package documentation).
//
// Register panics if called twice: a component holds one object class.
func Register[T Object](newObject func(ctx *Ctx) (T, error)) {
	if constructor != nil {
		panic("dohost: Register called twice; a component exports one object")
	}
	constructor = func(ctx *Ctx) (Object, error) { return newObject(ctx) }
}

var (
	// constructor is the registered object constructor.
	constructor func(*Ctx) (Object, error)
	// current is the instance's object: built by the first event, dropped after a failed one.
	// Events never overlap (the host calls one export at a time, on one thread), so it needs
	// no lock.
	current Object
	// theCtx is the one context; it holds no state of its own.
	theCtx = &Ctx{SQL: &SQL{}}
)

func init() {
	handlerExport.Handle = handleRequest
	alarmExport.Handle = handleAlarm
}

// runEvent runs one event against the object, constructing it first if needed. After a
// failed event the object is dropped: the host rolls back the event's writes, and the next
// event rebuilds the object from the committed state.
func runEvent(event func(Object) error) error {
	if constructor == nil {
		return errors.New("dohost: no object registered: call dohost.Register(newObject) " +
			"from an init function of package main")
	}
	if current == nil {
		object, err := constructor(theCtx)
		if err != nil {
			return fmt.Errorf("constructing the object: %w", err)
		}
		current = object
	}
	if err := event(current); err != nil {
		current = nil
		return err
	}
	return nil
}

func handleRequest(request httpWIT.Request) witTypes.Result[httpWIT.Response, string] {
	req := requestFromWIT(request)
	var resp *Response
	err := runEvent(func(object Object) error {
		var err error
		resp, err = object.Fetch(req)
		if err == nil && resp == nil {
			err = errors.New("dohost: Fetch returned neither a response nor an error")
		}
		return err
	})
	if err != nil {
		return witTypes.Err[httpWIT.Response](err.Error())
	}
	return witTypes.Ok[httpWIT.Response, string](resp.toWIT())
}

func handleAlarm(info alarmWIT.AlarmInfo) witTypes.Result[witTypes.Unit, string] {
	err := runEvent(func(object Object) error {
		handler, ok := object.(AlarmHandler)
		if !ok {
			return nil
		}
		return handler.Alarm(AlarmInfo{
			ScheduledAt: time.UnixMilli(info.ScheduledAt),
			RetryCount:  int(info.RetryCount),
		})
	})
	if err != nil {
		return witTypes.Err[witTypes.Unit](err.Error())
	}
	return witTypes.Ok[witTypes.Unit, string](witTypes.Unit{})
}
