package api

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/myopenclaw/mocd/plan"
	"github.com/myopenclaw/mocd/ratelimit"
	"github.com/myopenclaw/mocd/store"
)

// The customer metrics feed: GET /api/v1/metrics answers the account's
// instances and headroom in the Prometheus text format, so that a
// Prometheus or Grafana Agent scrape job with a bearer token replaces the
// polling script a dashboard would otherwise need. It costs one Postgres
// statement (store.InstanceMetrics) and counts against the rate limits like
// any call. Series are the account's alone: labels come from its own rows
// (subdomains are DNS labels, regions a fixed list), never from the request.

// instanceStatuses are every status an instance can show: the status
// family has one series per status, 1 for the current one (as
// kube-state-metrics does), so a dashboard can stack them.
var instanceStatuses = []string{store.StatusCreating, store.StatusStarting, store.StatusRunning,
	store.StatusStopping, store.StatusStopped, store.StatusRestarting, store.StatusDeleting, store.StatusFailed}

// feedContentType is the Prometheus text exposition format.
var feedContentType = expfmt.NewFormat(expfmt.TypeTextPlain)

// ctxRateLimit holds the request's rate-limit Result, which the feed
// reports as headroom.
const ctxRateLimit = "mocd.ratelimit"

func (s *Server) metricsFeed(c *gin.Context) error {
	p := principal(c)
	now := time.Now().UTC()
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	rows, err := store.InstanceMetrics(c.Request.Context(), s.opts.Store.DB, p.AccountID, month, now)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		reg.MustRegister(g)
		return g
	}
	inst := []string{"instance_id", "subdomain", "region"}
	status := gauge("moc_instance_status", "1 for the instance's current status, 0 for the others.", append(inst, "status")...)
	up := gauge("moc_instance_up", "1 when the instance is running, 0 otherwise.", inst...)
	hours := gauge("moc_instance_running_hours_month", "Hours the instance spent running this UTC calendar month (instance-hours), up to now.", inst...)
	lastOp := gauge("moc_instance_last_operation_success", "1 when the instance's last finished operation succeeded, 0 when it failed or was cancelled; labelled with its type and status.", append(inst, "type", "status")...)
	lastDur := gauge("moc_instance_last_operation_duration_seconds", "Start-to-finish time of the instance's last finished operation.", append(inst, "type", "status")...)
	used := gauge("moc_account_instances", "Instances that count against the quota (every instance not deleted).")
	limit := gauge("moc_account_instance_limit", "The plan's instance quota.")
	rlLimit := gauge("moc_account_ratelimit_limit", "Requests the rate-limit policy allows per window.", "policy")
	rlRemaining := gauge("moc_account_ratelimit_remaining", "Requests left in the policy's window after this scrape.", "policy")
	rlReset := gauge("moc_account_ratelimit_reset_seconds", "Seconds until the policy's window is full again.", "policy")

	for _, r := range rows {
		l := []string{r.ID, r.Subdomain, r.Region}
		for _, st := range instanceStatuses {
			status.WithLabelValues(append(l, st)...).Set(b2f(st == r.Status))
		}
		up.WithLabelValues(l...).Set(b2f(r.Status == store.StatusRunning))
		hours.WithLabelValues(l...).Set(r.RunningSeconds / 3600)
		if r.LastOpType != nil && r.LastOpStatus != nil {
			ol := append(l, *r.LastOpType, *r.LastOpStatus)
			lastOp.WithLabelValues(ol...).Set(b2f(*r.LastOpStatus == store.OpSucceeded))
			if r.LastOpSeconds != nil {
				lastDur.WithLabelValues(ol...).Set(*r.LastOpSeconds)
			}
		}
	}
	used.WithLabelValues().Set(float64(len(rows)))
	limit.WithLabelValues().Set(float64(plan.Of(p.Plan).Instances))
	if v, ok := c.Get(ctxRateLimit); ok {
		for _, lr := range v.(ratelimit.Result).Limits {
			rlLimit.WithLabelValues(lr.Name).Set(float64(lr.Rate))
			rlRemaining.WithLabelValues(lr.Name).Set(float64(lr.Remaining))
			rlReset.WithLabelValues(lr.Name).Set(lr.ResetAfter.Seconds())
		}
	}

	fams, err := reg.Gather()
	if err != nil {
		return err
	}
	c.Status(http.StatusOK)
	c.Header("Content-Type", string(feedContentType))
	c.Header("Cache-Control", "no-store")
	enc := expfmt.NewEncoder(c.Writer, feedContentType)
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			return nil // the status is sent; the scraper sees a cut body
		}
	}
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
