package dohost

import (
	"fmt"
	"math"
	"reflect"

	sqlWIT "dohost.dev/go/dohost/internal/wit/imports/dohost_object_sql"
)

// toWITValue converts a query parameter (see [SQL] for the accepted types).
func toWITValue(p any) (sqlWIT.Value, error) {
	switch v := p.(type) { // the common cases, without reflection
	case nil:
		return sqlWIT.MakeValueNull(), nil
	case int64:
		return sqlWIT.MakeValueInteger(v), nil
	case int:
		return sqlWIT.MakeValueInteger(int64(v)), nil
	case float64:
		return sqlWIT.MakeValueReal(v), nil
	case string:
		return sqlWIT.MakeValueText(v), nil
	case []byte:
		return sqlWIT.MakeValueBlob(v), nil
	case bool:
		return sqlWIT.MakeValueInteger(boolInt(v)), nil
	}
	rv := reflect.ValueOf(p)
	switch rv.Kind() {
	case reflect.Pointer:
		if rv.IsNil() {
			return sqlWIT.MakeValueNull(), nil
		}
		return toWITValue(rv.Elem().Interface())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return sqlWIT.MakeValueInteger(rv.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u := rv.Uint()
		if u > math.MaxInt64 {
			return sqlWIT.Value{}, fmt.Errorf("%d does not fit SQLite's 64-bit signed integer", u)
		}
		return sqlWIT.MakeValueInteger(int64(u)), nil
	case reflect.Float32, reflect.Float64:
		return sqlWIT.MakeValueReal(rv.Float()), nil
	case reflect.Bool:
		return sqlWIT.MakeValueInteger(boolInt(rv.Bool())), nil
	case reflect.String:
		return sqlWIT.MakeValueText(rv.String()), nil
	case reflect.Slice:
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			return sqlWIT.MakeValueBlob(rv.Bytes()), nil
		}
	}
	return sqlWIT.Value{}, fmt.Errorf("unsupported type %T: use nil, an integer, a float, "+
		"a bool, a string or []byte (convert times with UnixMilli or Format)", p)
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// scanValue stores a result value (nil, int64, float64, string or []byte) into dest.
func scanValue(value any, dest any) error {
	switch d := dest.(type) { // the common cases, without reflection
	case *any:
		*d = value
		return nil
	case *int64:
		i, err := asInteger(value)
		if err == nil {
			*d = i
		}
		return err
	case *string:
		s, ok := value.(string)
		if b, isBlob := value.([]byte); isBlob {
			s, ok = string(b), true
		}
		if !ok {
			return mismatch(value, dest)
		}
		*d = s
		return nil
	case *float64:
		f, err := asReal(value, dest)
		if err == nil {
			*d = f
		}
		return err
	case *[]byte:
		switch v := value.(type) {
		case nil:
			*d = nil
		case []byte:
			*d = append([]byte{}, v...)
		case string:
			*d = []byte(v)
		default:
			return mismatch(value, dest)
		}
		return nil
	}

	rv := reflect.ValueOf(dest)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("Scan needs a non-nil pointer, got %T", dest)
	}
	target := rv.Elem()
	switch target.Kind() {
	case reflect.Pointer: // **T: nil for NULL
		if value == nil {
			target.SetZero()
			return nil
		}
		fresh := reflect.New(target.Type().Elem())
		if err := scanValue(value, fresh.Interface()); err != nil {
			return err
		}
		target.Set(fresh)
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := asInteger(value)
		if err != nil {
			return err
		}
		if target.OverflowInt(i) {
			return fmt.Errorf("%d overflows %s", i, target.Type())
		}
		target.SetInt(i)
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		i, err := asInteger(value)
		if err != nil {
			return err
		}
		if i < 0 || target.OverflowUint(uint64(i)) {
			return fmt.Errorf("%d overflows %s", i, target.Type())
		}
		target.SetUint(uint64(i))
		return nil
	case reflect.Float32, reflect.Float64:
		f, err := asReal(value, dest)
		if err != nil {
			return err
		}
		target.SetFloat(f)
		return nil
	case reflect.Bool:
		i, err := asInteger(value)
		if err != nil {
			return err
		}
		target.SetBool(i != 0)
		return nil
	case reflect.String:
		var s string
		if err := scanValue(value, &s); err != nil {
			return mismatch(value, dest)
		}
		target.SetString(s)
		return nil
	case reflect.Slice:
		if target.Type().Elem().Kind() == reflect.Uint8 {
			var b []byte
			if err := scanValue(value, &b); err != nil {
				return mismatch(value, dest)
			}
			target.SetBytes(b)
			return nil
		}
	}
	return fmt.Errorf("Scan cannot store into %T", dest)
}

func asInteger(value any) (int64, error) {
	switch v := value.(type) {
	case int64:
		return v, nil
	case nil:
		return 0, errNull
	default:
		return 0, fmt.Errorf("expected an integer, got %s", sqlTypeName(value))
	}
}

func asReal(value any, dest any) (float64, error) {
	switch v := value.(type) {
	case float64:
		return v, nil
	case int64:
		return float64(v), nil
	default:
		return 0, mismatch(value, dest)
	}
}

var errNull = fmt.Errorf("the value is NULL: scan into *any or a pointer to a pointer " +
	"(such as **string) to accept NULL")

func mismatch(value any, dest any) error {
	if value == nil {
		return errNull
	}
	return fmt.Errorf("cannot store %s into %T", sqlTypeName(value), dest)
}

// sqlTypeName is SQLite's name for the type of a result value.
func sqlTypeName(value any) string {
	switch value.(type) {
	case nil:
		return "null"
	case int64:
		return "integer"
	case float64:
		return "real"
	case string:
		return "text"
	case []byte:
		return "blob"
	default:
		return fmt.Sprintf("%T", value)
	}
}
