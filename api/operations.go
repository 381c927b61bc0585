package api

import (
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/myopenclaw/mocd/api/wire"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
)

func (s *Server) getOperation(c *gin.Context) error {
	opID := c.Param("id")
	if !id.HasPrefix(opID, id.Operation) {
		return errNotFound
	}
	op, err := store.GetOperation(c.Request.Context(), s.opts.Store.DB, principal(c).AccountID, opID)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, wire.NewOperation(op))
	return nil
}

// listOperations serves the account's operations, newest first, optionally
// of one instance and in one status. Another account's instance id gives
// an empty page, exactly as an unknown one does.
func (s *Server) listOperations(c *gin.Context) error {
	f := store.OperationFilter{InstanceID: c.Query("instance_id"), Status: c.Query("status")}
	if f.InstanceID != "" && !id.HasPrefix(f.InstanceID, id.Instance) {
		return badRequest("instance_id must be an instance id (inst_…)")
	}
	if f.Status != "" && !slices.Contains(store.OpStatuses, f.Status) {
		return badRequest("status must be one of %s", strings.Join(store.OpStatuses, ", "))
	}
	scope := "ops|" + f.InstanceID + "|" + f.Status
	limit, before, err := s.pageParams(c, scope)
	if err != nil {
		return err
	}
	rows, err := store.ListOperations(c.Request.Context(), s.opts.Store.DB, principal(c).AccountID, f, before, limit+1)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, newPage(c, s, scope, rows, limit, func(o store.Operation) int64 { return o.Seq }, wire.NewOperation))
	return nil
}
