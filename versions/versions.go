// Package versions is the catalog of OpenClaw versions an instance can run,
// kept by the operator in a JSON file (MOC_VERSIONS_FILE) rather than in
// code: publishing a version is an edit of that file, which every api
// process picks up on its next read without a restart.
//
// The file is a JSON array:
//
//	[
//	  {"version": "2026.1.30", "image": "ghcr.io/openclaw/openclaw:2026.1.30",
//	   "default": true, "released_at": "2026-01-30T00:00:00Z"},
//	  {"version": "2026.1.24", "image": "ghcr.io/openclaw/openclaw:2026.1.24",
//	   "released_at": "2026-01-24T00:00:00Z"}
//	]
//
// Rules: at least one version; versions unique, 1–64 of A-Z a-z 0-9 . _ + -
// starting with a letter or digit; every image non-empty; exactly one
// default; released_at, when given, RFC 3339. The answer lists versions
// newest release first.
package versions

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// Version is one OpenClaw release an instance can run.
type Version struct {
	Version    string     `json:"version"`
	Image      string     `json:"image"`
	Default    bool       `json:"default"`
	ReleasedAt *time.Time `json:"released_at"`
}

// Catalog answers the versions of the operator's file, re-reading it when it
// changes. A nil *Catalog has no versions. It is safe for concurrent use.
type Catalog struct {
	path string

	mu    sync.Mutex
	mtime time.Time
	size  int64
	list  []Version
	err   error // the last re-read's failure, while the previous list is served
}

// versionRe is the shape of a version name: it appears in URLs, logs and
// image tags, so it is kept plain.
var versionRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)

// Load reads the catalog at path and checks it; an invalid file is an error
// (the process refuses to start). With an empty path the catalog is the one
// version image runs: its tag (or "latest") is the version name, so that a
// development setup works with nothing but MOC_INSTANCE_IMAGE.
func Load(path, image string) (*Catalog, error) {
	if path == "" {
		if strings.TrimSpace(image) == "" {
			return nil, errors.New("versions: neither a versions file nor an image")
		}
		return &Catalog{list: []Version{{Version: tagOf(image), Image: image, Default: true}}}, nil
	}
	c := &Catalog{path: path}
	if _, err := c.refresh(); err != nil {
		return nil, err
	}
	return c, nil
}

// Static returns a catalog of the given versions, checked by the file's
// rules: for tests and embedded setups.
func Static(list []Version) (*Catalog, error) {
	if err := check(list); err != nil {
		return nil, err
	}
	return &Catalog{list: sorted(list)}, nil
}

func tagOf(image string) string {
	rest, _, _ := strings.Cut(image, "@")
	if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		if t := rest[i+1:]; versionRe.MatchString(t) {
			return t
		}
	}
	return "latest"
}

// List answers every version, newest release first. When the file changed
// and no longer parses, the previous list is answered along with the error,
// so a bad edit never takes versions away from running processes.
func (c *Catalog) List() ([]Version, error) {
	if c == nil {
		return []Version{}, nil
	}
	return c.refresh()
}

// Lookup finds a version by name.
func (c *Catalog) Lookup(name string) (Version, bool) {
	list, _ := c.List()
	for _, v := range list {
		if v.Version == name {
			return v, true
		}
	}
	return Version{}, false
}

// Default answers the version new instances get when their create names
// none; ok is false when the catalog is empty (a nil catalog).
func (c *Catalog) Default() (Version, bool) {
	list, _ := c.List()
	for _, v := range list {
		if v.Default {
			return v, true
		}
	}
	return Version{}, false
}

// refresh re-reads the file when its modification time or size changed.
func (c *Catalog) refresh() ([]Version, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.path == "" {
		return c.list, nil
	}
	fi, err := os.Stat(c.path)
	if err != nil {
		return c.fail(fmt.Errorf("versions file: %w", err))
	}
	if c.list != nil && fi.ModTime().Equal(c.mtime) && fi.Size() == c.size {
		return c.list, c.err
	}
	raw, err := os.ReadFile(c.path)
	if err != nil {
		return c.fail(fmt.Errorf("versions file: %w", err))
	}
	list, err := Parse(raw)
	if err != nil {
		return c.fail(fmt.Errorf("versions file %s: %w", c.path, err))
	}
	c.list, c.mtime, c.size, c.err = list, fi.ModTime(), fi.Size(), nil
	return c.list, nil
}

func (c *Catalog) fail(err error) ([]Version, error) {
	c.err = err
	if c.list == nil {
		return nil, err
	}
	return c.list, err
}

// Parse reads and checks a versions file's content.
func Parse(raw []byte) ([]Version, error) {
	var list []Version
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&list); err != nil {
		return nil, fmt.Errorf("want a JSON array of {\"version\", \"image\", \"default\", \"released_at\"}: %w", err)
	}
	if err := check(list); err != nil {
		return nil, err
	}
	return sorted(list), nil
}

func check(list []Version) error {
	if len(list) == 0 {
		return errors.New("no versions")
	}
	seen := map[string]bool{}
	defaults := 0
	for i, v := range list {
		switch {
		case !versionRe.MatchString(v.Version):
			return fmt.Errorf("entry %d: version %q must be 1 to 64 of A-Z a-z 0-9 . _ + - starting with a letter or digit", i, v.Version)
		case seen[v.Version]:
			return fmt.Errorf("version %q is listed twice", v.Version)
		case strings.TrimSpace(v.Image) == "":
			return fmt.Errorf("version %q has no image", v.Version)
		}
		seen[v.Version] = true
		if v.Default {
			defaults++
		}
	}
	if defaults != 1 {
		return fmt.Errorf("exactly one version must be the default, found %d", defaults)
	}
	return nil
}

// sorted orders versions newest release first; undated ones last, by name.
func sorted(list []Version) []Version {
	out := make([]Version, len(list))
	copy(out, list)
	for i := range out {
		if out[i].ReleasedAt != nil {
			t := out[i].ReleasedAt.UTC()
			out[i].ReleasedAt = &t
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].ReleasedAt, out[j].ReleasedAt
		switch {
		case a != nil && b != nil && !a.Equal(*b):
			return a.After(*b)
		case (a == nil) != (b == nil):
			return a != nil
		}
		return out[i].Version > out[j].Version
	})
	return out
}
