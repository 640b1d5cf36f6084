package protocol

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func goldenFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "frames", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("unmarshal %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

// TestGoldenVectors decodes every golden frame and re-encodes it to equivalent JSON, so the
// vectors a hub in another language uses are known to match this codec.
func TestGoldenVectors(t *testing.T) {
	files := goldenFiles(t)
	seen := map[Type]bool{}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Decode(data)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if _, unknown := f.(Unknown); unknown {
				t.Fatalf("golden frame decoded as Unknown type %q", f.FrameType())
			}
			want := Type(strings.SplitN(filepath.Base(file), ".", 2)[0])
			if f.FrameType() != want {
				t.Fatalf("decoded type %q, file is named for %q", f.FrameType(), want)
			}
			seen[want] = true
			out, err := Encode(f)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !jsonEqual(t, data, out) {
				t.Fatalf("re-encoded frame differs\n in: %s\nout: %s", data, out)
			}
			if !strings.HasPrefix(string(out), `{"type":"`+string(want)+`"`) {
				t.Errorf("encoded frame does not start with its type: %s", out)
			}
		})
	}
	all := []Type{TypeHello, TypeHeartbeat, TypeAccept, TypeDecline, TypeProgress, TypeCompleteJSON,
		TypeFail, TypeLogBatch, TypeReadyForMore, TypeWelcome, TypeOffer, TypeCancel, TypeHeartbeatAck,
		TypeCompleteAck, TypeFailAck, TypeLogAck, TypeError}
	for _, ty := range all {
		if !seen[ty] {
			t.Errorf("no golden vector for frame type %q", ty)
		}
		if f, ok := newFrame(ty); !ok || f.FrameType() != ty {
			t.Errorf("newFrame(%q) does not build that type", ty)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		class     error
		field     string
		frameType Type
	}{
		{"not json", `{"type":"accept",`, ErrInvalidJSON, "", ""},
		{"empty", ``, ErrInvalidJSON, "", ""},
		{"array", `[1,2]`, ErrInvalidJSON, "", ""},
		{"string", `"hello"`, ErrInvalidJSON, "", ""},
		{"null", `null`, ErrInvalidJSON, "", ""},
		{"no type", `{"job_id":"j"}`, ErrMissingType, "", ""},
		{"null type", `{"type":null}`, ErrMissingType, "", ""},
		{"empty type", `{"type":""}`, ErrMissingType, "", ""},
		{"type not string", `{"type":7}`, ErrWrongType, "type", ""},
		{"accept without job_id", `{"type":"accept"}`, ErrMissingField, "job_id", TypeAccept},
		{"accept null job_id", `{"type":"accept","job_id":null}`, ErrMissingField, "job_id", TypeAccept},
		{"accept numeric job_id", `{"type":"accept","job_id":12}`, ErrWrongType, "job_id", TypeAccept},
		{"decline without reason", `{"type":"decline","job_id":"j"}`, ErrMissingField, "reason", TypeDecline},
		{"progress fraction string", `{"type":"progress","job_id":"j","fraction":"half"}`, ErrWrongType, "fraction", TypeProgress},
		{"fail retryable string", `{"type":"fail","job_id":"j","error":"x","retryable":"yes"}`, ErrWrongType, "retryable", TypeFail},
		{"complete_json result not object", `{"type":"complete_json","job_id":"j","result":"text"}`, ErrWrongType, "result", TypeCompleteJSON},
		{"offer without claim", `{"type":"offer"}`, ErrMissingField, "claim", TypeOffer},
		{"offer claim without expires_at", `{"type":"offer","claim":{"job_id":"j","kind":"llm","model":"m","vram_gb_estimate":0,"input":{}}}`, ErrMissingField, "claim.expires_at", TypeOffer},
		{"offer bad expires_at", `{"type":"offer","claim":{"job_id":"j","kind":"llm","model":"m","vram_gb_estimate":0,"input":{},"expires_at":"tomorrow"}}`, ErrWrongType, "claim.expires_at", TypeOffer},
		{"offer estimate string", `{"type":"offer","claim":{"job_id":"j","kind":"llm","model":"m","vram_gb_estimate":"6","input":{},"expires_at":"2026-11-28T14:03:15Z"}}`, ErrWrongType, "claim.vram_gb_estimate", TypeOffer},
		{"hello null list", `{"type":"hello","protocol":1,"agent_version":"v","capabilities":{"machine_name":"m","username":"u","agent_version":"v","engine":"e","vram_total_gb":0,"vram_threshold_gb":0,"auto_accept":true,"auto_start":false,"max_concurrent_jobs":1,"task_kinds":[],"supported_models":[],"supported_models_per_kind":{},"gpus":[]},"in_flight":null,"outbox":[]}`, ErrMissingField, "in_flight", TypeHello},
		{"hello capabilities missing field", `{"type":"hello","protocol":1,"agent_version":"v","capabilities":{"machine_name":"m"},"in_flight":[],"outbox":[]}`, ErrMissingField, "capabilities.username", TypeHello},
		{"heartbeat gpu entry missing field", `{"type":"heartbeat","status":{"state":"idle","running":[],"accepting":true},"gpus":[{"index":0}]}`, ErrMissingField, "gpus[0].vram_total_mb", TypeHeartbeat},
		{"heartbeat running not list", `{"type":"heartbeat","status":{"state":"idle","running":"j","accepting":true},"gpus":[]}`, ErrWrongType, "status.running", TypeHeartbeat},
		{"log entry bad ts", `{"type":"log_batch","seq":1,"entries":[{"ts":"yesterday","level":"info","source":"s","message":"m"}]}`, ErrWrongType, "entries[0].ts", TypeLogBatch},
		{"log_ack negative seq", `{"type":"log_ack","seq":-1}`, ErrWrongType, "seq", TypeLogAck},
		{"error without code", `{"type":"error","message":"m"}`, ErrMissingField, "code", TypeError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Decode([]byte(tt.in))
			if err == nil {
				t.Fatalf("Decode(%s) = %#v, want an error", tt.in, f)
			}
			if !errors.Is(err, tt.class) {
				t.Fatalf("error %v is not %v", err, tt.class)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a *DecodeError", err)
			}
			if de.Field != tt.field {
				t.Errorf("field = %q, want %q (error: %v)", de.Field, tt.field, err)
			}
			if de.FrameType != tt.frameType {
				t.Errorf("frame type = %q, want %q", de.FrameType, tt.frameType)
			}
			if tt.field != "" && !strings.Contains(err.Error(), tt.field) {
				t.Errorf("message %q does not name the field %q", err.Error(), tt.field)
			}
			for _, other := range []error{ErrInvalidJSON, ErrMissingType, ErrMissingField, ErrWrongType} {
				if other != tt.class && errors.Is(err, other) {
					t.Errorf("error also matches %v; classes must be distinct", other)
				}
			}
		})
	}
}

func TestDecodeUnknownType(t *testing.T) {
	in := `{"type":"telemetry_v2","anything":[1,2,3]}`
	f, err := Decode([]byte(in))
	if err != nil {
		t.Fatalf("unknown type must not be an error: %v", err)
	}
	u, ok := f.(Unknown)
	if !ok {
		t.Fatalf("got %T, want Unknown", f)
	}
	if u.Type != "telemetry_v2" || string(u.Raw) != in {
		t.Fatalf("Unknown = %+v", u)
	}
}

func TestDecodeIgnoresExtraFieldsAndAppliesWelcomeDefaults(t *testing.T) {
	f, err := Decode([]byte(`{"type":"welcome","worker_id":"w","server_version":"x","future_field":true}`))
	if err != nil {
		t.Fatal(err)
	}
	w := f.(Welcome)
	if w.Heartbeat().Milliseconds() != DefaultHeartbeatMS || w.OfferTTL().Milliseconds() != DefaultOfferTTLMS {
		t.Fatalf("defaults not applied: %v %v", w.Heartbeat(), w.OfferTTL())
	}
}

func TestEncodeNeverWritesNullLists(t *testing.T) {
	frames := []Frame{
		Hello{Protocol: Version, AgentVersion: "v"},
		Heartbeat{Status: Status{State: StateIdle}},
		Heartbeat{Status: Status{State: StateIdle}, Capabilities: &Capabilities{}},
		LogBatch{Seq: 1},
		ReadyForMore{},
		HeartbeatAck{},
	}
	for _, f := range frames {
		b, err := Encode(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "null") {
			t.Errorf("%s encodes a null: %s", f.FrameType(), b)
		}
		back, err := Decode(b)
		if err != nil {
			t.Errorf("%s: own encoding does not decode: %v\n%s", f.FrameType(), err, b)
			continue
		}
		if back.FrameType() != f.FrameType() {
			t.Errorf("round trip changed the type: %s -> %s", f.FrameType(), back.FrameType())
		}
	}
}

func TestDecodeIntoJobInput(t *testing.T) {
	var in ImageInput
	err := DecodeInto([]byte(`{"prompt":"p","width":512}`), &in)
	if !errors.Is(err, ErrMissingField) || !strings.Contains(err.Error(), "height") {
		t.Fatalf("want missing height, got %v", err)
	}
	if err := DecodeInto([]byte(`{"prompt":"p","width":512,"height":"tall"}`), &in); !errors.Is(err, ErrWrongType) {
		t.Fatalf("want wrong type, got %v", err)
	}
	if err := DecodeInto([]byte(`{"prompt":"p","width":512,"height":256,"seed":3}`), &in); err != nil {
		t.Fatal(err)
	}
	if in.Width != 512 || in.Height != 256 || in.Seed == nil || *in.Seed != 3 {
		t.Fatalf("decoded %+v", in)
	}
}

func TestKinds(t *testing.T) {
	for _, k := range Kinds() {
		if !k.Valid() {
			t.Errorf("%s not valid", k)
		}
		if k.BinaryResult() != (len(k.ResultExts()) > 0) {
			t.Errorf("%s: binary result and extension list disagree", k)
		}
	}
	if !KindImage.AllowedExt("png") || KindImage.AllowedExt("exe") || KindLLM.AllowedExt("png") {
		t.Error("AllowedExt is wrong")
	}
	if Kind("3d").Valid() {
		t.Error("unknown kind is valid")
	}
}

func TestOfferLocalDeadline(t *testing.T) {
	hubSays := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	received := time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC) // our clock is an hour behind the hub's
	cases := []struct {
		name string
		ttl  int64
		want time.Time
	}{
		{"ttl_ms is believed over a skewed clock", 120000, received.Add(2 * time.Minute)},
		{"without ttl_ms, expires_at", 0, hubSays},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := Offer{Claim: Claim{ExpiresAt: hubSays}, TTLMS: tc.ttl}
			if got := o.LocalDeadline(received); !got.Equal(tc.want) {
				t.Fatalf("LocalDeadline = %v, want %v", got, tc.want)
			}
		})
	}
}
