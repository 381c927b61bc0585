package e2e

import (
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/myopenclaw/mocd/worker"
)

// accept sends a lifecycle call and checks the 202 shape every one has.
func accept(t *testing.T, sys *System, method, path, token string, body any) Operation {
	t.Helper()
	r := sys.Do(t, method, path, token, body)
	if r.Status != http.StatusAccepted {
		t.Fatalf("%s %s: %d %s", method, path, r.Status, r.Body)
	}
	var op Operation
	r.JSON(t, &op)
	if op.Status != "pending" || !strings.HasPrefix(op.ID, "op_") || op.Error != nil {
		t.Fatalf("%s %s: operation %+v", method, path, op)
	}
	if got := r.Header.Get("Location"); got != "/api/v1/operations/"+op.ID {
		t.Fatalf("Location %q for operation %s", got, op.ID)
	}
	return op
}

func getInstance(t *testing.T, sys *System, token, instID string) Instance {
	t.Helper()
	r := sys.Do(t, http.MethodGet, "/api/v1/instances/"+instID, token, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET instance: %d %s", r.Status, r.Body)
	}
	var inst Instance
	r.JSON(t, &inst)
	return inst
}

func TestLifecycleEndToEnd(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	var instID, machineID string

	step(t, "create", func(t *testing.T) {
		create := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "my-claw", "fly_region": "lhr"})
		if create.Type != "instance.create" {
			t.Fatalf("type %q", create.Type)
		}
		instID = create.InstanceID
		if op := sys.WaitOperation(t, token, create.ID); op.Status != "succeeded" || op.StartedAt == nil || op.FinishedAt == nil {
			t.Fatalf("create finished as %+v", op)
		}
		inst := getInstance(t, sys, token, instID)
		if inst.Status != "running" || inst.Subdomain != "my-claw" || inst.FlyRegion != "lhr" || inst.Plan != "pro" ||
			inst.URL != "https://my-claw.myopenclaw.ai" {
			t.Fatalf("instance after create: %+v", inst)
		}
		machines := sys.MachinesOf(instID)
		if len(machines) != 1 || machines[0].State != "started" || machines[0].Region != "lhr" || machines[0].Config.Image != Image {
			t.Fatalf("flysim machines after create: %+v", machines)
		}
		machineID = machines[0].ID
	})

	for _, st := range []struct {
		call, opType, status, machine string
	}{
		{"stop", "instance.stop", "stopped", "stopped"},
		{"start", "instance.start", "running", "started"},
		{"restart", "instance.restart", "running", "started"},
	} {
		step(t, st.call, func(t *testing.T) {
			op := accept(t, sys, http.MethodPost, "/api/v1/instances/"+instID+"/"+st.call, token, nil)
			if op.Type != st.opType || op.InstanceID != instID {
				t.Fatalf("operation %+v", op)
			}
			if done := sys.WaitOperation(t, token, op.ID); done.Status != "succeeded" {
				t.Fatalf("finished as %+v", done)
			}
			if got := getInstance(t, sys, token, instID).Status; got != st.status {
				t.Fatalf("status %s, want %s", got, st.status)
			}
			m, ok := sys.Flysim.Machine(worker.AppName(instID), machineID)
			if !ok || m.State != st.machine {
				t.Fatalf("machine %s (found: %v), want %s", m.State, ok, st.machine)
			}
		})
	}
	step(t, "one restart call", func(t *testing.T) {
		if n := sys.Flysim.Calls(http.MethodPost, "/v1/apps/{app}/machines/{id}/restart"); n != 1 {
			t.Fatalf("restart calls: %d", n)
		}
	})

	step(t, "start on running makes no write", func(t *testing.T) {
		before := sys.Flysim.Calls(http.MethodPost, "/v1/apps/{app}/machines/{id}/start")
		op := accept(t, sys, http.MethodPost, "/api/v1/instances/"+instID+"/start", token, nil)
		if done := sys.WaitOperation(t, token, op.ID); done.Status != "succeeded" {
			t.Fatalf("start on running: %+v", done)
		}
		if after := sys.Flysim.Calls(http.MethodPost, "/v1/apps/{app}/machines/{id}/start"); after != before {
			t.Fatalf("start on a running instance called Fly's start (%d → %d)", before, after)
		}
	})

	step(t, "delete", func(t *testing.T) {
		del := accept(t, sys, http.MethodDelete, "/api/v1/instances/"+instID, token, nil)
		if del.Type != "instance.delete" {
			t.Fatalf("type %q", del.Type)
		}
		if done := sys.WaitOperation(t, token, del.ID); done.Status != "succeeded" {
			t.Fatalf("delete finished as %+v", done)
		}
		if r := sys.Do(t, http.MethodGet, "/api/v1/instances/"+instID, token, nil); r.Status != http.StatusNotFound {
			t.Fatalf("GET deleted instance: %d %s", r.Status, r.Body)
		}
		if r := sys.Do(t, http.MethodPost, "/api/v1/instances/"+instID+"/start", token, nil); r.Status != http.StatusNotFound {
			t.Fatalf("start deleted instance: %d %s", r.Status, r.Body)
		}
		if len(sys.MachinesOf(instID)) != 0 || len(sys.Flysim.Machines()) != 0 {
			t.Fatalf("flysim still holds %+v", sys.Flysim.Machines())
		}
	})

	step(t, "the events tell the whole story", func(t *testing.T) {
		r := sys.Do(t, http.MethodGet, "/api/v1/instances/"+instID+"/events?limit=200", token, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("events: %d %s", r.Status, r.Body)
		}
		var page struct {
			Data []struct {
				ID          string  `json:"id"`
				InstanceID  string  `json:"instance_id"`
				OperationID *string `json:"operation_id"`
				FromStatus  *string `json:"from_status"`
				ToStatus    string  `json:"to_status"`
			} `json:"data"`
			NextCursor *string `json:"next_cursor"`
		}
		r.JSON(t, &page)
		var story []string
		for i := len(page.Data) - 1; i >= 0; i-- { // newest first
			e := page.Data[i]
			if !strings.HasPrefix(e.ID, "evt_") || e.InstanceID != instID || e.OperationID == nil {
				t.Fatalf("event %+v", e)
			}
			story = append(story, e.ToStatus)
		}
		want := "creating running stopping stopped starting running restarting running starting running deleting deleted"
		if got := strings.Join(story, " "); got != want {
			t.Fatalf("events:\n got %s\nwant %s", got, want)
		}
		if page.NextCursor != nil {
			t.Fatalf("next_cursor %q on the only page", *page.NextCursor)
		}
	})
}

// step runs one step of a saga test as a subtest, so that a failure names
// the step. Every later step builds on this one, so a failed step ends
// the saga rather than let the next ones fail for its reason.
func step(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, f) {
		t.FailNow()
	}
}

// TestSeedClientShapes checks what the seed's own clients rely on: the list
// is a bare JSON array of objects with subdomain, status and fly_region, as
// `jq '.[] | {subdomain, status, fly_region}'` and a Python
// `for inst in instances: print(inst['subdomain'], inst['status'])` read it.
func TestSeedClientShapes(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "business")
	for _, sub := range []string{"alpha", "beta"} {
		op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": sub})
		sys.WaitOperation(t, token, op.ID)
	}
	r := sys.Do(t, http.MethodGet, "/api/v1/instances", token, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("list: %d %s", r.Status, r.Body)
	}
	var list []map[string]any
	r.JSON(t, &list)
	if len(list) != 2 {
		t.Fatalf("list %s", r.Body)
	}
	for i, want := range []string{"alpha", "beta"} {
		if list[i]["subdomain"] != want || list[i]["status"] != "running" || list[i]["fly_region"] != "iad" {
			t.Fatalf("item %d: %v", i, list[i])
		}
		fields := []string{"id", "subdomain", "status", "plan", "fly_region", "url", "version", "volume_gb", "created_at", "updated_at"}
		for _, k := range fields {
			if _, ok := list[i][k]; !ok {
				t.Fatalf("item %d lacks %q: %v", i, k, list[i])
			}
		}
		if len(list[i]) != len(fields) {
			t.Fatalf("item %d has extra fields: %v", i, list[i])
		}
	}
	if jq, err := exec.LookPath("jq"); err == nil {
		cmd := exec.Command(jq, "-c", ".[] | {subdomain, status, fly_region}")
		cmd.Stdin = strings.NewReader(string(r.Body))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("jq: %v", err)
		}
		want := `{"subdomain":"alpha","status":"running","fly_region":"iad"}` + "\n" +
			`{"subdomain":"beta","status":"running","fly_region":"iad"}` + "\n"
		if string(out) != want {
			t.Fatalf("jq printed\n%s", out)
		}
	}
	if py, err := exec.LookPath("python3"); err == nil {
		script := "import json,sys\ninstances=json.load(sys.stdin)\nfor inst in instances: print(inst['subdomain'], inst['status'])\n"
		cmd := exec.Command(py, "-c", script)
		cmd.Stdin = strings.NewReader(string(r.Body))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("python3: %v", err)
		}
		if string(out) != "alpha running\nbeta running\n" {
			t.Fatalf("python printed\n%s", out)
		}
	}
}
