package openapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/myopenclaw/mocd/client"
	"github.com/myopenclaw/mocd/openapi"
)

// These tests hold the Go SDK (client/, its own module) to the OpenAPI
// document: every object schema has an SDK type with exactly its
// properties (json tags), nullable where the document says null; every
// enum has exactly its values as SDK constants; and every route has an SDK
// method, named after its operationId, that sends that method to that path
// with every documented query parameter and answers the documented type.
// A field, value or route added to the document fails here until the SDK
// has it.

// sdkTypes is the SDK type of each component schema.
var sdkTypes = map[string]reflect.Type{
	"Error":                     reflect.TypeFor[client.APIError](),
	"Instance":                  reflect.TypeFor[client.Instance](),
	"CreateInstanceRequest":     reflect.TypeFor[client.CreateInstanceRequest](),
	"Operation":                 reflect.TypeFor[client.Operation](),
	"OperationError":            reflect.TypeFor[client.OperationError](),
	"OperationPage":             reflect.TypeFor[client.Page[client.Operation]](),
	"InstanceEvent":             reflect.TypeFor[client.InstanceEvent](),
	"InstanceEventPage":         reflect.TypeFor[client.Page[client.InstanceEvent]](),
	"Key":                       reflect.TypeFor[client.Key](),
	"KeyWithToken":              reflect.TypeFor[client.KeyWithToken](),
	"CreateKeyRequest":          reflect.TypeFor[client.CreateKeyRequest](),
	"WebhookEndpoint":           reflect.TypeFor[client.WebhookEndpoint](),
	"WebhookEndpointWithSecret": reflect.TypeFor[client.WebhookEndpointWithSecret](),
	"CreateWebhookRequest":      reflect.TypeFor[client.CreateWebhookRequest](),
	"UpdateWebhookRequest":      reflect.TypeFor[client.UpdateWebhookRequest](),
	"WebhookDelivery":           reflect.TypeFor[client.WebhookDelivery](),
	"WebhookAttempt":            reflect.TypeFor[client.WebhookAttempt](),
	"WebhookDeliveryPage":       reflect.TypeFor[client.Page[client.WebhookDelivery]](),
	"EventEnvelope":             reflect.TypeFor[client.EventEnvelope](),
	"OperationEvent":            reflect.TypeFor[client.OperationEvent](),
	"StatusChangedEvent":        reflect.TypeFor[client.StatusChangedEvent](),
	"TestEvent":                 reflect.TypeFor[client.TestEvent](),
	"AuditEntry":                reflect.TypeFor[client.AuditEntry](),
	"AuditPage":                 reflect.TypeFor[client.Page[client.AuditEntry]](),
	"KeyRequests":               reflect.TypeFor[client.KeyRequests](),
	"InstanceHours":             reflect.TypeFor[client.InstanceHours](),
	"Usage":                     reflect.TypeFor[client.Usage](),
	"Account":                   reflect.TypeFor[client.Account](),
	"Readiness":                 reflect.TypeFor[client.Readiness](),
	"FeedEvent":                 reflect.TypeFor[client.Event](),
	"EventPage":                 reflect.TypeFor[client.Page[client.Event]](),
	"StatusChange":              reflect.TypeFor[client.StatusChange](),
	"Version":                   reflect.TypeFor[client.OpenClawVersion](),
	"UpgradeRequest":            reflect.TypeFor[client.UpgradeRequest](),
	"Secret":                    reflect.TypeFor[client.Secret](),
	"PutSecretRequest":          reflect.TypeFor[client.PutSecretRequest](),
}

// sdkEnums are the SDK's constants for each enum schema.
var sdkEnums = map[string][]string{
	"InstanceStatus": strs(client.InstanceCreating, client.InstanceStarting, client.InstanceRunning, client.InstanceStopping,
		client.InstanceStopped, client.InstanceRestarting, client.InstanceDeleting, client.InstanceDeleted, client.InstanceFailed),
	"OperationType": strs(client.OperationCreate, client.OperationStart, client.OperationStop, client.OperationRestart, client.OperationDelete,
		client.OperationUpgrade, client.OperationConfigure),
	"OperationStatus": strs(client.OperationPending, client.OperationRunning, client.OperationSucceeded, client.OperationFailed, client.OperationCancelled),
	"Scope": strs(client.ScopeInstanceRead, client.ScopeInstanceWrite, client.ScopeInstanceDelete, client.ScopeOperationsRead,
		client.ScopeKeysRead, client.ScopeKeysWrite, client.ScopeWebhooksRead, client.ScopeWebhooksWrite,
		client.ScopeLogsRead, client.ScopeUsageRead, client.ScopeAccountRead),
	"WebhookEventType": strs(client.EventOperationSucceeded, client.EventOperationFailed, client.EventOperationCancelled, client.EventInstanceStatusChanged, client.EventWebhookTest),
	"DeliveryStatus":   strs(client.DeliveryPending, client.DeliverySucceeded, client.DeliveryFailed),
	"ScopePreset":      strs(client.PresetReadOnly, client.PresetWrite, client.PresetFull),
}

// notInSDK are the routes the SDK leaves out, and why.
var notInSDK = map[string]string{
	"getDocs":    "an HTML page for browsers",
	"metrics":    "Prometheus text for scrapers, not part of the API",
	"getMetrics": "Prometheus text for a customer's scraper (Prometheus, Grafana Agent), not for programs",
}

func strs[T ~string](vs ...T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

var loadDoc = sync.OnceValues(openapi.Load)

func doc(t *testing.T) *openapi3.T {
	t.Helper()
	d, err := loadDoc()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSDKTypesMatchTheDocument(t *testing.T) {
	d := doc(t)
	for name, ref := range d.Components.Schemas {
		s := ref.Value
		if len(s.Enum) > 0 {
			continue // TestSDKEnumsMatchTheDocument
		}
		if !s.Type.Is(openapi3.TypeObject) && len(s.Properties) == 0 {
			continue // a scalar alias such as NextCursor
		}
		typ, ok := sdkTypes[name]
		if !ok {
			t.Errorf("schema %s has no SDK type: add one to client/ and to sdkTypes", name)
			continue
		}
		compareSchema(t, name, s, typ)
	}
	for name := range sdkTypes {
		if _, ok := d.Components.Schemas[name]; !ok {
			t.Errorf("sdkTypes names %s, which the document does not have", name)
		}
	}
}

func TestSDKEnumsMatchTheDocument(t *testing.T) {
	d := doc(t)
	for name, ref := range d.Components.Schemas {
		if len(ref.Value.Enum) == 0 {
			continue
		}
		var want []string
		for _, v := range ref.Value.Enum {
			if s, ok := v.(string); ok {
				want = append(want, s)
			}
		}
		got, ok := sdkEnums[name]
		if !ok {
			t.Errorf("enum %s has no SDK constants: add them to client/ and to sdkEnums", name)
			continue
		}
		sort.Strings(want)
		got = slices.Sorted(slices.Values(got))
		if !slices.Equal(got, want) {
			t.Errorf("enum %s: SDK constants %v, document %v", name, got, want)
		}
	}
}

// compareSchema checks that Go type typ encodes exactly schema s.
func compareSchema(t reporter, where string, s *openapi3.Schema, typ reflect.Type) {
	t.Helper()
	s = nonNull(s)
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch {
	case len(s.OneOf) > 1:
		// One of several shapes (a feed event's data): the SDK keeps it
		// raw for the caller to decode by the type beside it, or, in a
		// request, sends one of the shapes (a key's scopes as a list, never
		// the preset alone).
		if typ == reflect.TypeFor[json.RawMessage]() || typ.Kind() == reflect.Interface {
			return
		}
		if strings.HasSuffix(strings.SplitN(where, ".", 2)[0], "Request") && slices.ContainsFunc(s.OneOf, func(alt *openapi3.SchemaRef) bool {
			return matches(alt.Value, typ)
		}) {
			return
		}
		t.Errorf("%s: one of %d shapes in the document, %s in the SDK", where, len(s.OneOf), typ)
	case s.Type.Is(openapi3.TypeArray) || s.Items != nil:
		if typ.Kind() != reflect.Slice {
			t.Errorf("%s: the document has an array, the SDK %s", where, typ)
			return
		}
		compareSchema(t, where+"[]", s.Items.Value, typ.Elem())
	case typ == reflect.TypeFor[json.RawMessage]() && s.Type.Is(openapi3.TypeObject) &&
		(s.AdditionalProperties.Has == nil || *s.AdditionalProperties.Has):
		// An open object kept raw: the OpenAPI document itself.
	case len(s.Properties) > 0:
		if typ.Kind() != reflect.Struct {
			t.Errorf("%s: the document has an object, the SDK %s", where, typ)
			return
		}
		fields := jsonFields(typ)
		for prop, ps := range s.Properties {
			f, ok := fields[prop]
			if !ok {
				t.Errorf("%s.%s: in the document, not in the SDK's %s", where, prop, typ)
				continue
			}
			if nullable(ps.Value) && !canBeNull(f.Type) {
				t.Errorf("%s.%s: nullable in the document, %s in the SDK", where, prop, f.Type)
			}
			compareSchema(t, where+"."+prop, ps.Value, f.Type)
		}
		for name := range fields {
			if _, ok := s.Properties[name]; !ok {
				t.Errorf("%s.%s: in the SDK's %s, not in the document", where, name, typ)
			}
		}
	case s.Type.Is(openapi3.TypeObject):
		// An open object (an event's data, the OpenAPI document itself).
		if typ != reflect.TypeFor[json.RawMessage]() && typ.Kind() != reflect.Map && typ.Kind() != reflect.Interface {
			t.Errorf("%s: an open object in the document, %s in the SDK", where, typ)
		}
	case s.Type.Is(openapi3.TypeString):
		if typ.Kind() != reflect.String && !(s.Format == "date-time" && typ == reflect.TypeFor[time.Time]()) {
			t.Errorf("%s: a string (%s) in the document, %s in the SDK", where, s.Format, typ)
		}
		if s.Format == "date-time" && typ != reflect.TypeFor[time.Time]() {
			t.Errorf("%s: a date-time in the document, %s in the SDK", where, typ)
		}
	case s.Type.Is(openapi3.TypeInteger):
		switch typ.Kind() {
		case reflect.Int, reflect.Int64, reflect.Int32:
		default:
			t.Errorf("%s: an integer in the document, %s in the SDK", where, typ)
		}
	case s.Type.Is(openapi3.TypeNumber):
		if typ.Kind() != reflect.Float64 {
			t.Errorf("%s: a number in the document, %s in the SDK", where, typ)
		}
	case s.Type.Is(openapi3.TypeBoolean):
		if typ.Kind() != reflect.Bool {
			t.Errorf("%s: a boolean in the document, %s in the SDK", where, typ)
		}
	}
}

// reporter is the part of *testing.T that compareSchema reports through.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
}

// mismatches counts what compareSchema would report.
type mismatches int

func (*mismatches) Helper()                 {}
func (m *mismatches) Errorf(string, ...any) { *m++ }

// matches reports whether typ encodes schema s, without saying why not.
func matches(s *openapi3.Schema, typ reflect.Type) bool {
	var m mismatches
	compareSchema(&m, "", s, typ)
	return m == 0
}

// nonNull answers the non-null branch of "oneOf: [null, X]", or s.
func nonNull(s *openapi3.Schema) *openapi3.Schema {
	if alts := slices.Concat(s.OneOf, s.AnyOf); len(alts) > 1 && !slices.ContainsFunc(alts, func(a *openapi3.SchemaRef) bool {
		return a.Value.Type.Is(openapi3.TypeNull)
	}) {
		return s // one of several shapes: see compareSchema
	}
	for _, alt := range slices.Concat(s.OneOf, s.AnyOf) {
		if !alt.Value.Type.Is(openapi3.TypeNull) {
			return alt.Value
		}
	}
	if len(s.AllOf) == 1 {
		return s.AllOf[0].Value
	}
	return s
}

func nullable(s *openapi3.Schema) bool {
	if s.Type.Includes(openapi3.TypeNull) {
		return true
	}
	for _, alt := range slices.Concat(s.OneOf, s.AnyOf) {
		if alt.Value.Type.Is(openapi3.TypeNull) {
			return true
		}
	}
	return false
}

func canBeNull(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface:
		return true
	}
	return false
}

// jsonFields answers a struct's JSON fields by name, embedded structs
// flattened as encoding/json does.
func jsonFields(typ reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	return out
}

// sent is what the SDK sent for one call.
type sent struct {
	method, path string
	query        []string
	body         []byte
}

func TestSDKCoversEveryRoute(t *testing.T) {
	d := doc(t)
	var mu sync.Mutex
	var last sent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var q []string
		for k := range r.URL.Query() {
			q = append(q, k)
		}
		sort.Strings(q)
		mu.Lock()
		last = sent{r.Method, r.URL.EscapedPath(), q, b}
		mu.Unlock()
		// A 400 ends every call at once: no retry, no decoding.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"recorded","code":"recorded"}`)
	}))
	defer srv.Close()
	c, err := client.New("moc_x_y", client.WithBaseURL(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	cv := reflect.ValueOf(c)

	for path, item := range d.Paths.Map() {
		for method, op := range item.Operations() {
			route := method + " " + path
			if why, ok := notInSDK[op.OperationID]; ok {
				t.Logf("%s (%s) is not in the SDK: %s", route, op.OperationID, why)
				continue
			}
			name := string(unicode.ToUpper(rune(op.OperationID[0]))) + op.OperationID[1:]
			m := cv.MethodByName(name)
			if !m.IsValid() {
				t.Errorf("%s: no SDK method %s (operationId %s)", route, name, op.OperationID)
				continue
			}
			args, ids, bodyType := callArgs(t, route, m.Type())
			mu.Lock()
			last = sent{}
			mu.Unlock()
			outs := m.Call(args)
			drain(outs)
			mu.Lock()
			got := last
			mu.Unlock()

			wantPath := path
			for _, id := range ids {
				i, j := strings.Index(wantPath, "{"), strings.Index(wantPath, "}")
				if i < 0 {
					t.Errorf("%s: %s takes more ids than the path has", route, name)
					break
				}
				wantPath = wantPath[:i] + id + wantPath[j+1:]
			}
			if got.method != method || got.path != wantPath {
				t.Errorf("%s: %s sent %s %s, want %s %s", route, name, got.method, got.path, method, wantPath)
			}
			var wantQuery []string
			for _, p := range op.Parameters {
				if p.Value.In == "query" {
					wantQuery = append(wantQuery, p.Value.Name)
				}
			}
			for _, p := range item.Parameters {
				if p.Value.In == "query" {
					wantQuery = append(wantQuery, p.Value.Name)
				}
			}
			sort.Strings(wantQuery)
			if !slices.Equal(got.query, wantQuery) {
				t.Errorf("%s: %s sent the query parameters %v, the document has %v", route, name, got.query, wantQuery)
			}
			checkBody(t, route, op, bodyType)
			checkAnswer(t, route, op, m.Type())
		}
	}
}

// callArgs builds arguments for an SDK method: ids for strings (answered
// in order), every query field of a parameters struct set, a zero request
// body, 5 s for a duration, no options.
func callArgs(t *testing.T, route string, mt reflect.Type) (args []reflect.Value, ids []string, body reflect.Type) {
	t.Helper()
	ctx := context.Background()
	n := mt.NumIn()
	if mt.IsVariadic() {
		n--
	}
	for i := range n {
		at := mt.In(i)
		switch {
		case at == reflect.TypeFor[context.Context]():
			args = append(args, reflect.ValueOf(ctx))
		case at.Kind() == reflect.String:
			id := "id" + string(rune('A'+len(ids)))
			ids = append(ids, id)
			args = append(args, reflect.ValueOf(id).Convert(at))
		case at == reflect.TypeFor[time.Duration]():
			args = append(args, reflect.ValueOf(5*time.Second))
		case at.Kind() == reflect.Struct && hasQueryTags(at):
			args = append(args, filledParams(at))
		case at.Kind() == reflect.Struct:
			body = at
			args = append(args, reflect.Zero(at))
		default:
			t.Fatalf("%s: no argument for %s", route, at)
		}
	}
	return args, ids, body
}

func hasQueryTags(t reflect.Type) bool {
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("query") != "" {
			return true
		}
	}
	return false
}

// filledParams sets every query field to a non-zero value.
func filledParams(t reflect.Type) reflect.Value {
	v := reflect.New(t).Elem()
	for i := range t.NumField() {
		f := v.Field(i)
		switch {
		case f.Type() == reflect.TypeFor[time.Time]():
			f.Set(reflect.ValueOf(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)))
		case f.Kind() == reflect.String:
			f.SetString("x")
		case f.Kind() == reflect.Int:
			f.SetInt(2)
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
			s := reflect.MakeSlice(f.Type(), 1, 1)
			s.Index(0).SetString("x")
			f.Set(s)
		}
	}
	return v
}

// drain runs an iterator an SDK method answered, so that it sends its
// request.
func drain(outs []reflect.Value) {
	if len(outs) == 0 || outs[0].Kind() != reflect.Func {
		return
	}
	yt := outs[0].Type().In(0)
	yield := reflect.MakeFunc(yt, func([]reflect.Value) []reflect.Value {
		return []reflect.Value{reflect.ValueOf(false)}
	})
	outs[0].Call([]reflect.Value{yield})
}

// checkBody holds a method's request type to the route's request schema.
func checkBody(t *testing.T, route string, op *openapi3.Operation, body reflect.Type) {
	t.Helper()
	var schema *openapi3.SchemaRef
	if op.RequestBody != nil {
		if mt := op.RequestBody.Value.Content.Get("application/json"); mt != nil {
			schema = mt.Schema
		}
	}
	switch {
	case schema == nil && body != nil:
		t.Errorf("%s: the SDK sends a %s, the document no body", route, body)
	case schema != nil && body == nil:
		t.Errorf("%s: the document takes a body, the SDK method sends none", route)
	case schema != nil:
		want, ok := sdkTypes[refName(schema.Ref)]
		if !ok || want != body {
			t.Errorf("%s: the SDK sends a %s, the document a %s", route, body, schema.Ref)
		}
	}
}

// checkAnswer holds a method's result type to the route's 2xx answer.
func checkAnswer(t *testing.T, route string, op *openapi3.Operation, mt reflect.Type) {
	t.Helper()
	var status string
	var content openapi3.Content
	for code, r := range op.Responses.Map() {
		if strings.HasPrefix(code, "2") {
			status, content = code, r.Value.Content
		}
	}
	var out reflect.Type
	if mt.NumOut() > 0 && mt.Out(0) != reflect.TypeFor[error]() {
		out = mt.Out(0)
	}
	if len(content) == 0 {
		if out != nil {
			t.Errorf("%s: answers %s with no body, the SDK method returns a %s", route, status, out)
		}
		return
	}
	if ct := content.Get("text/event-stream"); ct != nil {
		if out == nil || out.Kind() != reflect.Func || !strings.HasPrefix(out.String(), "iter.Seq2[") {
			t.Errorf("%s: a stream; the SDK method should answer an iterator, not %v", route, out)
		}
		return
	}
	mtype := content.Get("application/json")
	if mtype == nil || out == nil {
		t.Errorf("%s: answers JSON; the SDK method returns %v", route, out)
		return
	}
	if out.Kind() == reflect.Pointer {
		out = out.Elem()
	}
	s := mtype.Schema
	if s.Ref != "" {
		if want := sdkTypes[refName(s.Ref)]; want != out {
			t.Errorf("%s: answers a %s; the SDK method returns a %s", route, s.Ref, out)
		}
		return
	}
	if s.Value.Items != nil && s.Value.Items.Ref != "" {
		if want := sdkTypes[refName(s.Value.Items.Ref)]; out.Kind() != reflect.Slice || want != out.Elem() {
			t.Errorf("%s: answers an array of %s; the SDK method returns a %s", route, s.Value.Items.Ref, out)
		}
		return
	}
	compareSchema(t, route, s.Value, out)
}

func refName(ref string) string { return strings.TrimPrefix(ref, "#/components/schemas/") }
