package api

import (
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/myopenclaw/mocd/api/wire"
	"github.com/myopenclaw/mocd/store"
)

const (
	// defaultUsageDays is the range of GET /usage without from: the last
	// 30 days, today included.
	defaultUsageDays = 30
	// maxUsageDays bounds one answer to about a year of days.
	maxUsageDays = 366
)

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

	out := wire.Usage{From: from.Format(store.DateLayout), To: to.Format(store.DateLayout), Days: make([]wire.UsageDay, days)}
	index := map[string]*wire.UsageDay{}
	for i := range out.Days {
		d := &out.Days[i]
		d.Date = from.Add(time.Duration(i) * 24 * time.Hour).Format(store.DateLayout)
		d.Requests, d.InstanceHours = []wire.KeyRequests{}, []wire.InstanceHours{}
		index[d.Date] = d
	}
	byKey := map[string]*wire.KeyRequests{}
	for _, r := range reqs {
		d, ok := index[r.Day]
		if !ok {
			continue
		}
		d.Requests = append(d.Requests, wire.KeyRequests{KeyID: r.KeyID, KeyName: r.KeyName, Requests: r.Requests})
		out.Totals.Requests += r.Requests
		if k := byKey[r.KeyID]; k != nil {
			k.Requests += r.Requests
		} else {
			byKey[r.KeyID] = &wire.KeyRequests{KeyID: r.KeyID, KeyName: r.KeyName, Requests: r.Requests}
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
		d.InstanceHours = append(d.InstanceHours, wire.InstanceHours{InstanceID: r.InstanceID, Hours: hours(r.Seconds)})
		totalSeconds += r.Seconds
		byInstance[r.InstanceID] += r.Seconds
	}
	out.Totals.InstanceHours = hours(totalSeconds)
	out.Totals.ByKey = []wire.KeyRequests{}
	for _, k := range byKey {
		out.Totals.ByKey = append(out.Totals.ByKey, *k)
	}
	sort.Slice(out.Totals.ByKey, func(i, j int) bool { return out.Totals.ByKey[i].KeyID < out.Totals.ByKey[j].KeyID })
	out.Totals.ByInstance = []wire.InstanceHours{}
	for inst, sec := range byInstance {
		out.Totals.ByInstance = append(out.Totals.ByInstance, wire.InstanceHours{InstanceID: inst, Hours: hours(sec)})
	}
	sort.Slice(out.Totals.ByInstance, func(i, j int) bool {
		return out.Totals.ByInstance[i].InstanceID < out.Totals.ByInstance[j].InstanceID
	})
	c.JSON(http.StatusOK, out)
	return nil
}

// minUsageDate is the earliest day GET /usage answers for.
var minUsageDate = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

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
	// Nothing is counted before mocd existed, and a date before year 1
	// cannot be stored: to=0001-01-01 once made from fall in year 0 and
	// answered 500.
	if from.Before(minUsageDate) || to.Before(minUsageDate) {
		return from, to, badRequest("from and to must be dates from %s on", minUsageDate.Format(store.DateLayout))
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
