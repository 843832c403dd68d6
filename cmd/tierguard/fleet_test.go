package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// offlineForPlus is the policy change the fleet test rolls out: the
// offline feature moves from pro down to plus, in the data and in the
// policy's own tests, which every replica runs before it swaps.
var offlineForPlus = []struct{ file, old, new string }{
	{"tierguard/data.json", `"offline": "pro"`, `"offline": "plus"`},
	{"tierguard/authz/authz_test.rego",
		`"offline": ["unauthenticated:pro", "tier_required:pro", "tier_required:pro", "allowed"]`,
		`"offline": ["unauthenticated:plus", "tier_required:plus", "allowed", "allowed"]`},
}

// TestFleetFollowsOneBundleServer runs two tierguard processes, built from
// this package, against one OPA bundle server, as a fleet behind a load
// balancer would. Neither is ready before the first bundle; both take it;
// both refuse a signed bundle whose policy tests fail and keep serving; a
// good new bundle is published and both move to it, decisions included.
// One replica is configured by flags, the other by environment.
func TestFleetFollowsOneBundleServer(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short: builds the tierguard binary and OPA bundles")
	}
	bin := buildTierguard(t)
	opa := opaCLI(t)
	dir := t.TempDir()
	signingKey, publicKey := writeSigningKeys(t, dir)
	v1 := buildBundle(t, opa, dir, "fleet-1", signingKey, nil)
	v2 := buildBundle(t, opa, dir, "fleet-2", signingKey, offlineForPlus)
	// The data changed, its tests not: signed, and still refused.
	broken := buildBundle(t, opa, dir, "fleet-broken", signingKey, offlineForPlus[:1])

	bundles := newBundleServer(t)
	config := filepath.Join(dir, "tierguard.yaml")
	// Polling, not OPA's long polling, which decision's tests cover: a
	// plain poll every second or two is what any bundle server supports.
	yaml := "bundle:\n  poll_min: 1s\n  poll_max: 2s\n"
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	byFlags := startReplica(t, bin, []string{"--config", config,
		"--bundle-url", bundles.URL, "--bundle-public-key", publicKey,
		"--bundle-dir", t.TempDir()}, nil)
	byEnv := startReplica(t, bin, []string{"--config", config}, []string{
		"TIERGUARD_BUNDLE_URL=" + bundles.URL, "TIERGUARD_BUNDLE_PUBLIC_KEY=" + publicKey,
		"TIERGUARD_BUNDLE_DIR=" + t.TempDir()})
	fleet := []*replica{byFlags, byEnv}

	// No bundle published yet: the server answers 404 and nobody is ready.
	for _, r := range fleet {
		r.waitFor(t, "not ready, waiting for a first bundle", func(rd readyBody) bool {
			return rd.status == http.StatusServiceUnavailable && rd.Bundle != nil &&
				!rd.Bundle.Activated && strings.Contains(strings.Join(rd.Missing, ","), "bundle")
		})
	}

	bundles.publish(v1)
	for _, r := range fleet {
		r.waitFor(t, "ready on fleet-1", readyOn("fleet-1"))
		r.checkRevisionAndOffline(t, "fleet-1", "tier_required")
	}

	bundles.publish(broken)
	for _, r := range fleet {
		r.waitFor(t, "refusing fleet-broken, serving fleet-1", func(rd readyBody) bool {
			return readyOn("fleet-1")(rd) && rd.Policy.Failures > 0
		})
	}

	bundles.publish(v2)
	published := time.Now()
	for _, r := range fleet {
		r.waitFor(t, "ready on fleet-2", readyOn("fleet-2"))
		r.checkRevisionAndOffline(t, "fleet-2", "allowed")
	}
	took := time.Since(published).Round(time.Millisecond)
	t.Logf("both replicas served fleet-2 %v after it was published", took)

	for _, r := range fleet {
		r.stop(t)
	}
}

// TestServeRefusesBadBundleSettings: bundle mode's settings fail at start,
// naming what is wrong, before anything listens.
func TestServeRefusesBadBundleSettings(t *testing.T) {
	dir := t.TempDir()
	badPoll := filepath.Join(dir, "poll.yaml")
	os.WriteFile(badPoll, []byte("bundle:\n  url: http://127.0.0.1:1\n  poll_min: soon\n"), 0o644)
	orphan := filepath.Join(dir, "orphan.yaml")
	os.WriteFile(orphan, []byte("bundle:\n  dir: /var/lib/tierguard\n"), 0o644)
	local := []string{"--dev", "--addr", "127.0.0.1:0"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unsigned without saying so", []string{"--bundle-url", "http://127.0.0.1:1"},
			"verification key is required"},
		{"bundle settings without a URL", []string{"--bundle-public-key", "key.pem"},
			"need --bundle-url"},
		{"bundle settings in the file without a URL", []string{"--config", orphan}, "need --bundle-url"},
		{"not an http URL", []string{"--bundle-url", "ftp://127.0.0.1/",
			"--bundle-insecure-allow-unsigned"},
			"not an http(s) URL"},
		{"a missing key file", []string{"--bundle-url", "http://127.0.0.1:1",
			"--bundle-public-key", filepath.Join(dir, "nope.pem")}, "bundle public key"},
		{"two policy sources", []string{"--bundle-url", "http://127.0.0.1:1",
			"--bundle-insecure-allow-unsigned", "--policies", dir}, "two policy sources"},
		{"bad poll duration", []string{"--config", badPoll, "--bundle-insecure-allow-unsigned"},
			"bundle.poll_min"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"serve"}, local...), tt.args...)
			out, code := run(t, context.Background(), args...)
			if code == 0 || !strings.Contains(out, tt.want) {
				t.Errorf("%v: exit %d, output:\n%s\nwant a failure mentioning %q", args, code, out, tt.want)
			}
		})
	}
}

// buildTierguard builds this package's binary once per test run.
func buildTierguard(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tierguard")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// opaCLI is the pinned OPA CLI: `go tool -n` builds it if needed (about a
// minute, once) and prints its path.
func opaCLI(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "tool", "-n", "opa").Output()
	if err != nil {
		t.Fatalf("go tool -n opa: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// writeSigningKeys writes an RSA key pair as a policy team's pipeline
// keeps one: the private key signs bundles (opa build --signing-key), the
// public key is what every replica is given.
func writeSigningKeys(t *testing.T, dir string) (private, public string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	private, public = filepath.Join(dir, "signing.pem"), filepath.Join(dir, "public.pem")
	blocks := map[string]*pem.Block{
		private: {Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)},
		public:  {Type: "PUBLIC KEY", Bytes: pub},
	}
	for path, b := range blocks {
		if err := os.WriteFile(path, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return private, public
}

// buildBundle copies the repository's policies, applies edits, and builds
// a signed bundle with the given revision, as `opa build` run from inside
// the policy directory builds it.
func buildBundle(t *testing.T, opa, dir, revision, signingKey string,
	edits []struct{ file, old, new string }) []byte {
	t.Helper()
	tree := filepath.Join(dir, revision)
	if err := copyRegoTree(filepath.Join("..", "..", "policies"), tree); err != nil {
		t.Fatal(err)
	}
	for _, e := range edits {
		path := filepath.Join(tree, filepath.FromSlash(e.file))
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(raw, []byte(e.old)) {
			t.Fatalf("%s does not contain %q: update the fleet test's edit", e.file, e.old)
		}
		raw = bytes.Replace(raw, []byte(e.old), []byte(e.new), 1)
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	out := tree + ".tar.gz"
	args := []string{"build", "-b", ".", "--revision", revision, "-o", out,
		"--signing-key", signingKey, "--signing-alg", "RS256"}
	cmd := exec.Command(opa, args...)
	cmd.Dir = tree
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("opa %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// copyRegoTree copies the .rego and .json files under src, which is what
// a bundle holds (the Go file that embeds them stays behind).
func copyRegoTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := filepath.Ext(path); ext != ".rego" && ext != ".json" {
			return nil
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, raw, 0o644)
	})
}

// bundleServer serves one bundle at the default resource with an ETag,
// answering 304 for what the caller has, and 404 until the first publish.
type bundleServer struct {
	*httptest.Server
	mu   sync.Mutex
	body []byte
	etag string
}

func newBundleServer(t *testing.T) *bundleServer {
	t.Helper()
	b := &bundleServer{}
	b.Server = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.Close)
	return b
}

func (b *bundleServer) publish(body []byte) {
	sum := sha256.Sum256(body)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.body, b.etag = body, `"`+hex.EncodeToString(sum[:8])+`"`
}

func (b *bundleServer) serve(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	body, etag := b.body, b.etag
	b.mu.Unlock()
	if r.URL.Path != "/bundles/tierguard.tar.gz" || body == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Write(body)
}

// replica is one `tierguard serve --dev` process.
type replica struct {
	name   string
	base   string
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{}
	err    error // Wait's, once exited is closed
}

func startReplica(t *testing.T, bin string, args, env []string) *replica {
	t.Helper()
	addr := freeAddr(t)
	args = append([]string{"serve", "--dev", "--addr", addr, "--log-level", "warn"}, args...)
	r := &replica{name: addr, base: "http://" + addr, out: &lockedBuffer{}}
	r.exited = make(chan struct{})
	r.cmd = exec.Command(bin, args...)
	r.cmd.Dir = t.TempDir() // no web/dist here: no app to serve
	r.cmd.Env = append(environWithout("TIERGUARD_"), env...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		r.cmd.Process.Kill() // a no-op once stop has run
		<-r.exited
		if t.Failed() {
			t.Logf("replica %s output:\n%s", r.name, r.out)
		}
	})
	return r
}

// stop sends SIGTERM, as Kubernetes does, and wants a clean exit.
func (r *replica) stop(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("replica %s: SIGTERM: %v", r.name, err)
	}
	select {
	case <-r.exited:
		if r.err != nil {
			t.Errorf("replica %s exited with %v after SIGTERM, want a clean exit", r.name, r.err)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("replica %s did not exit within 15s of SIGTERM", r.name)
	}
}

type readyBody struct {
	status  int
	Ready   bool     `json:"ready"`
	Missing []string `json:"missing"`
	Policy  struct {
		Revision string `json:"revision"`
		Failures int    `json:"failures"`
	} `json:"policy"`
	Bundle *struct {
		Activated bool   `json:"activated"`
		Revision  string `json:"revision"`
	} `json:"bundle"`
}

func readyOn(revision string) func(readyBody) bool {
	return func(rd readyBody) bool {
		return rd.status == http.StatusOK && rd.Ready && rd.Policy.Revision == revision &&
			rd.Bundle != nil && rd.Bundle.Revision == revision
	}
}

// waitFor polls /health/ready, as a load balancer would, until ok.
func (r *replica) waitFor(t *testing.T, what string, ok func(readyBody) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := "no answer"
	for {
		select {
		case <-r.exited:
			t.Fatalf("replica %s exited (%v) while waiting to be %s; its output:\n%s",
				r.name, r.err, what, r.out)
		default:
		}
		if resp, err := http.Get(r.base + "/health/ready"); err == nil {
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			rd := readyBody{status: resp.StatusCode}
			if json.Unmarshal(raw, &rd) == nil && ok(rd) {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, raw)
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s not %s within 30s; last /health/ready: %s", r.name, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkRevisionAndOffline asks the replica, as the browser's guard does,
// whether a plus user may have the offline feature, and wants the answer
// and the revision header of the given bundle.
func (r *replica) checkRevisionAndOffline(t *testing.T, revision, reason string) {
	t.Helper()
	tok, err := http.Post(r.base+"/dev/token", "application/json",
		strings.NewReader(`{"sub": "alex@example.com", "tier": "plus"}`))
	if err != nil {
		t.Fatal(err)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(tok.Body).Decode(&tr)
	tok.Body.Close()
	if err != nil {
		t.Fatalf("replica %s: POST /dev/token: %v", r.name, err)
	}

	req, _ := http.NewRequest(http.MethodPost, r.base+"/authz/check",
		strings.NewReader(`{"kind": "feature", "name": "offline"}`))
	req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		Reason   string `json:"reason"`
		Revision string `json:"revision"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatalf("replica %s: /authz/check: %v", r.name, err)
	}
	header := resp.Header.Get("Tierguard-Revision")
	if d.Reason != reason || d.Revision != revision || header != revision {
		t.Errorf("replica %s: plus asking for offline = %q on revision %q "+
			"(Tierguard-Revision %q), want %q on %q",
			r.name, d.Reason, d.Revision, header, reason, revision)
	}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// environWithout is the environment minus variables with prefix, so a
// developer's own TIERGUARD_* settings do not leak into the replicas.
func environWithout(prefix string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			env = append(env, kv)
		}
	}
	return env
}
