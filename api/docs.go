package api

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"

	"github.com/myopenclaw/mocd/openapi"
)

// The OpenAPI document and the reference page are public, like /healthz:
// they sit outside the /api/v1 group, so no token, plan, rate limit or
// HTTPS rule applies. Users generate clients from the document and read
// the page before they have a key.

const (
	docsPath         = "/docs"
	redocPath        = "/docs/redoc.standalone.js"
	redocLicensePath = "/docs/redoc.standalone.js.LICENSE.txt"
	openAPIPath      = "/api/v1/openapi.json"
)

// docsPage renders the document with Redoc, served from this binary. The
// <redoc> element is read by the bundle itself, so the page needs no inline
// script.
const docsPage = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MyOpenClaw Developer API reference</title>
<link rel="icon" href="data:,">
<style>body { margin: 0; padding: 0; }</style>
</head>
<body>
<redoc spec-url="` + openAPIPath + `" expand-responses="200,201,202" required-props-first="true" sort-required-props-first="true"></redoc>
<script src="` + redocPath + `"></script>
</body>
</html>
`

// docsCSP lets the page load only what this server serves, so no request
// leaves for another host whatever the bundle contains (it shows a logo
// from Redocly's CDN, for one: the browser refuses it and Redoc hides it).
// Redoc needs inline styles (styled-components), and a blob: worker for
// its search index.
const docsCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// staticAsset is a file served from memory with an ETag, gzipped once for
// clients that accept it.
type staticAsset struct {
	contentType  string
	cacheControl string
	header       http.Header // extra headers
	load         func() ([]byte, error)

	once      sync.Once
	body, gz  []byte
	etag      string
	loadError error
}

func (a *staticAsset) prepare() {
	a.body, a.loadError = a.load()
	if a.loadError != nil {
		return
	}
	sum := sha256.Sum256(a.body)
	a.etag = `"` + hex.EncodeToString(sum[:16]) + `"`
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(a.body)
	zw.Close()
	if buf.Len() < len(a.body) {
		a.gz = buf.Bytes()
	}
}

func (a *staticAsset) serve(c *gin.Context) error {
	a.once.Do(a.prepare)
	if a.loadError != nil {
		return a.loadError
	}
	h := c.Writer.Header()
	for k, vs := range a.header {
		h[k] = vs
	}
	h.Set("Cache-Control", a.cacheControl)
	h.Set("ETag", a.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Add("Vary", "Accept-Encoding")
	if inm := c.GetHeader("If-None-Match"); inm != "" && etagMatch(inm, a.etag) {
		c.Status(http.StatusNotModified)
		c.Writer.WriteHeaderNow()
		return nil
	}
	body := a.body
	if a.gz != nil && acceptsGzip(c.GetHeader("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		body = a.gz
	}
	c.Data(http.StatusOK, a.contentType, body)
	return nil
}

func etagMatch(header, etag string) bool {
	for _, v := range strings.Split(header, ",") {
		v = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), "W/"))
		if v == etag || v == "*" {
			return true
		}
	}
	return false
}

func acceptsGzip(header string) bool {
	for _, v := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(v), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") && strings.ReplaceAll(strings.TrimSpace(params), " ", "") != "q=0" {
			return true
		}
	}
	return false
}

// docsRoutes registers the public document, the reference page and its
// assets on e, outside the authenticated group.
func (s *Server) docsRoutes(e *gin.Engine) {
	spec := &staticAsset{
		contentType: "application/json; charset=utf-8",
		// Revalidated on every use: the document changes with the binary.
		cacheControl: "no-cache",
		// A public description: editors and API tools in other origins may read it.
		header: http.Header{"Access-Control-Allow-Origin": {"*"}},
		load:   openapi.JSON,
	}
	page := &staticAsset{
		contentType:  "text/html; charset=utf-8",
		cacheControl: "no-cache",
		header: http.Header{
			"Content-Security-Policy": {docsCSP},
			"Referrer-Policy":         {"no-referrer"},
			"X-Frame-Options":         {"DENY"},
		},
		load: func() ([]byte, error) { return []byte(docsPage), nil },
	}
	redoc := &staticAsset{
		contentType:  "text/javascript; charset=utf-8",
		cacheControl: "public, max-age=3600",
		load:         func() ([]byte, error) { return openapi.RedocJS(), nil },
	}
	licenses := &staticAsset{
		contentType:  "text/plain; charset=utf-8",
		cacheControl: "public, max-age=3600",
		load:         func() ([]byte, error) { return openapi.RedocLicenses(), nil },
	}
	e.GET(openAPIPath, s.handle(spec.serve))
	e.GET(docsPath, s.handle(page.serve))
	e.GET(redocPath, s.handle(redoc.serve))
	e.GET(redocLicensePath, s.handle(licenses.serve))
}
