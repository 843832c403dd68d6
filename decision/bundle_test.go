package decision

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// bundleFixtures are OPA bundles built by the pinned OPA CLI, as a policy
// team's pipeline builds them: `go tool opa build -b DIR`.
type bundleFixtures struct {
	publicKey string // PEM, verifies the signed bundles
	otherKey  string // PEM of a key that signed nothing
	signedV1  []byte // revision v1: the treasure map is for plus
	signedV2  []byte // revision v2: the treasure map is for pro
	unsigned  []byte // revision u1, no .signatures.json
	tampered  []byte // signedV1 with its data.json edited after signing
}

var fixtures struct {
	once sync.Once
	dir  string
	f    *bundleFixtures
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtures.dir != "" {
		os.RemoveAll(fixtures.dir)
	}
	os.Exit(code)
}

// buildFixtures builds the bundles once per test binary: the OPA CLI takes
// about a second per build.
func buildFixtures(t testing.TB) *bundleFixtures {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("skipping: bundles are built with `go tool opa build` and go is not on PATH")
	}
	fixtures.once.Do(func() {
		fixtures.dir, fixtures.err = os.MkdirTemp("", "tierguard-bundles-")
		if fixtures.err == nil {
			fixtures.f, fixtures.err = makeFixtures(fixtures.dir)
		}
	})
	if fixtures.err != nil {
		t.Fatalf("building bundle fixtures: %v", fixtures.err)
	}
	return fixtures.f
}

func makeFixtures(dir string) (*bundleFixtures, error) {
	signing, public, err := writeKeyPair(dir, "signing")
	if err != nil {
		return nil, err
	}
	_, other, err := writeKeyPair(dir, "other")
	if err != nil {
		return nil, err
	}

	// `go tool -n` builds the pinned CLI if needed and prints its path,
	// so builds can run inside the tree, outside this module.
	tool, err := exec.Command("go", "tool", "-n", "opa").Output()
	if err != nil {
		return nil, fmt.Errorf("go tool -n opa: %w", err)
	}
	opa := strings.TrimSpace(string(tool))

	f := &bundleFixtures{publicKey: public, otherKey: other}
	builds := []struct {
		out      *[]byte
		revision string
		tier     string
		signed   bool
	}{
		{&f.signedV1, "v1", "plus", true},
		{&f.signedV2, "v2", "pro", true},
		{&f.unsigned, "u1", "plus", false},
	}
	for _, b := range builds {
		tree := filepath.Join(dir, "tree-"+b.revision)
		if err := writePolicyTree(tree, b.tier); err != nil {
			return nil, err
		}
		// Built from inside the tree, so module paths in the bundle are
		// relative ("/tierguard/authz/authz.rego"), as a pipeline's are.
		args := []string{"build", "-b", ".", "--revision", b.revision,
			"-o", tree + ".tar.gz"}
		if b.signed {
			args = append(args, "--signing-key", signing, "--signing-alg", "RS256")
		}
		cmd := exec.Command(opa, args...)
		cmd.Dir = tree
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("opa %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		if *b.out, err = os.ReadFile(tree + ".tar.gz"); err != nil {
			return nil, err
		}
	}

	// opa build merges all data into one compact /data.json.
	f.tampered, err = rewriteTarball(f.signedV1, "/data.json",
		`"treasure-map":{"read":"plus"}`, `"treasure-map":{"read":"free"}`)
	return f, err
}

// writeKeyPair writes an RSA private key for `opa build --signing-key` and
// returns its path and the PEM public key.
func writeKeyPair(dir, name string) (string, string, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", "", err
	}
	der := x509.MarshalPKCS1PrivateKey(key)
	private := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der})
	path := filepath.Join(dir, name+".pem")
	if err := os.WriteFile(path, private, 0o600); err != nil {
		return "", "", err
	}
	der, err = x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", "", err
	}
	return path, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// writePolicyTree writes the embedded policies into dir with the treasure
// map at the given tier, the policy tests edited to agree.
func writePolicyTree(dir, treasureTier string) error {
	if err := copyPoliciesTo(dir); err != nil {
		return err
	}
	if treasureTier == "plus" {
		return nil
	}
	edits := []struct{ file, old, new string }{
		{"tierguard/data.json", `"treasure-map": {"read": "plus"}`,
			`"treasure-map": {"read": "` + treasureTier + `"}`},
		{"tierguard/authz/authz_test.rego", treasureTestPlus, treasureTestPro},
	}
	for _, e := range edits {
		path := filepath.Join(dir, filepath.FromSlash(e.file))
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !bytes.Contains(raw, []byte(e.old)) {
			return fmt.Errorf("%s does not contain %q", path, e.old)
		}
		edited := bytes.Replace(raw, []byte(e.old), []byte(e.new), 1)
		if err := os.WriteFile(path, edited, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// rewriteTarball edits one file inside a bundle tarball and leaves the
// rest, .signatures.json included, as it was.
func rewriteTarball(bundle []byte, name, old, new string) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(bundle))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	found := false
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		if hdr.Name == name {
			if !bytes.Contains(body, []byte(old)) {
				return nil, fmt.Errorf("%s in the bundle does not contain %q", name, old)
			}
			body = bytes.Replace(body, []byte(old), []byte(new), 1)
			hdr.Size = int64(len(body))
			found = true
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(body); err != nil {
			return nil, err
		}
	}
	if !found {
		return nil, fmt.Errorf("the bundle holds no %s", name)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// bundleServer is an OPA bundle server on loopback: ETags, 304s and long
// polling (Prefer: wait=N) as OPA's downloader expects them.
type bundleServer struct {
	srv  *httptest.Server
	quit chan struct{}
	stop sync.Once

	mu      sync.Mutex
	body    []byte
	etag    string
	changed chan struct{} // closed and replaced on every publish

	fresh, notModified atomic.Int64
}

func newBundleServer(t testing.TB, body []byte) *bundleServer {
	t.Helper()
	b := &bundleServer{quit: make(chan struct{}), changed: make(chan struct{})}
	b.publish(body)
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.close)
	return b
}

func (b *bundleServer) url() string { return b.srv.URL }

func (b *bundleServer) publish(body []byte) {
	sum := sha256.Sum256(body)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.body, b.etag = body, `"`+hex.EncodeToString(sum[:8])+`"`
	close(b.changed)
	b.changed = make(chan struct{})
}

// close takes the server away, as an outage would.
func (b *bundleServer) close() {
	b.stop.Do(func() {
		close(b.quit)
		b.srv.CloseClientConnections()
		b.srv.Close()
	})
}

func (b *bundleServer) snapshot() ([]byte, string, chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.body, b.etag, b.changed
}

func (b *bundleServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/"+DefaultBundleResource {
		http.NotFound(w, r)
		return
	}
	body, etag, changed := b.snapshot()
	cached := func() bool {
		for tag := range strings.SplitSeq(r.Header.Get("If-None-Match"), ",") {
			if strings.TrimSpace(tag) == etag {
				return true
			}
		}
		return false
	}
	if cached() {
		if wait := preferWait(r.Header.Get("Prefer")); wait > 0 {
			select {
			case <-changed:
				body, etag, _ = b.snapshot()
			case <-time.After(wait):
			case <-b.quit:
				return
			case <-r.Context().Done():
				return
			}
		}
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "application/vnd.openpolicyagent.bundles")
	if cached() {
		b.notModified.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	b.fresh.Add(1)
	w.Write(body)
}

func preferWait(prefer string) time.Duration {
	for part := range strings.SplitSeq(prefer, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "wait="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return time.Duration(n) * time.Second
			}
		}
	}
	return 0
}

// runSource starts a BundleSource for e until the test ends (or stop is
// called) and checks that Run returns nil.
func runSource(t *testing.T, e *Engine, cfg BundleConfig) (*BundleSource, func()) {
	t.Helper()
	src, err := NewBundleSource(e, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("NewBundleSource(%+v) = %v", cfg, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v after its context ended, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return within 10s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return src, stop
}

func testBundleConfig(url, key, persist string) BundleConfig {
	return BundleConfig{
		URL:             url,
		PollMin:         time.Second,
		PollMax:         2 * time.Second,
		LongPollTimeout: time.Second,
		VerificationKey: key,
		PersistDir:      persist,
	}
}

// treasureFor says what a plus subject gets for the treasure map, which
// is how the test bundles differ.
func treasureFor(e *Engine) string {
	d := e.Decide(context.Background(), Input{Subject: tierSubject("plus"), Check: treasureRead})
	if d.Allow {
		return "allowed"
	}
	return d.Reason + ":" + d.RequiredTier
}

// TestBundleLifecycle follows one source through the life of a fleet's
// policy: first bundle, unchanged polls, a new revision, a tampered
// publish, a restart from disk and an outage.
func TestBundleLifecycle(t *testing.T) {
	fx := buildFixtures(t)
	server := newBundleServer(t, fx.signedV1)
	persist := t.TempDir()
	e := embeddedEngine(t)
	cfg := testBundleConfig(server.url(), fx.publicKey, persist)
	src, stop := runSource(t, e, cfg)

	eventually(t, 20*time.Second, "bundle v1 to activate", func() bool {
		return src.Ready() && e.Current().ID == "v1"
	})
	if got := treasureFor(e); got != "allowed" {
		t.Errorf("on v1, plus reading the treasure map = %s, want allowed", got)
	}
	st := src.Status()
	if st.Revision != "v1" || st.FromDisk || st.LastContactAt.IsZero() {
		t.Errorf("Status() = %+v, want v1 from the server with a contact time", st)
	}

	// Unchanged: the downloader sends the ETag back and gets 304s.
	eventually(t, 10*time.Second, "a 304 for the unchanged bundle", func() bool {
		return server.notModified.Load() >= 1
	})
	if n := server.fresh.Load(); n != 1 {
		t.Errorf("the server sent the bundle %d times, want once", n)
	}

	server.publish(fx.signedV2)
	eventually(t, 20*time.Second, "bundle v2 to activate", func() bool {
		return e.Current().ID == "v2"
	})
	if got := treasureFor(e); got != "tier_required:pro" {
		t.Errorf("on v2, plus reading the treasure map = %s, want tier_required:pro", got)
	}

	before := e.Status().Failures
	server.publish(fx.tampered)
	eventually(t, 20*time.Second, "the tampered bundle to be refused", func() bool {
		return e.Status().Failures > before
	})
	if got := e.Status(); got.Revision != "v2" || !strings.Contains(got.LastErrorFrom, server.url()) {
		t.Errorf("after the tampered bundle, engine Status() = %+v, want v2 and the bundle's error",
			got)
	}
	if got := src.Status(); got.Revision != "v2" || got.LastError == "" {
		t.Errorf("after the tampered bundle, source Status() = %+v, want v2 and the error", got)
	}

	// A restart: a new process (engine) on the same disk, while the server
	// serves v2 again. The persisted bundle serves at once, and the
	// persisted ETag makes the server's answer a 304, not a download.
	stop()
	server.publish(fx.signedV2)
	freshBefore := server.fresh.Load()
	e2 := embeddedEngine(t)
	src2, _ := runSource(t, e2, cfg)
	eventually(t, 20*time.Second, "the persisted v2 to activate on a cold start", func() bool {
		return src2.Ready() && e2.Current().ID == "v2"
	})
	if !src2.Status().FromDisk {
		t.Errorf("cold start Status() = %+v, want FromDisk", src2.Status())
	}
	notModified := server.notModified.Load()
	eventually(t, 10*time.Second, "the restarted source to poll with its persisted ETag", func() bool {
		return server.notModified.Load() > notModified
	})
	if n := server.fresh.Load(); n != freshBefore {
		t.Errorf("the restarted source downloaded the bundle %d times, want 0 (ETag persisted)",
			n-freshBefore)
	}

	// The outage: the last good revision keeps serving.
	server.close()
	eventually(t, 10*time.Second, "the outage to show in Status", func() bool {
		return src2.Status().LastError != ""
	})
	if e2.Current().ID != "v2" || treasureFor(e2) != "tier_required:pro" || !src2.Ready() {
		t.Errorf("during the outage: revision %q, decision %s, ready %v; want v2 serving and ready",
			e2.Current().ID, treasureFor(e2), src2.Ready())
	}
}

// TestBundleTrust shows which bundles a configuration activates. A refused
// bundle must leave the engine on the policy it had, and be counted.
func TestBundleTrust(t *testing.T) {
	fx := buildFixtures(t)
	tests := []struct {
		name     string
		bundle   []byte
		key      string
		unsigned bool // InsecureAllowUnsigned
		want     string
	}{
		{"signed, right key", fx.signedV1, fx.publicKey, false, "v1"},
		{"signed, wrong key", fx.signedV1, fx.otherKey, false, ""},
		{"tampered after signing", fx.tampered, fx.publicKey, false, ""},
		{"unsigned, signature required", fx.unsigned, fx.publicKey, false, ""},
		{"unsigned, insecure allowed without key", fx.unsigned, "", true, "u1"},
		{"unsigned, insecure allowed with key", fx.unsigned, fx.publicKey, true, "u1"},
		{"tampered, insecure allowed with key", fx.tampered, fx.publicKey, true, ""},
		{"signed, insecure allowed without key", fx.signedV1, "", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := newBundleServer(t, tt.bundle)
			e := embeddedEngine(t)
			initial := e.Current().ID
			cfg := testBundleConfig(server.url(), tt.key, "")
			cfg.InsecureAllowUnsigned = tt.unsigned
			src, _ := runSource(t, e, cfg)

			eventually(t, 20*time.Second, "the bundle to be activated or refused", func() bool {
				return src.Ready() || e.Status().Failures > 0
			})
			if tt.want != "" {
				if !src.Ready() || e.Current().ID != tt.want {
					t.Fatalf("serving %q, ready %v, engine %+v; want %s activated",
						e.Current().ID, src.Ready(), e.Status(), tt.want)
				}
				return
			}
			st := e.Status()
			if src.Ready() || st.Revision != initial || st.Failures != 1 || st.LastError == "" {
				t.Errorf("ready %v, engine Status() = %+v; want refused once, %q kept",
					src.Ready(), st, initial)
			}
			t.Logf("refused as wanted: %s", st.LastError)
		})
	}
}

// TestBundleColdStart starts with the bundle server down: only what is on
// disk can serve, and only if it still verifies.
func TestBundleColdStart(t *testing.T) {
	fx := buildFixtures(t)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()

	tests := []struct {
		name      string
		persisted []byte // nil: nothing on disk
		want      string // "" if nothing may activate
		failures  uint64 // refusals the engine counts
	}{
		{"persisted signed bundle", fx.signedV2, "v2", 0},
		{"persisted bundle tampered on disk", fx.tampered, "", 1},
		{"nothing persisted", nil, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			persist := t.TempDir()
			if tt.persisted != nil {
				dir := filepath.Join(persist, DefaultBundleName)
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "bundle.tar.gz"), tt.persisted, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			e := embeddedEngine(t)
			initial := e.Current().ID
			src, _ := runSource(t, e, testBundleConfig(down.URL, fx.publicKey, persist))

			eventually(t, 10*time.Second, "the unreachable server to show in Status", func() bool {
				return strings.Contains(src.Status().LastError, "request failed")
			})
			if got := e.Status().Failures; got != tt.failures {
				t.Errorf("engine counted %d refusals, want %d (%s)", got, tt.failures, e.Status().LastError)
			}
			if tt.want != "" {
				st := src.Status()
				if !st.Activated || !st.FromDisk || e.Current().ID != tt.want {
					t.Errorf("serving %q, source Status() = %+v; want %s from disk",
						e.Current().ID, st, tt.want)
				}
				return
			}
			if src.Ready() || e.Current().ID != initial {
				t.Errorf("serving %q, ready %v; want not ready and %q kept",
					e.Current().ID, src.Ready(), initial)
			}
		})
	}
}

// TestBundleFleet runs two engines, stand-ins for two tierguard
// processes, against one bundle server: a publish moves both.
func TestBundleFleet(t *testing.T) {
	fx := buildFixtures(t)
	server := newBundleServer(t, fx.signedV1)
	engines := []*Engine{embeddedEngine(t), embeddedEngine(t)}
	for _, e := range engines {
		runSource(t, e, testBundleConfig(server.url(), fx.publicKey, t.TempDir()))
	}
	for i, e := range engines {
		eventually(t, 20*time.Second, fmt.Sprintf("engine %d to serve v1", i), func() bool {
			return e.Current().ID == "v1"
		})
	}

	server.publish(fx.signedV2)
	for i, e := range engines {
		eventually(t, 20*time.Second, fmt.Sprintf("engine %d to serve v2", i), func() bool {
			return e.Current().ID == "v2"
		})
		if got := treasureFor(e); got != "tier_required:pro" {
			t.Errorf("engine %d on v2: plus reading the treasure map = %s, want tier_required:pro", i, got)
		}
	}
}

func TestBundleConfigValidate(t *testing.T) {
	good := BundleConfig{URL: "https://bundles.example.com", VerificationKey: "pem"}
	tests := []struct {
		name    string
		edit    func(*BundleConfig)
		wantErr string
	}{
		{"defaults", func(*BundleConfig) {}, ""},
		{"no url", func(c *BundleConfig) { c.URL = "" }, "not an http(s) URL"},
		{"file url", func(c *BundleConfig) { c.URL = "file:///etc" }, "not an http(s) URL"},
		{"no key", func(c *BundleConfig) { c.VerificationKey = "" }, "verification key is required"},
		{"no key, insecure", func(c *BundleConfig) {
			c.VerificationKey, c.InsecureAllowUnsigned = "", true
		}, ""},
		{"poll under 1s", func(c *BundleConfig) {
			c.PollMin, c.PollMax = time.Millisecond, time.Second
		}, "polling"},
		{"poll max under min", func(c *BundleConfig) {
			c.PollMin, c.PollMax = 10*time.Second, 5*time.Second
		}, "polling"},
		{"long poll under 1s", func(c *BundleConfig) {
			c.LongPollTimeout = time.Millisecond
		}, "long_poll"},
		{"bad algorithm", func(c *BundleConfig) { c.Algorithm = "none" }, "not supported"},
		{"name with path", func(c *BundleConfig) { c.Name = "../etc" }, "must not contain a path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate(%+v) = %v, want nil", c, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate(%+v) = %v, want an error containing %q", c, err, tt.wantErr)
			}
		})
	}
}
