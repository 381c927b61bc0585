package fly

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// machineAnswer is a machine as the real API answers it: the fields mocd
// reads and many it does not (image_ref, events, host_status, …), escapes,
// nulls and keys in another case.
const machineAnswer = `{"id":"3d8d413b29d089","name":"inst-5gh7klmn2pqrstuvwxyz0a","state":"started",
 "region":"iad","instance_id":"01G3H70Q5C24GMEMCXHSBDGN9H","version":"01G3H70Q5C24GMEMCXHSBDGN9H",
 "private_ip":"fdaa:0:3ec2:a7b:5adc:6068:5b85:2","host_status":"ok","incomplete_config":null,
 "config":{"image":"registry.fly.io/openclaw:v1.4.2","init":{"exec":null,"entrypoint":null},
  "guest":{"cpu_kind":"shared","cpus":2,"memory_mb":2048,"kernel_args":null},
  "env":{"OPENCLAW_HOME":"/data","NOTE":"caf\u00e9 \u2028 <b>&amp;</b>","EMPTY":""},
  "metadata":{"mocd_instance":"inst_5gH7kLmN2pQrStUvWxYz0a","fly_platform_version":"v2"},
  "services":[{"protocol":"tcp","internal_port":8080,"autostop":"off","autostart":true,"min_machines_running":0,
   "ports":[{"port":443,"handlers":["tls","http"]},{"port":80,"handlers":["http"],"force_https":true}],
   "checks":[{"type":"http","interval":"15s","timeout":"2s","grace_period":"5s","method":"GET","path":"/healthz"}],
   "concurrency":{"type":"requests","hard_limit":250,"soft_limit":200}}],
  "checks":{"alive":{"type":"tcp","port":8080,"interval":"15s","timeout":"2s"}},
  "restart":{"policy":"on-failure","max_retries":10},
  "mounts":[{"volume":"vol_kgj54500d3qry2wz","path":"/data","size_gb":1,"encrypted":true}],
  "auto_destroy":false,"dns":{},"stop_config":{"timeout":"10s","signal":"SIGINT"}},
 "image_ref":{"registry":"registry.fly.io","repository":"openclaw","tag":"v1.4.2","digest":"sha256:9f86d0","labels":null},
 "Created_At":"2026-11-30T10:00:00Z","updated_at":"2026-11-30T10:00:05.123Z",
 "events":[{"type":"start","status":"started","source":"user","timestamp":1732960805123},
  {"type":"launch","status":"created","source":"user","timestamp":1732960800000}],
 "checks":[{"name":"alive","status":"passing","output":"Success","updated_at":"2026-11-30T10:00:04Z"}],
 "nonce":""}`

// TestAnswersDecodeAsEncodingJSON holds decodeAnswer (go-json) to what
// encoding/json fills from the same answers, for every type the client
// decodes into: a machine as Fly renders it, a list of them, a lease, an
// app, a volume, and answers that are not what was expected.
func TestAnswersDecodeAsEncodingJSON(t *testing.T) {
	type leaseAnswer struct {
		Status string `json:"status"`
		Data   *Lease `json:"data"`
	}
	for _, c := range []struct {
		name   string
		answer string
		out    func() any
	}{
		{"machine", machineAnswer, func() any { return new(Machine) }},
		{"machines", "[" + machineAnswer + "," + strings.Replace(machineAnswer, "started", "stopped", 1) + "]", func() any { return new([]Machine) }},
		{"no machines", `[]`, func() any { return new([]Machine) }},
		{"nulls", `{"id":null,"config":{"guest":null,"env":null,"services":null},"checks":null}`, func() any { return new(Machine) }},
		{"lease", `{"status":"success","data":{"nonce":"a1b2c3","expires_at":1732961405,"owner":"mocd@example.com","version":"01J"}}`, func() any { return new(leaseAnswer) }},
		{"no lease", `{"status":"success","data":null}`, func() any { return new(leaseAnswer) }},
		{"app", `{"id":"app_1","name":"moc-inst-1","status":"pending","organization":{"name":"Personal","slug":"personal"},"network":"default"}`, func() any { return new(App) }},
		{"volume", `{"id":"vol_1","name":"data","state":"created","size_gb":1,"region":"iad","encrypted":true,"attached_machine_id":null,"created_at":"2026-11-30T10:00:00Z","snapshot_retention":5}`, func() any { return new(Volume) }},
		{"wrong type", `{"id":42}`, func() any { return new(Machine) }},
		{"not json", `<html>bad gateway</html>`, func() any { return new(Machine) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			want, got := c.out(), c.out()
			wantErr := json.Unmarshal([]byte(c.answer), want)
			gotErr := decodeAnswer(strings.NewReader(c.answer), got)
			if (wantErr == nil) != (gotErr == nil) {
				t.Fatalf("decodeAnswer error %v, encoding/json's %v", gotErr, wantErr)
			}
			if wantErr == nil && !reflect.DeepEqual(got, want) {
				t.Errorf("decodeAnswer filled\n%+v\nencoding/json\n%+v", got, want)
			}
		})
	}
}

// BenchmarkDecodeMachine compares the two decoders on one machine answer:
//
//	go test -run '^$' -bench DecodeMachine ./fly/
func BenchmarkDecodeMachine(b *testing.B) {
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			var m Machine
			if err := json.NewDecoder(strings.NewReader(machineAnswer)).Decode(&m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-json", func(b *testing.B) {
		for b.Loop() {
			var m Machine
			if err := decodeAnswer(strings.NewReader(machineAnswer), &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
