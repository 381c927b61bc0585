package worker

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/myopenclaw/mocd/fly"
	"github.com/myopenclaw/mocd/flysim"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

// settleWrites are the machine-changing Fly calls a row may expect, by
// the short name its table uses.
var settleWrites = map[string]string{
	"create":  "POST /v1/apps/{app}/machines",
	"start":   "POST /v1/apps/{app}/machines/{id}/start",
	"stop":    "POST /v1/apps/{app}/machines/{id}/stop",
	"restart": "POST /v1/apps/{app}/machines/{id}/restart",
	"destroy": "DELETE /v1/apps/{app}/machines/{id}",
}

// settleEnd is the state a machine left in a transient state reaches when
// its move finishes: the test moves it there (flysim.SetState, as Fly
// would) once the worker waits on it, so no row depends on timing.
var settleEnd = map[string]string{
	fly.StateStarting:   fly.StateStarted,
	fly.StateStopping:   fly.StateStopped,
	fly.StateRestarting: fly.StateStarted,
}

// TestSettle runs every lifecycle operation the worker carries out with
// settle (and create, which ends in it, and delete, which must not care)
// on a machine in every Fly state, against flysim over real HTTP. Each row
// names the outcome: the instance's final status, the operation's error
// code (empty: it succeeded), the machine's state afterwards, and the
// only machine-changing calls the worker made — so "a start on a started
// machine makes no write call" and "a created machine nobody launches is
// started, not waited on forever" are rows, not comments.
//
// The states a machine only passes through (starting, stopping,
// restarting) finish their move while the worker waits on them. A machine
// destroying or destroyed is no longer the instance's (findMachine skips
// it): settle has nothing to act on.
func TestSettle(t *testing.T) {
	t.Parallel()
	st := testenv.Store(t)
	acct, err := store.CreateAccount(context.Background(), st.DB, "settle@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		status  string // the instance's status carryOut answers
		errCode string // the operation's error code; "" when it succeeded, "retry" when it is to be retried
		machine string // the machine's state afterwards ("" = none left)
		writes  string // the machine-changing calls, space-separated
	}
	running := outcome{store.StatusRunning, "", fly.StateStarted, ""}
	gone := outcome{store.StatusFailed, "no_machine", "", ""}
	// errCode "retry": carryOut answered a transient failure, for the task
	// to be tried again.
	// Nothing finishes a destroy flysim was told is under way: the
	// machine stays destroying, and no longer counts as the instance's.
	goneDestroying := outcome{store.StatusFailed, "no_machine", fly.StateDestroying, ""}
	deleted := outcome{store.StatusDeleted, "", "", "destroy"}
	with := func(o outcome, writes string) outcome { o.writes = writes; return o }
	stopped := func(machine, writes string) outcome {
		return outcome{store.StatusStopped, "", machine, writes}
	}
	// want[op][state]: every operation type settle serves × every state
	// flysim knows (flysim's knownStates, which are Fly's).
	want := map[string]map[string]outcome{
		store.OpStart: {
			fly.StateCreated:    with(running, "start"), // idle: nobody launches it
			fly.StateStarting:   running,                // waited on, not started twice
			fly.StateStarted:    running,                // no write call at all
			fly.StateStopping:   with(running, "start"), // waited until stopped, then started
			fly.StateStopped:    with(running, "start"),
			fly.StateSuspended:  with(running, "start"),
			fly.StateRestarting: running,
			fly.StateFailed:     with(running, "start"),
			fly.StateDestroying: goneDestroying,
			fly.StateDestroyed:  gone,
		},
		store.OpStop: {
			fly.StateCreated:    stopped(fly.StateCreated, ""), // nothing runs: as stopped as it gets
			fly.StateStarting:   stopped(fly.StateStopped, "stop"),
			fly.StateStarted:    stopped(fly.StateStopped, "stop"),
			fly.StateStopping:   stopped(fly.StateStopped, ""),
			fly.StateStopped:    stopped(fly.StateStopped, ""),
			fly.StateSuspended:  stopped(fly.StateSuspended, ""),
			fly.StateRestarting: stopped(fly.StateStopped, "stop"),
			fly.StateFailed:     stopped(fly.StateFailed, ""),
			fly.StateDestroying: goneDestroying,
			fly.StateDestroyed:  gone,
		},
		store.OpRestart: {
			fly.StateCreated:    with(running, "start"), // a machine not running is started, not restarted
			fly.StateStarting:   with(running, "restart"),
			fly.StateStarted:    with(running, "restart"),
			fly.StateStopping:   with(running, "start"),
			fly.StateStopped:    with(running, "start"),
			fly.StateSuspended:  with(running, "start"),
			fly.StateRestarting: with(running, "restart"), // someone else's restart is not ours
			fly.StateFailed:     with(running, "start"),
			fly.StateDestroying: goneDestroying,
			fly.StateDestroyed:  gone,
		},
		// A create resumed after a crash finds the machine it made and
		// brings it up; one that is gone is replaced, one being destroyed
		// once the destroy has freed its name.
		store.OpCreate: {
			fly.StateCreated:    with(running, "start"),
			fly.StateStarting:   running,
			fly.StateStarted:    running,
			fly.StateStopping:   with(running, "start"),
			fly.StateStopped:    with(running, "start"),
			fly.StateSuspended:  with(running, "start"),
			fly.StateRestarting: running,
			fly.StateFailed:     with(running, "start"),
			fly.StateDestroying: {"", "retry", fly.StateDestroying, "create"}, // its name frees once the destroy ends
			fly.StateDestroyed:  with(running, "create"),
		},
		// Delete destroys whatever is there; one already on its way out
		// is left to finish, and the delete retried.
		store.OpDelete: {
			fly.StateCreated:    deleted,
			fly.StateStarting:   deleted,
			fly.StateStarted:    deleted,
			fly.StateStopping:   deleted,
			fly.StateStopped:    deleted,
			fly.StateSuspended:  deleted,
			fly.StateRestarting: deleted,
			fly.StateFailed:     deleted,
			fly.StateDestroying: {"", "retry", fly.StateDestroying, ""}, // its volume frees once the destroy ends
			fly.StateDestroyed:  with(deleted, ""),
		},
	}
	states := []string{fly.StateCreated, fly.StateStarting, fly.StateStarted, fly.StateStopping, fly.StateStopped,
		fly.StateSuspended, fly.StateRestarting, fly.StateFailed, fly.StateDestroying, fly.StateDestroyed}
	for _, opType := range []string{store.OpCreate, store.OpStart, store.OpStop, store.OpRestart, store.OpDelete} {
		for _, state := range states {
			exp, ok := want[opType][state]
			if !ok {
				t.Fatalf("no row for %s on a %s machine", opType, state)
			}
			t.Run(opType+"/"+state, func(t *testing.T) {
				t.Parallel()
				runSettleRow(t, st, acct.ID, opType, state, exp.status, exp.errCode, exp.machine, exp.writes)
			})
		}
	}
}

// newTestWorker is a Worker of st against its own flysim over real HTTP,
// for tests of one of its steps; name tags its token and image.
func newTestWorker(t *testing.T, st *store.Store, name string) (*Worker, *flysim.Server) {
	t.Helper()
	sim := flysim.New(flysim.Options{})
	srv := httptest.NewServer(sim)
	t.Cleanup(func() { srv.Close(); sim.Close() })
	return &Worker{
		st:      st,
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		fly:     fly.New(fly.Options{BaseURL: srv.URL, Token: name, MaxRetries: -1}),
		opts:    Options{Image: "registry.fly.io/openclaw:" + name, FlyOrg: "personal", LeaseTTL: DefaultLeaseTTL},
		metrics: newMetrics(prometheus.NewRegistry()),
	}, sim
}

// createdInstance is a new instance of the account whose create w has
// carried out: its app and started machine exist and are recorded.
func createdInstance(t *testing.T, w *Worker, accountID string) store.Instance {
	t.Helper()
	ctx := context.Background()
	instID := id.New(id.Instance)
	inst, err := store.InsertInstance(ctx, w.st.DB, instID, accountID, strings.ToLower(instID), "iad", store.StatusCreating)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.create(ctx, inst); err != nil {
		t.Fatalf("setting up the machine: %v", err)
	}
	if inst, err = store.InstanceByID(ctx, w.st.DB, instID); err != nil {
		t.Fatal(err)
	}
	return inst
}

// runSettleRow makes an instance with a started machine, forces the
// machine into state, carries out an operation of opType and checks the
// outcome.
func runSettleRow(t *testing.T, st *store.Store, accountID, opType, state, status, errCode, machine, writes string) *flysim.Server {
	t.Helper()
	ctx := context.Background()
	w, sim := newTestWorker(t, st, "settle")
	inst := createdInstance(t, w, accountID)
	instID := inst.ID
	app, machineID := AppName(instID), deref(inst.FlyMachineID)
	if err := sim.SetState(app, machineID, state); err != nil {
		t.Fatal(err)
	}
	sim.ResetCalls()

	// A transient state finishes its move once the worker waits on it.
	stop, moved := make(chan struct{}), make(chan struct{})
	if end, ok := settleEnd[state]; ok {
		go func() {
			defer close(moved)
			for sim.Calls("GET", "/v1/apps/{app}/machines/{id}/wait") == 0 {
				select {
				case <-stop:
					return // the operation never waited
				case <-time.After(5 * time.Millisecond):
				}
			}
			if err := sim.SetState(app, machineID, end); err != nil {
				t.Error(err)
			}
		}()
	} else {
		close(moved)
	}

	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	gotStatus, opErr, err := w.carryOut(octx, store.Operation{ID: id.New(id.Operation), Type: opType, InstanceID: instID}, inst)
	close(stop)
	<-moved
	if err != nil {
		// A transient failure: the task is retried later.
		gotStatus, opErr = "", &store.OperationError{Code: "retry", Message: err.Error()}
	}
	gotCode := ""
	if opErr != nil {
		gotCode = opErr.Code
	}
	if gotStatus != status || gotCode != errCode {
		t.Errorf("status %q, error %q (%v); want status %q, error %q", gotStatus, gotCode, opErr, status, errCode)
	}

	// The instance's machine afterwards: the one it records now (a create
	// may have replaced it), live.
	gotMachine := ""
	if now, err := store.InstanceByID(ctx, st.DB, instID); err != nil {
		t.Fatal(err)
	} else if m, ok := sim.Machine(app, deref(now.FlyMachineID)); ok && m.State != fly.StateDestroyed {
		gotMachine = m.State
	}
	if gotMachine != machine {
		t.Errorf("machine %q afterwards, want %q", gotMachine, machine)
	}

	var got []string
	for _, name := range []string{"create", "start", "stop", "restart", "destroy"} {
		route := strings.SplitN(settleWrites[name], " ", 2)
		for range sim.Calls(route[0], route[1]) {
			got = append(got, name)
		}
	}
	if strings.Join(got, " ") != writes {
		t.Errorf("write calls %q, want %q", strings.Join(got, " "), writes)
	}
	return sim
}

// TestSettleTrustsItsWait: a change that moves a settled machine out of
// the state wanted (a start of a stopped machine, a stop or a restart of a
// started one) ends when Fly's wait for that state answers 200. The
// calls it makes are the look before acting, the lease around the write,
// the write and the wait: five, with no read of the machine after the
// wait (it would tell nothing the wait's 200 did not).
func TestSettleTrustsItsWait(t *testing.T) {
	t.Parallel()
	st := testenv.Store(t)
	acct, err := store.CreateAccount(context.Background(), st.DB, "settle-wait@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ opType, state, status, machine, write string }{
		{store.OpStart, fly.StateStopped, store.StatusRunning, fly.StateStarted, "start"},
		{store.OpStop, fly.StateStarted, store.StatusStopped, fly.StateStopped, "stop"},
		{store.OpRestart, fly.StateStarted, store.StatusRunning, fly.StateStarted, "restart"},
	} {
		t.Run(c.opType, func(t *testing.T) {
			t.Parallel()
			sim := runSettleRow(t, st, acct.ID, c.opType, c.state, c.status, "", c.machine, c.write)
			for _, call := range []struct {
				route string
				want  int
			}{
				{"GET /v1/apps/{app}/machines/{id}", 1},
				{"POST /v1/apps/{app}/machines/{id}/lease", 1},
				{settleWrites[c.write], 1},
				{"DELETE /v1/apps/{app}/machines/{id}/lease", 1},
				{"GET /v1/apps/{app}/machines/{id}/wait", 1},
			} {
				route := strings.SplitN(call.route, " ", 2)
				if n := sim.Calls(route[0], route[1]); n != call.want {
					t.Errorf("%s: %d calls, want %d", call.route, n, call.want)
				}
			}
		})
	}
}
