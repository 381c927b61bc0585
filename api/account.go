package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/myopenclaw/mocd/api/wire"
	"github.com/myopenclaw/mocd/plan"
	"github.com/myopenclaw/mocd/store"
)

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
	c.JSON(http.StatusOK, wire.Account{
		ID: p.AccountID, Email: p.Email, Plan: p.Plan,
		InstanceLimit: l.Instances, InstancesUsed: used,
		RateLimits: wire.RateLimits{
			KeyPerMinute:     l.KeyPerMinute.Limit,
			KeyPerHour:       l.KeyPerHour.Limit,
			AccountPerMinute: l.AccountPerMin.Limit,
		},
	})
	return nil
}
