package api

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/versions"
)

// errUnknownVersion answers a create or an upgrade naming a version the
// catalog does not list.
func errUnknownVersion(v string) error {
	return newError(http.StatusBadRequest, "unknown_version",
		"version %q is not available; GET /api/v1/versions lists those that are", v)
}

// listVersions answers the operator's catalog (versions package), newest
// release first. A catalog file that stopped parsing keeps serving its
// last good list; the failure is logged for the operator.
func (s *Server) listVersions(c *gin.Context) error {
	list, err := s.opts.Versions.List()
	if err != nil {
		if list == nil {
			return err
		}
		s.log.WarnContext(c.Request.Context(), "versions file unreadable; serving the last good list", slog.Any("error", err))
	}
	if list == nil {
		list = []versions.Version{}
	}
	c.JSON(http.StatusOK, list)
	return nil
}

// resolveVersion answers the catalog entry of name, or of the default
// version when name is nil. Without a catalog (tests of other features)
// an instance gets no version and the worker's configured image.
func (s *Server) resolveVersion(name *string) (versions.Version, error) {
	if name == nil {
		v, _ := s.opts.Versions.Default()
		return v, nil
	}
	v, ok := s.opts.Versions.Lookup(*name)
	if !ok {
		return versions.Version{}, errUnknownVersion(*name)
	}
	return v, nil
}

type upgradeRequest struct {
	Version *string `json:"version"`
}

// upgradeInstance accepts an instance.upgrade: the target version and its
// image are resolved now and kept with the operation, so a later edit of
// the catalog cannot change what an accepted upgrade does. It is queued
// behind earlier operations like every lifecycle call; an upgrade to the
// version the instance already runs succeeds without touching the machine.
func (s *Server) upgradeInstance(c *gin.Context) error {
	instID := c.Param("id")
	if !id.HasPrefix(instID, id.Instance) {
		return errNotFound
	}
	var req upgradeRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Version == nil || *req.Version == "" {
		return badRequest("version is required")
	}
	p := principal(c)
	return s.change(c, func(ctx context.Context, tx *sqlx.Tx) (result, error) {
		inst, err := lockLiveInstance(ctx, tx, p.AccountID, instID)
		if err != nil {
			return result{}, err
		}
		// Checked after the instance, so that another account's id is a
		// 404 whatever version it names.
		v, err := s.resolveVersion(req.Version)
		if err != nil {
			return result{}, err
		}
		op, err := store.InsertTargetOperation(ctx, tx, id.New(id.Operation), p.AccountID, inst, store.OpUpgrade, v.Version, v.Image)
		if err != nil {
			return result{}, err
		}
		if inst.Status != store.StatusRestarting {
			if _, _, err := store.ChangeInstanceStatus(ctx, tx, inst, store.StatusRestarting, op.ID); err != nil {
				return result{}, err
			}
		}
		return s.accepted(op), nil
	})
}
