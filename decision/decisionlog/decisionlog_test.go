package decisionlog

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var when = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// entry is a decision as the server would log it: a subject with claims,
// a check and the contract's decision.
func entry(id string) Entry {
	return Entry{
		DecisionID: id,
		Revision:   "v7",
		Path:       "tierguard/authz/decision",
		Timestamp:  when,
		Input: map[string]any{
			"subject": map[string]any{
				"authenticated": true, "sub": "ada@example.com",
				"claims": map[string]any{"tier": "plus", "email": "ada@example.com"},
			},
			"check": map[string]any{"kind": "api", "method": "GET", "template": "/api/treasure-map"},
		},
		Result:  map[string]any{"allow": true, "reason": "allowed", "required_tier": nil, "tier": "plus"},
		Latency: 1500 * time.Microsecond,
		Labels:  map[string]string{"route": "api"},
	}
}

func mustRule(t testing.TB, op, path string, value any) MaskRule {
	t.Helper()
	r, err := ParseMaskRule(op, path, value)
	if err != nil {
		t.Fatalf("ParseMaskRule(%q, %q) = %v", op, path, err)
	}
	return r
}

func newLogger(t testing.TB, cfg Config, opts ...Option) *Logger {
	t.Helper()
	l, err := New(cfg, nil, opts...)
	if err != nil {
		t.Fatalf("New(%+v) = %v", cfg, err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

func closeWithin(t testing.TB, l *Logger, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return l.Close(ctx)
}

// TestConsoleEvent pins the console line: OPA's event field names, the
// mask applied and listed, and a credential that must never be written.
func TestConsoleEvent(t *testing.T) {
	var out bytes.Buffer
	l := newLogger(t, Config{
		Console: true,
		Labels:  map[string]string{"id": "replica-1", "route": "default"},
		Mask: []MaskRule{
			mustRule(t, OpRemove, "/input/subject/claims/email", nil),
			mustRule(t, OpUpsert, "/input/subject/sub", "****"),
		},
	}, WithOutput(&out))

	e := entry("d-1")
	e.Input["subject"].(map[string]any)["claims"].(map[string]any)["access_token"] = "eyJ.secret.sig"
	l.Log(context.Background(), e)
	if err := closeWithin(t, l, 5*time.Second); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("console got %d lines, want 1:\n%s", len(lines), out.String())
	}
	if strings.Contains(lines[0], "eyJ.secret.sig") {
		t.Fatalf("the console line carries the token: %s", lines[0])
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatalf("console line is not JSON: %v\n%s", err, lines[0])
	}
	want := map[string]any{
		"decision_id": "d-1",
		"revision":    "v7",
		"bundles":     map[string]any{"tierguard": map[string]any{"revision": "v7"}},
		"path":        "tierguard/authz/decision",
		"timestamp":   "2026-05-01T12:00:00Z",
		"labels":      map[string]any{"id": "replica-1", "route": "api"},
		"input": map[string]any{
			"subject": map[string]any{
				"authenticated": true, "sub": "****",
				"claims": map[string]any{"tier": "plus"},
			},
			"check": map[string]any{"kind": "api", "method": "GET", "template": "/api/treasure-map"},
		},
		"result": map[string]any{
			"allow": true, "reason": "allowed", "required_tier": nil, "tier": "plus",
		},
		"erased":  []any{"/input/subject/claims/access_token", "/input/subject/claims/email"},
		"masked":  []any{"/input/subject/sub"},
		"metrics": map[string]any{"timer_server_handler_ns": float64(1500000)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("console event (-want +got):\n%s", diff)
	}

	// The caller's maps are the caller's: masking works on a copy.
	claims := e.Input["subject"].(map[string]any)["claims"].(map[string]any)
	if claims["email"] != "ada@example.com" {
		t.Errorf("masking changed the caller's input: claims = %v", claims)
	}
}

// receiver is an OPA-compatible decision-log collector on loopback. It
// answers the first failFirst uploads with 500.
type receiver struct {
	srv       *httptest.Server
	failFirst int

	mu       sync.Mutex
	requests int
	events   []map[string]any
	problems []string
}

func newReceiver(t testing.TB, failFirst int) *receiver {
	t.Helper()
	r := &receiver{failFirst: failFirst}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	problem := func(format string, a ...any) {
		r.problems = append(r.problems, fmt.Sprintf(format, a...))
		http.Error(w, "bad upload", http.StatusBadRequest)
	}
	switch {
	case req.Method != http.MethodPost || req.URL.Path != "/logs":
		problem("%s %s, want POST /logs", req.Method, req.URL.Path)
		return
	case req.Header.Get("Content-Encoding") != "gzip":
		problem("Content-Encoding %q, want gzip", req.Header.Get("Content-Encoding"))
		return
	case req.Header.Get("Content-Type") != "application/json":
		problem("Content-Type %q, want application/json", req.Header.Get("Content-Type"))
		return
	case req.Header.Get("Authorization") != "Bearer collector-secret":
		problem("Authorization %q, want the bearer token", req.Header.Get("Authorization"))
		return
	}
	if r.requests <= r.failFirst {
		http.Error(w, "try later", http.StatusInternalServerError)
		return
	}
	zr, err := gzip.NewReader(req.Body)
	if err != nil {
		problem("body is not gzip: %v", err)
		return
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		problem("reading gzip body: %v", err)
		return
	}
	var batch []map[string]any
	if err := json.Unmarshal(raw, &batch); err != nil {
		problem("body is not a JSON array of events: %v", err)
		return
	}
	r.events = append(r.events, batch...)
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) snapshot() (int, []map[string]any, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests, append([]map[string]any(nil), r.events...), append([]string(nil), r.problems...)
}

func uploadConfig(url string) Config {
	return Config{
		URL:           url,
		BearerToken:   "collector-secret",
		BatchSize:     4,
		FlushInterval: time.Hour, // only full batches and Close upload
		MinRetryDelay: 10 * time.Millisecond,
		MaxRetryDelay: 50 * time.Millisecond,
		Mask:          []MaskRule{{Op: OpRemove, Path: "/input/subject/claims/email"}},
	}
}

func decisionIDs(events []map[string]any) []string {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i], _ = e["decision_id"].(string)
	}
	return ids
}

// TestUpload ships events in OPA's upload format, retries after a 500,
// and flushes a partial batch at Close.
func TestUpload(t *testing.T) {
	r := newReceiver(t, 1)
	l := newLogger(t, uploadConfig(r.srv.URL))

	var want []string
	for i := range 6 { // one full batch of 4, then 2 that only Close sends
		id := fmt.Sprintf("d-%d", i)
		want = append(want, id)
		l.Log(context.Background(), entry(id))
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		_, events, _ := r.snapshot()
		if len(events) >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the full batch did not arrive after a retry; stats %+v", l.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, events, _ := r.snapshot(); len(events) != 4 {
		t.Errorf("before Close the collector has %d events, want the full batch of 4 only", len(events))
	}

	if err := closeWithin(t, l, 5*time.Second); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	requests, events, problems := r.snapshot()
	if len(problems) > 0 {
		t.Fatalf("the collector refused uploads: %s", strings.Join(problems, "; "))
	}
	if diff := cmp.Diff(want, decisionIDs(events)); diff != "" {
		t.Errorf("decision ids received (-want +got):\n%s", diff)
	}
	if requests != 3 {
		t.Errorf("collector saw %d requests, want 3 (a 500, its retry, the flush)", requests)
	}
	for _, e := range events {
		claims := e["input"].(map[string]any)["subject"].(map[string]any)["claims"].(map[string]any)
		if _, ok := claims["email"]; ok {
			t.Errorf("event %v carries the masked email", e["decision_id"])
		}
	}
	st := l.Stats()
	want6 := Stats{Logged: 6, Uploaded: 6, UploadErrors: 1}
	if st != want6 {
		t.Errorf("Stats() = %+v, want 6 logged and uploaded, 1 upload error, none dropped", st)
	}
}

// TestCloseGivesUp: a collector that never recovers cannot hold shutdown
// hostage. Close returns when its context ends and counts what was lost.
func TestCloseGivesUp(t *testing.T) {
	r := newReceiver(t, 1<<30)
	l := newLogger(t, uploadConfig(r.srv.URL))
	for i := range 3 {
		l.Log(context.Background(), entry(fmt.Sprintf("d-%d", i)))
	}
	start := time.Now()
	err := closeWithin(t, l, 300*time.Millisecond)
	if err == nil {
		t.Fatal("Close() = nil with the collector failing, want an error naming the lost events")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Close took %v, want it bounded by its context", took)
	}
	if st := l.Stats(); st.Dropped != 3 || st.Uploaded != 0 || st.UploadErrors == 0 {
		t.Errorf("Stats() = %+v, want 3 dropped, none uploaded, some upload errors", st)
	}
}

// blockingWriter stands in for a stdout nobody reads.
type blockingWriter struct{ release chan struct{} }

func (w blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	return len(p), nil
}

// TestLogNeverBlocks: with the encoder stuck on a full pipe, Log drops and
// counts instead of waiting.
func TestLogNeverBlocks(t *testing.T) {
	w := blockingWriter{release: make(chan struct{})}
	l, err := New(Config{Console: true, BufferSize: 2}, nil, WithOutput(w))
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	for i := range 50 {
		l.Log(context.Background(), entry(fmt.Sprintf("d-%d", i)))
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("50 Log calls against a stuck writer took %v, want no waiting", took)
	}
	st := l.Stats()
	// One entry is with the stuck encoder, two fill the buffer; the
	// encoder may not have taken its first yet, so 47 or 48 drop.
	if st.Logged+st.Dropped != 50 || st.Dropped < 47 {
		t.Errorf("Stats() = %+v, want 50 accounted for and at least 47 dropped", st)
	}

	close(w.release)
	if err := closeWithin(t, l, 5*time.Second); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	l.Log(context.Background(), entry("after-close"))
	if got := l.Stats().Dropped; got != st.Dropped+1 {
		t.Errorf("Log after Close: Dropped = %d, want %d", got, st.Dropped+1)
	}
}

// TestCloseWaitsForConsole: Close returns only after queued entries are
// written, so the last decisions before shutdown are not lost.
func TestCloseWaitsForConsole(t *testing.T) {
	var out syncBuffer
	l, err := New(Config{Console: true}, nil, WithOutput(&out))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		l.Log(context.Background(), entry(fmt.Sprintf("d-%d", i)))
	}
	if err := closeWithin(t, l, 5*time.Second); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if n := strings.Count(out.String(), "\n"); n != 100 {
		t.Errorf("after Close the console has %d lines, want 100", n)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"zero value", Config{}, ""},
		{"console and url", Config{Console: true, URL: "https://logs.example.com"}, ""},
		{"file url", Config{URL: "file:///tmp/x"}, "not an http(s) URL"},
		{"retry bounds", Config{MinRetryDelay: time.Minute, MaxRetryDelay: time.Second}, "retry"},
		{"bad mask", Config{Mask: []MaskRule{{Path: "/subject/sub"}}}, "mask[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// Keep the receiver's bad-request path honest: an upload missing its
// gzip encoding must be reported, or TestUpload could pass on any body.
func TestReceiverRejectsPlainJSON(t *testing.T) {
	r := newReceiver(t, 0)
	req, _ := http.NewRequest(http.MethodPost, r.srv.URL+"/logs", strings.NewReader("[]"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer collector-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, _, problems := r.snapshot(); resp.StatusCode != http.StatusBadRequest || len(problems) != 1 {
		t.Errorf("plain JSON upload: status %d, problems %v; want 400 and one problem",
			resp.StatusCode, problems)
	}
}
