package flysim

import (
	"net/http"
	"regexp"
	"sort"
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

	// visibleAt is when the app has propagated through Fly's API nodes;
	// before it, only a caller presenting affinity (the cookie set by the
	// create answer) sees the app.
	visibleAt time.Time
	affinity  string
	// unauthorizedUntilVisible makes the app answer 401 instead of 404
	// while it propagates (flyctl's wait-for-app loop retries both).
	unauthorizedUntilVisible bool
}

// AffinityCookie is the cookie Fly's Machines API sets on an app create
// answer, scoped to the app's path, so that the creator's next calls reach
// the node that already knows the app. fly-go's flaps client keeps a cookie
// jar for it (fly-go #224, "add cookie jar to flaps client"; its test names
// the cookie fly_flaps_affinity with Path /v1/apps/{name}).
const AffinityCookie = "fly_flaps_affinity"

// appNameRe is Fly's rule for app names; enforcing it here keeps mocd from
// deriving names that only the emulator would accept.
var appNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// createApp follows the Machines API spec's CreateAppRequest: the name is
// in "name" (flaps sends only that). The legacy "app_name" field is refused
// here: whether the live API still reads it is not documented, so mocd must
// not depend on it. App names are global across Fly: a taken one is 422
// with status name_taken (flaps' IsNameTakenError reads that status).
//
// A new app propagates through Fly's API nodes for a while: until then
// every call naming it answers 404 (flyctl follows each app create with
// flaps.WaitForApp, retrying GET /v1/apps/{name} on 404 and 401 for up to a
// minute) unless the create was sent with ?wait=true (flaps always sends
// it) or the caller presents the affinity cookie. Options.Propagation is
// the window; chaos mode can make an app take longer, wait=true or not.
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
	if in.Name == "" && in.AppName != "" {
		writeError(w, errorf(http.StatusUnprocessableEntity, "invalid",
			`the app name goes in "name"; "app_name" is not part of the Machines API's create app request`))
		return
	}
	name := in.Name
	if !appNameRe.MatchString(name) {
		writeError(w, errorf(http.StatusUnprocessableEntity, "invalid",
			"invalid app name %q: use 1 to 63 lowercase letters, digits and dashes", name))
		return
	}
	if in.OrgSlug == "" {
		writeError(w, errorf(http.StatusBadRequest, "invalid", "org_slug is required"))
		return
	}
	wait := r.URL.Query().Get("wait") == "true"

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.apps[name]; ok {
		writeError(w, errorf(http.StatusUnprocessableEntity, "name_taken", "Validation failed: Name has already been taken"))
		return
	}
	now := time.Now()
	a := &app{
		App: App{
			ID:           newHex(16),
			Name:         name,
			Status:       "deployed",
			Organization: Organization{Name: in.OrgSlug, Slug: in.OrgSlug},
		},
		createdAt: now,
		machines:  make(map[string]*machine),
		visibleAt: now,
		affinity:  newHex(16),
	}
	if !wait {
		a.visibleAt = now.Add(s.propagation)
	}
	if p, ok := r.Context().Value(propagationKey{}).(propagation); ok {
		a.visibleAt = now.Add(p.d)
		a.unauthorizedUntilVisible = p.unauthorized
	} else if slow, unauthorized := s.chaosPropagationLocked(); slow > 0 {
		a.visibleAt = now.Add(max(s.propagation, 0) + slow)
		a.unauthorizedUntilVisible = unauthorized
	}
	s.apps[name] = a
	http.SetCookie(w, &http.Cookie{Name: AffinityCookie, Value: a.affinity, Path: "/v1/apps/" + name, HttpOnly: true})
	writeJSON(w, http.StatusCreated, a.App)
}

// listApps answers GET /v1/apps?org_slug=: the org's apps that have
// propagated, as {"total_apps", "apps"} (flaps.ListApps reads "apps");
// org_slug is required.
func (s *Server) listApps(w http.ResponseWriter, r *http.Request) {
	org := r.URL.Query().Get("org_slug")
	if org == "" {
		writeError(w, errorf(http.StatusBadRequest, "invalid", "org_slug is required"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	apps := []App{}
	for _, a := range s.apps {
		if a.Organization.Slug == org && !now.Before(a.visibleAt) {
			apps = append(apps, a.App)
		}
	}
	sort.Slice(apps, func(i, j int) bool { return apps[i].Name < apps[j].Name })
	writeJSON(w, http.StatusOK, map[string]any{"total_apps": len(apps), "apps": apps})
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

// appLocked finds the app a request names, as the request's API node sees
// it: an app still propagating is unknown unless the request carries its
// affinity cookie.
func (s *Server) appLocked(r *http.Request) (*app, *apiError) {
	name := r.PathValue("app")
	a, ok := s.apps[name]
	if ok && time.Now().Before(a.visibleAt) {
		if c, err := r.Cookie(AffinityCookie); err != nil || c.Value != a.affinity {
			if a.unauthorizedUntilVisible {
				return nil, errorf(http.StatusUnauthorized, "unauthorized", "app %q: not authorized", name)
			}
			ok = false
		}
	}
	if !ok {
		return nil, errorf(http.StatusNotFound, "not_found", "app %q not found", name)
	}
	return a, nil
}
