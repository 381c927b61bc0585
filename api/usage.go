package api

import (
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/store"
)

// Scopes of the logs, usage and account routes.
const (
	scopeUsageRead   = apikey.UsageRead
	scopeAccountRead = apikey.AccountRead
)

const (
	// defaultUsageDays is the range of GET /usage without from: the last
	// 30 days, today included.
	defaultUsageDays = 30
	// maxUsageDays bounds one answer to about a year of days.
	maxUsageDays = 366
)

// usageJSON is the answer of GET /api/v1/usage.
type usageJSON struct {
	From   string         `json:"from"`
	To     string         `json:"to"`
	Days   []usageDayJSON `json:"days"`
	Totals usageTotals    `json:"totals"`
}

// usageDayJSON is one UTC day; every day of the range is listed, with empty
// lists when nothing happened, so that charts need no gap filling.
type usageDayJSON struct {
	Date          string              `json:"date"`
	Requests      []keyRequestsJSON   `json:"requests"`
	InstanceHours []instanceHoursJSON `json:"instance_hours"`
}

type keyRequestsJSON struct {
	KeyID    string `json:"key_id"`
	KeyName  string `json:"key_name"`
	Requests int64  `json:"requests"`
}

type instanceHoursJSON struct {
	InstanceID string  `json:"instance_id"`
	Hours      float64 `json:"hours"`
}

// usageTotals sums the range, overall and per key and per instance.
type usageTotals struct {
	Requests      int64               `json:"requests"`
	InstanceHours float64             `json:"instance_hours"`
	ByKey         []keyRequestsJSON   `json:"by_key"`
	ByInstance    []instanceHoursJSON `json:"by_instance"`
}

// getUsage serves, per UTC day from `from` through `to` (YYYY-MM-DD, both
// inclusive), the API requests of each key and the hours each instance
// spent running, with totals.
func (s *Server) getUsage(c *gin.Context) error {
	now := time.Now().UTC()
	from, to, err := usageRange(c, now)
	if err != nil {
		return err
	}
	days := int(to.Sub(from)/(24*time.Hour)) + 1
	ctx := c.Request.Context()
	accountID := principal(c).AccountID
	reqs, err := store.RequestsByDay(ctx, s.opts.Store.DB, accountID, from.Format(store.DateLayout), to.Format(store.DateLayout))
	if err != nil {
		return err
	}
	running, err := store.RunningByDay(ctx, s.opts.Store.DB, accountID, from, days, now)
	if err != nil {
		return err
	}

	out := usageJSON{From: from.Format(store.DateLayout), To: to.Format(store.DateLayout), Days: make([]usageDayJSON, days)}
	index := map[string]*usageDayJSON{}
	for i := range out.Days {
		d := &out.Days[i]
		d.Date = from.Add(time.Duration(i) * 24 * time.Hour).Format(store.DateLayout)
		d.Requests, d.InstanceHours = []keyRequestsJSON{}, []instanceHoursJSON{}
		index[d.Date] = d
	}
	byKey := map[string]*keyRequestsJSON{}
	for _, r := range reqs {
		d, ok := index[r.Day]
		if !ok {
			continue
		}
		d.Requests = append(d.Requests, keyRequestsJSON{KeyID: r.KeyID, KeyName: r.KeyName, Requests: r.Requests})
		out.Totals.Requests += r.Requests
		if k := byKey[r.KeyID]; k != nil {
			k.Requests += r.Requests
		} else {
			byKey[r.KeyID] = &keyRequestsJSON{KeyID: r.KeyID, KeyName: r.KeyName, Requests: r.Requests}
		}
	}
	// Sums are kept in seconds and rounded once, so the totals are the
	// exact sum rather than a sum of rounded figures.
	var totalSeconds float64
	byInstance := map[string]float64{}
	for _, r := range running {
		d, ok := index[r.Day]
		if !ok {
			continue
		}
		d.InstanceHours = append(d.InstanceHours, instanceHoursJSON{InstanceID: r.InstanceID, Hours: hours(r.Seconds)})
		totalSeconds += r.Seconds
		byInstance[r.InstanceID] += r.Seconds
	}
	out.Totals.InstanceHours = hours(totalSeconds)
	out.Totals.ByKey = []keyRequestsJSON{}
	for _, k := range byKey {
		out.Totals.ByKey = append(out.Totals.ByKey, *k)
	}
	sort.Slice(out.Totals.ByKey, func(i, j int) bool { return out.Totals.ByKey[i].KeyID < out.Totals.ByKey[j].KeyID })
	out.Totals.ByInstance = []instanceHoursJSON{}
	for inst, sec := range byInstance {
		out.Totals.ByInstance = append(out.Totals.ByInstance, instanceHoursJSON{InstanceID: inst, Hours: hours(sec)})
	}
	sort.Slice(out.Totals.ByInstance, func(i, j int) bool {
		return out.Totals.ByInstance[i].InstanceID < out.Totals.ByInstance[j].InstanceID
	})
	c.JSON(http.StatusOK, out)
	return nil
}

// usageRange reads from and to (UTC dates). to defaults to today; from to
// the 30-day range ending at to.
func usageRange(c *gin.Context, now time.Time) (from, to time.Time, err error) {
	to = now.Truncate(24 * time.Hour)
	if v := c.Query("to"); v != "" {
		if to, err = parseDate("to", v); err != nil {
			return from, to, err
		}
	}
	from = to.Add(-(defaultUsageDays - 1) * 24 * time.Hour)
	if v := c.Query("from"); v != "" {
		if from, err = parseDate("from", v); err != nil {
			return from, to, err
		}
	}
	if from.After(to) {
		return from, to, badRequest("from (%s) must not be later than to (%s)", from.Format(store.DateLayout), to.Format(store.DateLayout))
	}
	if days := to.Sub(from)/(24*time.Hour) + 1; days > maxUsageDays {
		return from, to, badRequest("the range covers %d days; at most %d are allowed", days, maxUsageDays)
	}
	return from, to, nil
}

func parseDate(name, v string) (time.Time, error) {
	t, err := time.Parse(store.DateLayout, v)
	if err != nil {
		return t, badRequest("%s must be a date such as 2025-01-31 (YYYY-MM-DD, UTC)", name)
	}
	return t, nil
}

// hours turns seconds into hours, to the microhour (3.6 ms).
func hours(seconds float64) float64 {
	return math.Round(seconds/3600*1e6) / 1e6
}
