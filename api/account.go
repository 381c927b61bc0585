package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/myopenclaw/mocd/plan"
	"github.com/myopenclaw/mocd/store"
)

// accountJSON is the answer of GET /api/v1/account: what automation checks
// before it creates.
type accountJSON struct {
	ID            string         `json:"id"`
	Email         string         `json:"email"`
	Plan          string         `json:"plan"`
	InstanceLimit int            `json:"instance_limit"`
	InstancesUsed int            `json:"instances_used"`
	RateLimits    rateLimitsJSON `json:"rate_limits"`
}

// rateLimitsJSON are the plan's request allowances (plan.Limits).
type rateLimitsJSON struct {
	KeyPerMinute     int `json:"key_per_minute"`
	KeyPerHour       int `json:"key_per_hour"`
	AccountPerMinute int `json:"account_per_minute"`
}

// getAccount answers from what authentication already read (email, plan)
// and one count: the instances that hold quota, counted exactly as the
// quota check of a create counts them.
func (s *Server) getAccount(c *gin.Context) error {
	p := principal(c)
	used, err := store.CountLiveInstances(c.Request.Context(), s.opts.Store.DB, p.AccountID)
	if err != nil {
		return err
	}
	l := plan.Of(p.Plan)
	c.JSON(http.StatusOK, accountJSON{
		ID: p.AccountID, Email: p.Email, Plan: p.Plan,
		InstanceLimit: l.Instances, InstancesUsed: used,
		RateLimits: rateLimitsJSON{
			KeyPerMinute:     l.KeyPerMinute.Limit,
			KeyPerHour:       l.KeyPerHour.Limit,
			AccountPerMinute: l.AccountPerMin.Limit,
		},
	})
	return nil
}
