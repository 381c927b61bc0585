package store

import (
	"reflect"
	"strings"
	"testing"
)

// TestOperationFieldsFollowOpCols holds Operation.fields to opCols and
// shownFields to opShownCols: the n-th destination must be the field whose
// db tag names the n-th column, or a hand-scanned operation would carry
// one column's value in another.
func TestOperationFieldsFollowOpCols(t *testing.T) {
	var o Operation
	followed(t, &o, o.fields(), opCols)
	followed(t, &o, o.shownFields(), opShownCols)
}

// TestInstanceFieldsFollowCols holds Instance.fields to instanceCols and
// shownFields to instanceShownCols, as TestOperationFieldsFollowOpCols
// does for operations.
func TestInstanceFieldsFollowCols(t *testing.T) {
	var i Instance
	followed(t, &i, i.fields(), strings.ReplaceAll(instanceCols, "i.", ""))
	followed(t, &i, i.shownFields(), strings.ReplaceAll(instanceShownCols, "i.", ""))
}

// followed fails the test unless dests, destinations in the struct row
// points to, are the fields whose db tags name colList's columns, in order.
func followed(t *testing.T, row any, dests []any, colList string) {
	t.Helper()
	cols := strings.Split(strings.ReplaceAll(colList, "a.", ""), ",")
	if len(dests) != len(cols) {
		t.Fatalf("%d destinations for %d columns (%s)", len(dests), len(cols), colList)
	}
	v := reflect.ValueOf(row).Elem()
	byAddr := map[uintptr]string{}
	for i := range v.NumField() {
		byAddr[v.Field(i).Addr().Pointer()] = v.Type().Field(i).Tag.Get("db")
	}
	for i, c := range cols {
		got := byAddr[reflect.ValueOf(dests[i]).Pointer()]
		if want := strings.TrimSpace(c); got != want {
			t.Errorf("destination %d is the field of column %q, want %q", i, got, want)
		}
	}
}
