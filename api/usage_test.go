package api_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
)

type usageAnswer struct {
	From string `json:"from"`
	To   string `json:"to"`
	Days []struct {
		Date     string `json:"date"`
		Requests []struct {
			KeyID    string `json:"key_id"`
			KeyName  string `json:"key_name"`
			Requests int64  `json:"requests"`
		} `json:"requests"`
		InstanceHours []struct {
			InstanceID string  `json:"instance_id"`
			Hours      float64 `json:"hours"`
		} `json:"instance_hours"`
	} `json:"days"`
	Totals struct {
		Requests      int64   `json:"requests"`
		InstanceHours float64 `json:"instance_hours"`
		ByKey         []struct {
			KeyID    string `json:"key_id"`
			Requests int64  `json:"requests"`
		} `json:"by_key"`
		ByInstance []struct {
			InstanceID string  `json:"instance_id"`
			Hours      float64 `json:"hours"`
		} `json:"by_instance"`
	} `json:"totals"`
}

func (e *apiEnv) usage(token, query string) (*response, usageAnswer) {
	e.t.Helper()
	r := e.do("GET", "/api/v1/usage"+query, token, nil)
	var u usageAnswer
	if r.Status == http.StatusOK {
		r.JSON(e.t, &u)
	}
	return r, u
}

// runningInstance gives account an instance that ran from start to end
// (end zero: still running), recorded as the worker records it.
func (e *apiEnv) runningInstance(accountID string, start, end time.Time) string {
	e.t.Helper()
	ctx := context.Background()
	instID := id.New(id.Instance)
	if _, err := store.InsertInstance(ctx, e.st.DB, instID, accountID, "u-"+id.Random(10), "iad", store.StatusRunning); err != nil {
		e.t.Fatal(err)
	}
	events := []struct {
		to string
		at time.Time
	}{{"creating", start.Add(-time.Minute)}, {"running", start}}
	if !end.IsZero() {
		events = append(events, struct {
			to string
			at time.Time
		}{"stopped", end})
	}
	if _, err := e.st.DB.ExecContext(ctx, `UPDATE instances SET created_at = $2 WHERE id = $1`, instID, start.Add(-time.Minute)); err != nil {
		e.t.Fatal(err)
	}
	for _, ev := range events {
		if _, err := e.st.DB.ExecContext(ctx, `INSERT INTO instance_events (id, account_id, instance_id, to_status, created_at)
			VALUES ($1, $2, $3, $4, $5)`, id.New(id.Event), accountID, instID, ev.to, ev.at); err != nil {
			e.t.Fatal(err)
		}
	}
	return instID
}

func day(t time.Time) string { return t.Format(store.DateLayout) }

// TestUsage: requests per key per day as the api counted them, and
// instance-hours split at midnight, for the account that asks only.
func TestUsage(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	acct, reader := e.account("business", apikey.UsageRead)
	ci := e.key(acct, apikey.KeysRead)
	dash := e.key(acct, apikey.KeysRead)
	ciID, _, _ := apikey.Parse(ci)
	dashID, _, _ := apikey.Parse(dash)
	otherAcct, otherTok := e.account("pro", apikey.PresetFull)

	for i := 0; i < 3; i++ {
		e.do("GET", "/api/v1/keys", ci, nil)
	}
	e.do("GET", "/api/v1/keys", dash, nil)
	e.do("GET", "/api/v1/instances", dash, nil) // refused (no scope) but made: it counts
	e.do("GET", "/api/v1/keys", otherTok, nil)
	e.srv.FlushKeyUses(context.Background())

	today := time.Now().UTC().Truncate(24 * time.Hour)
	d2, d1 := today.Add(-48*time.Hour), today.Add(-24*time.Hour)
	// 22:00 two days ago to 03:00 yesterday: 2 h then 3 h.
	inst := e.runningInstance(acct, d2.Add(22*time.Hour), d1.Add(3*time.Hour))
	otherInst := e.runningInstance(otherAcct, d2, time.Time{})

	r, u := e.usage(reader, "?from="+day(d2)+"&to="+day(today))
	if r.Status != 200 {
		t.Fatal(r.Status, string(r.Body))
	}
	if u.From != day(d2) || u.To != day(today) || len(u.Days) != 3 || u.Days[0].Date != day(d2) || u.Days[2].Date != day(today) {
		t.Fatalf("range: %s", r.Body)
	}
	reqs := map[string]int64{}
	for _, k := range u.Days[2].Requests {
		reqs[k.KeyID] = k.Requests
	}
	// The reader's own request is counted too, but flushed only if Run's
	// tick happened to fall inside it.
	readerID, _, _ := apikey.Parse(reader)
	readerCount := reqs[readerID]
	delete(reqs, readerID)
	if len(reqs) != 2 || reqs[ciID] != 3 || reqs[dashID] != 2 || readerCount > 1 {
		t.Errorf("today's requests %v, want %s: 3, %s: 2", reqs, ciID, dashID)
	}
	if len(u.Days[0].Requests) != 0 || len(u.Days[1].Requests) != 0 {
		t.Errorf("requests on earlier days: %s", r.Body)
	}
	hours := func(i int) string { return fmt.Sprint(u.Days[i].InstanceHours) }
	if want := fmt.Sprintf("[{%s 2}]", inst); hours(0) != want {
		t.Errorf("day 1 hours %s, want %s", hours(0), want)
	}
	if want := fmt.Sprintf("[{%s 3}]", inst); hours(1) != want {
		t.Errorf("day 2 hours %s, want %s", hours(1), want)
	}
	if hours(2) != "[]" {
		t.Errorf("today hours %s, want none", hours(2))
	}
	if u.Totals.Requests != 5+readerCount || u.Totals.InstanceHours != 5 || len(u.Totals.ByKey) != 2+int(readerCount) ||
		len(u.Totals.ByInstance) != 1 || u.Totals.ByInstance[0].InstanceID != inst || u.Totals.ByInstance[0].Hours != 5 {
		t.Errorf("totals: %+v", u.Totals)
	}

	// The other account sees its own figures only.
	r, u = e.usage(otherTok, "?from="+day(d2)+"&to="+day(today))
	if r.Status != 200 {
		t.Fatal(r.Status)
	}
	if u.Totals.Requests < 1 || u.Totals.Requests > 2 || len(u.Totals.ByInstance) != 1 || u.Totals.ByInstance[0].InstanceID != otherInst {
		t.Errorf("other account's usage: %s", r.Body)
	}
	// Still running since midnight two days ago: 48 h and a bit by now.
	if h := u.Totals.InstanceHours; h < 48 || h > 48+float64(time.Since(today))/float64(time.Hour)+0.01 {
		t.Errorf("still-running instance: %v hours", h)
	}
}

// TestUsageRange: the default range and the validation of from and to.
func TestUsageRange(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	_, tok := e.account("pro", apikey.UsageRead)
	today := time.Now().UTC().Truncate(24 * time.Hour)

	r, u := e.usage(tok, "")
	if r.Status != 200 || len(u.Days) != 30 || u.To != day(today) || u.From != day(today.Add(-29*24*time.Hour)) {
		t.Fatalf("default range: %d from %s to %s, %d days", r.Status, u.From, u.To, len(u.Days))
	}
	if u.Days[0].Requests == nil || u.Days[0].InstanceHours == nil || u.Totals.ByKey == nil {
		t.Errorf("empty lists must be [], not null: %s", r.Body)
	}
	if r, u := e.usage(tok, "?from=2024-01-01&to=2024-12-31"); r.Status != 200 || len(u.Days) != 366 {
		t.Errorf("a leap year: %d, %d days", r.Status, len(u.Days))
	}
	if r, u := e.usage(tok, "?from=2025-02-28&to=2025-03-01"); r.Status != 200 || len(u.Days) != 2 || u.Days[1].Date != "2025-03-01" {
		t.Errorf("across a month end: %d %+v", r.Status, u.Days)
	}
	if r, u := e.usage(tok, "?to=2025-03-31"); r.Status != 200 || u.From != "2025-03-02" {
		t.Errorf("to alone: %d from %s", r.Status, u.From)
	}
	for _, q := range []string{
		"?from=2025-13-01", "?from=2025-02-30", "?to=yesterday", "?from=2025-01-01T00:00:00Z",
		"?from=2025-03-02&to=2025-03-01",
		"?from=2024-01-01&to=2025-01-01", // 367 days
		"?from=0001-01-01&to=9999-12-31",
	} {
		if r, _ := e.usage(tok, q); r.Status != 400 || r.Code(t) != "invalid_request" {
			t.Errorf("%s: %d %s, want 400 invalid_request", q, r.Status, r.Body)
		}
	}
}

// TestAccount: the plan's limits from the one plan table, and the live
// instances counted as the quota counts them.
func TestAccount(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	acct, tok := e.account("pro", apikey.PresetFull)
	bizAcct, bizTok := e.account("business", apikey.AccountRead)

	for _, sub := range []string{"acct-one", "acct-two", "acct-three"} {
		if r := e.do("POST", "/api/v1/instances", tok, map[string]any{"subdomain": sub}); r.Status != 202 {
			t.Fatal(r.Status, string(r.Body))
		}
	}
	// A deleted instance frees its place.
	if _, err := e.st.DB.ExecContext(context.Background(),
		`UPDATE instances SET status = 'deleted', deleted_at = now() WHERE subdomain = 'acct-three'`); err != nil {
		t.Fatal(err)
	}

	type account struct {
		ID            string `json:"id"`
		Email         string `json:"email"`
		Plan          string `json:"plan"`
		InstanceLimit int    `json:"instance_limit"`
		InstancesUsed int    `json:"instances_used"`
		RateLimits    struct {
			KeyPerMinute     int `json:"key_per_minute"`
			KeyPerHour       int `json:"key_per_hour"`
			AccountPerMinute int `json:"account_per_minute"`
		} `json:"rate_limits"`
	}
	get := func(tok string) account {
		t.Helper()
		r := e.do("GET", "/api/v1/account", tok, nil)
		if r.Status != 200 {
			t.Fatal(r.Status, string(r.Body))
		}
		var a account
		r.JSON(t, &a)
		return a
	}
	a := get(tok)
	stored, err := store.GetAccount(context.Background(), e.st.DB, acct)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != acct || a.Email != stored.Email || a.Plan != "pro" || a.InstanceLimit != 6 || a.InstancesUsed != 2 ||
		a.RateLimits.KeyPerMinute != 120 || a.RateLimits.KeyPerHour != 2000 || a.RateLimits.AccountPerMinute != 300 {
		t.Errorf("pro account: %+v", a)
	}
	b := get(bizTok)
	if b.ID != bizAcct || b.Plan != "business" || b.InstanceLimit != 21 || b.InstancesUsed != 0 ||
		b.RateLimits.KeyPerMinute != 600 || b.RateLimits.KeyPerHour != 10000 || b.RateLimits.AccountPerMinute != 1500 {
		t.Errorf("business account: %+v", b)
	}
}
