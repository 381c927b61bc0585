package flysim

import (
	"net/http"
	"regexp"
	"time"
)

// App is an app as the API answers it.
type App struct {
	ID           string       `json:"id"`
	Name         string       `json:"name"`
	Status       string       `json:"status"`
	Organization Organization `json:"organization"`
}

// Organization names the org an app belongs to.
type Organization struct {
	Name string `json:"name"`
	Slug string `json:"slug"`
}

type app struct {
	App
	createdAt time.Time
	machines  map[string]*machine
	order     []string  // machine ids in creation order, so lists are stable
	volumes   []*Volume // in creation order (volumes.go)
}

// appNameRe is Fly's rule for app names; enforcing it here keeps mocd from
// deriving names that only the emulator would accept.
var appNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (s *Server) createApp(w http.ResponseWriter, r *http.Request) {
	var in struct {
		AppName string `json:"app_name"`
		Name    string `json:"name"`
		OrgSlug string `json:"org_slug"`
		Network string `json:"network"`
	}
	if e := decodeBody(r, &in); e != nil {
		writeError(w, e)
		return
	}
	name := in.AppName
	if name == "" {
		name = in.Name
	}
	if !appNameRe.MatchString(name) {
		writeError(w, errorf(http.StatusUnprocessableEntity, "invalid",
			"invalid app name %q: use 1 to 63 lowercase letters, digits and dashes", name))
		return
	}
	org := in.OrgSlug
	if org == "" {
		org = "personal"
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.apps[name]; ok {
		writeError(w, errorf(http.StatusUnprocessableEntity, "name_taken", "app name %q is already taken", name))
		return
	}
	a := &app{
		App: App{
			ID:           newHex(16),
			Name:         name,
			Status:       "deployed",
			Organization: Organization{Name: org, Slug: org},
		},
		createdAt: time.Now(),
		machines:  make(map[string]*machine),
	}
	s.apps[name] = a
	writeJSON(w, http.StatusCreated, a.App)
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, e := s.appLocked(r)
	if e != nil {
		writeError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, a.App)
}

func (s *Server) deleteApp(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, e := s.appLocked(r)
	if e != nil {
		writeError(w, e)
		return
	}
	for _, id := range a.order {
		m := a.machines[id]
		if m.State != StateDestroyed {
			m.lease = nil
			s.moveLocked(m, "app deleted", StateDestroyed)
		}
	}
	// Fly destroys an app's volumes with it.
	for _, v := range a.volumes {
		v.State = VolumePendingDestroy
		v.AttachedMachineID = nil
	}
	delete(s.apps, a.Name)
	w.WriteHeader(http.StatusAccepted)
}

func (s *Server) appLocked(r *http.Request) (*app, *apiError) {
	name := r.PathValue("app")
	a, ok := s.apps[name]
	if !ok {
		return nil, errorf(http.StatusNotFound, "not_found", "app %q not found", name)
	}
	return a, nil
}
