package api

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/myopenclaw/mocd/api/wire"
	"github.com/myopenclaw/mocd/versions"
)

// TestAnswersEncodeAsEncodingJSON holds marshalJSON to encoding/json's
// bytes for every object the api answers: each filled three ways (zero,
// with plain values, with strings that need escaping, times in another
// zone with nanoseconds, nil and empty slices, maps, raw JSON with
// spaces). A client, an idempotent replay and a webhook consumer see one
// encoding whichever encoder wrote it.
func TestAnswersEncodeAsEncodingJSON(t *testing.T) {
	answers := []any{
		wire.Instance{}, wire.Operation{}, wire.StatusChanged{}, wire.InstanceEvent{}, wire.LogEntry{},
		wire.Key{}, wire.KeyWithToken{}, wire.Endpoint{}, wire.EndpointWithSecret{}, wire.Delivery{},
		wire.Account{}, wire.Usage{}, wire.FeedEvent{}, wire.Page[wire.Operation]{}, wire.Page[wire.Delivery]{},
		errorBody{}, secretJSON{}, testData{}, versions.Version{}, gin.H{},
	}
	for _, a := range answers {
		for _, fill := range []filler{nil, plainFill, awkwardFill} {
			v := reflect.New(reflect.TypeOf(a)).Elem()
			if fill != nil {
				fill.into(v, 0)
			}
			for _, x := range []any{v.Interface(), []any{v.Interface(), v.Interface()}} {
				want, werr := json.Marshal(x)
				got, gerr := marshalJSON(x)
				if string(got) != string(want) || (werr == nil) != (gerr == nil) {
					t.Errorf("%T:\nencoding/json %s (%v)\nmarshalJSON   %s (%v)", a, want, werr, got, gerr)
				}
			}
		}
	}
}

// filler sets every field of a value, recursively, from its values.
type filler []any

var (
	plainFill   = filler{"inst_01abc", int64(42), true, 1.5, time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), json.RawMessage(`{"a":1}`)}
	awkwardFill = filler{"<b>&\"q\"\\ \u2028\u2029 \x00\x1f é 😀 \xff", int64(-1 << 62), false, 1e21,
		time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", 5400)), json.RawMessage(` { "b" : [ 1 , "<&>" ] } `)}
)

func (f filler) into(v reflect.Value, depth int) {
	if depth > 4 {
		return
	}
	switch {
	case v.Type() == reflect.TypeOf(time.Time{}):
		v.Set(reflect.ValueOf(f[4]))
		return
	case v.Type() == reflect.TypeOf(json.RawMessage{}):
		v.Set(reflect.ValueOf(f[5]))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(f[0].(string))
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(f[1].(int64))
	case reflect.Bool:
		v.SetBool(f[2].(bool))
	case reflect.Float64:
		v.SetFloat(f[3].(float64))
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		f.into(p.Elem(), depth+1)
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			f.into(s.Index(i), depth+1)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for _, k := range []string{"zeta", "alpha", "<k>"} {
			e := reflect.New(v.Type().Elem()).Elem()
			if e.Kind() == reflect.Interface {
				e.Set(reflect.ValueOf(f[0]))
			} else {
				f.into(e, depth+1)
			}
			m.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), e)
		}
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				f.into(v.Field(i), depth+1)
			}
		}
	}
}
