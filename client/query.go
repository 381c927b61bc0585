package client

import (
	"context"
	"fmt"
	"iter"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// encodeQuery turns a parameters struct into a query string: each field
// tagged `query:"name"` that is not its zero value. Slices are
// comma-separated; times are RFC 3339.
func encodeQuery(params any) url.Values {
	q := url.Values{}
	if params == nil {
		return q
	}
	v := reflect.ValueOf(params)
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return q
		}
		v = v.Elem()
	}
	t := v.Type()
	for i := range t.NumField() {
		name := t.Field(i).Tag.Get("query")
		f := v.Field(i)
		if name == "" || f.IsZero() {
			continue
		}
		q.Set(name, queryValue(f))
	}
	return q
}

func queryValue(f reflect.Value) string {
	if t, ok := f.Interface().(time.Time); ok {
		return t.UTC().Format(time.RFC3339Nano)
	}
	switch f.Kind() {
	case reflect.Pointer:
		return queryValue(f.Elem())
	case reflect.String:
		return f.String()
	case reflect.Int, reflect.Int64, reflect.Int32:
		return strconv.FormatInt(f.Int(), 10)
	case reflect.Bool:
		return strconv.FormatBool(f.Bool())
	case reflect.Slice:
		parts := make([]string, f.Len())
		for i := range parts {
			parts[i] = queryValue(f.Index(i))
		}
		return strings.Join(parts, ",")
	}
	panic(fmt.Sprintf("client: no query encoding for %s", f.Type()))
}

// all walks a cursor-paged list from cursor on, one page per request, and
// yields every item; after an error it yields (zero, err) once and stops.
func all[T any](ctx context.Context, cursor string, fetch func(ctx context.Context, cursor string) (*Page[T], error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for {
			page, err := fetch(ctx, cursor)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, item := range page.Data {
				if !yield(item, nil) {
					return
				}
			}
			// An empty page ends the walk too: a feed that always hands out
			// a cursor to resume from (the events feed) has then caught up.
			if len(page.Data) == 0 || page.NextCursor == nil || *page.NextCursor == "" || *page.NextCursor == cursor {
				return
			}
			cursor = *page.NextCursor
		}
	}
}
