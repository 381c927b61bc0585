package api

import (
	"net/http"
	"net/http/httptest"

	"github.com/gin-gonic/gin"
)

// Fingerprint exposes the request fingerprint to the package's external tests.
var Fingerprint = fingerprint

// Authenticate runs the authentication step alone, for benchmarks.
func (s *Server) Authenticate(r *http.Request) error {
	c, _ := gin.CreateTestContext(httptest.NewRecorder())
	c.Request = r
	_, err := s.authenticate(c)
	return err
}
