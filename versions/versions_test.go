package versions_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/versions"
)

const good = `[
 {"version": "1.0.0", "image": "ghcr.io/openclaw/openclaw:1.0.0", "released_at": "2026-01-01T00:00:00Z"},
 {"version": "1.1.0", "image": "ghcr.io/openclaw/openclaw:1.1.0", "default": true, "released_at": "2026-02-01T00:00:00Z"}
]`

func TestParse(t *testing.T) {
	t.Parallel()
	list, err := versions.Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Version != "1.1.0" || !list[0].Default || list[1].Version != "1.0.0" {
		t.Fatalf("list %+v: want newest first", list)
	}
	for name, bad := range map[string]string{
		"not an array":     `{"version": "1"}`,
		"empty":            `[]`,
		"no default":       `[{"version": "1", "image": "i"}]`,
		"two defaults":     `[{"version": "1", "image": "i", "default": true}, {"version": "2", "image": "j", "default": true}]`,
		"duplicate":        `[{"version": "1", "image": "i", "default": true}, {"version": "1", "image": "j"}]`,
		"no image":         `[{"version": "1", "default": true}]`,
		"bad name":         `[{"version": "../1", "image": "i", "default": true}]`,
		"unknown field":    `[{"version": "1", "image": "i", "default": true, "tag": "x"}]`,
		"bad released_at":  `[{"version": "1", "image": "i", "default": true, "released_at": "yesterday"}]`,
		"name starts with": `[{"version": "-1", "image": "i", "default": true}]`,
	} {
		if _, err := versions.Parse([]byte(bad)); err == nil {
			t.Errorf("%s: accepted %s", name, bad)
		}
	}
}

func TestFileIsReReadWhenItChanges(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "versions.json")
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := versions.Load(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := c.Default(); d.Version != "1.1.0" {
		t.Fatalf("default %+v", d)
	}
	// The operator publishes 1.2.0 as the new default.
	next := strings.Replace(good, `"default": true, `, ``, 1)
	next = strings.Replace(next, "\n]", `,
 {"version": "1.2.0", "image": "ghcr.io/openclaw/openclaw:1.2.0", "default": true, "released_at": "2026-03-01T00:00:00Z"}
]`, 1)
	writeLater(t, path, next)
	if d, _ := c.Default(); d.Version != "1.2.0" {
		t.Fatalf("default after the edit %+v", d)
	}
	if _, ok := c.Lookup("1.0.0"); !ok {
		t.Fatal("1.0.0 gone")
	}
	// A broken edit keeps the last good list and says why.
	writeLater(t, path, `[`)
	list, err := c.List()
	if err == nil || len(list) != 3 {
		t.Fatalf("after a broken edit: %d versions, err %v", len(list), err)
	}
	// An invalid file refuses to load.
	if _, err := versions.Load(path, ""); err == nil {
		t.Fatal("loaded a broken file")
	}
}

// writeLater rewrites path with a modification time surely different from
// the previous one, whatever the file system's time resolution.
func writeLater(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	later := fi.ModTime().Add(2 * time.Second)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
}

func TestWithoutAFileTheImageIsTheOneVersion(t *testing.T) {
	t.Parallel()
	c, err := versions.Load("", "ghcr.io/openclaw/openclaw:2026.2.1")
	if err != nil {
		t.Fatal(err)
	}
	list, _ := c.List()
	if len(list) != 1 || list[0].Version != "2026.2.1" || !list[0].Default || list[0].ReleasedAt != nil {
		t.Fatalf("list %+v", list)
	}
	c, _ = versions.Load("", "registry:5000/openclaw")
	if d, _ := c.Default(); d.Version != "latest" {
		t.Fatalf("untagged image: %+v", d)
	}
	var nilCatalog *versions.Catalog
	if list, err := nilCatalog.List(); err != nil || len(list) != 0 {
		t.Fatalf("nil catalog: %v %v", list, err)
	}
}
