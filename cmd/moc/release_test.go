package main

import (
	"strings"
	"testing"

	"github.com/myopenclaw/mocd/e2e"
)

// TestVersionsUpgradeAndSecrets: moc lists the versions, creates a pinned
// instance, upgrades it (healthy, then unhealthy: exit 1 with
// upgrade_rolled_back), and sets, lists and deletes a secret read from
// stdin, whose value reaches the machine and never moc's output.
func TestVersionsUpgradeAndSecrets(t *testing.T) {
	t.Parallel()
	sys := e2e.Start(t, e2e.Options{})
	_, token := sys.NewAccount(t, "pro")
	moc := newCLI(t, sys, token)

	var versions []struct {
		Version string `json:"version"`
		Image   string `json:"image"`
		Default bool   `json:"default"`
	}
	moc.ok(&versions, "versions")
	if len(versions) != len(e2e.Versions) {
		t.Fatalf("moc versions: %+v, the catalog has %d", versions, len(e2e.Versions))
	}
	table := moc.run("versions")
	if table.code != 0 || !strings.Contains(table.stdout, "1.0.0") || !strings.Contains(table.stdout, "default") {
		t.Errorf("moc versions as a table: %+v", table)
	}

	var create operation
	moc.ok(&create, "instances", "create", "--subdomain", "pinned-cli", "--version", "1.1.0", "--wait")
	id := create.InstanceID
	var inst struct {
		Version  string `json:"version"`
		VolumeGB int    `json:"volume_gb"`
	}
	moc.ok(&inst, "instances", "get", id)
	if inst.Version != "1.1.0" || inst.VolumeGB <= 0 {
		t.Fatalf("pinned create: %+v", inst)
	}

	var up operation
	moc.ok(&up, "instances", "upgrade", id, "--version", "2.0.0", "--wait")
	if up.Type != "instance.upgrade" || up.Status != "succeeded" {
		t.Fatalf("upgrade --wait printed %+v", up)
	}
	moc.fails(exitUsage, "instances", "upgrade", id)

	sys.Flysim.SetImageHealth(imageOfVersion(t, "1.0.0"), false)
	r := moc.fails(exitFailed, "instances", "upgrade", id, "--version", "1.0.0", "--wait")
	var back operation
	r.JSON(t, &back)
	if back.Error == nil || back.Error.Code != "upgrade_rolled_back" {
		t.Fatalf("an unhealthy upgrade printed %+v", back)
	}
	moc.ok(&inst, "instances", "get", id)
	if inst.Version != "2.0.0" {
		t.Fatalf("after the rollback the instance runs %s, want 2.0.0", inst.Version)
	}

	const value = "sk-ant-cli-0f9e8d7c6b5a"
	set := moc.with()
	set.stdin = value + "\n"
	var configure operation
	out := set.ok(&configure, "secrets", "set", id, "ANTHROPIC_API_KEY", "--wait")
	if configure.Type != "instance.configure" || configure.Status != "succeeded" {
		t.Fatalf("secrets set --wait printed %+v", configure)
	}
	ms := sys.MachinesOf(id)
	if len(ms) != 1 || ms[0].Config.Env["ANTHROPIC_API_KEY"] != value {
		t.Fatalf("the machine's env does not hold the secret (trailing newline dropped): %+v", ms)
	}
	var secrets []struct {
		Name   string `json:"name"`
		Digest string `json:"digest"`
	}
	list := moc.ok(&secrets, "secrets", "list", id)
	if len(secrets) != 1 || secrets[0].Name != "ANTHROPIC_API_KEY" || !strings.HasPrefix(secrets[0].Digest, "hmac-sha256:") {
		t.Fatalf("secrets list: %+v", secrets)
	}
	for _, r := range []result{out, list} {
		if strings.Contains(r.stdout+r.stderr, value) {
			t.Fatalf("moc printed the secret's value: %+v", r)
		}
	}
	empty := moc.with()
	empty.stdin = ""
	empty.fails(exitUsage, "secrets", "set", id, "EMPTY_ONE")

	var del operation
	moc.ok(&del, "secrets", "delete", id, "ANTHROPIC_API_KEY", "--wait")
	if del.Status != "succeeded" {
		t.Fatalf("secrets delete --wait printed %+v", del)
	}
	moc.ok(&secrets, "secrets", "list", id)
	if len(secrets) != 0 {
		t.Fatalf("after delete: %+v", secrets)
	}
	if env := sys.MachinesOf(id)[0].Config.Env; env["ANTHROPIC_API_KEY"] != "" {
		t.Fatalf("the deleted secret is still in the machine's env")
	}
	r = moc.fails(exitAPI, "secrets", "delete", id, "ANTHROPIC_API_KEY")
	if !strings.Contains(r.stderr, "404") {
		t.Errorf("deleting a missing secret: %q", r.stderr)
	}
}

// imageOfVersion is the test catalog's image of v.
func imageOfVersion(t *testing.T, v string) string {
	t.Helper()
	for _, e := range e2e.Versions {
		if e.Version == v {
			return e.Image
		}
	}
	t.Fatalf("no version %s in e2e.Versions", v)
	return ""
}
