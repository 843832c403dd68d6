package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tierguard/tierguard/decision"
)

// soakDuration is the load test's length: about a minute under CI or with
// SOAK=1, a few seconds otherwise.
func soakDuration() time.Duration {
	if os.Getenv("CI") == "true" || os.Getenv("SOAK") == "1" {
		return 60 * time.Second
	}
	return 5 * time.Second
}

// tierguardProcess is `tierguard serve --dev` as a separate process, built
// from this tree, with everything it logs.
type tierguardProcess struct {
	cmd    *exec.Cmd
	base   string
	stderr *syncBuffer
}

func startTierguardProcess(t *testing.T) *tierguardProcess {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build tierguard with")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "tierguard")
	build := exec.Command("go", "build", "-o", bin, "github.com/tierguard/tierguard/cmd/tierguard")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	p := &tierguardProcess{stderr: &syncBuffer{}}
	p.cmd = exec.Command(bin, "serve", "--dev", "--addr", "127.0.0.1:0")
	p.cmd.Dir = dir // no web/dist here: the API alone
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = &syncBuffer{}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
	})

	re := regexp.MustCompile(`"msg":"serving","addr":"(http://127\.0\.0\.1:\d+)"`)
	deadline := time.Now().Add(30 * time.Second)
	for p.base == "" {
		if m := re.FindStringSubmatch(p.stderr.String()); m != nil {
			p.base = m[1]
		} else if time.Now().After(deadline) || p.cmd.ProcessState != nil {
			t.Fatalf("tierguard did not start serving:\n%s", p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		resp, err := http.Get(p.base + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("tierguard never ready:\n%s", p.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rssKB is the process's resident set from /proc/<pid>/status.
func (p *tierguardProcess) rssKB(t *testing.T) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Skipf("no /proc to read memory from: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				t.Fatalf("VmRSS %q: %v", rest, err)
			}
			return kb
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}

// soakCaller is one identity the load uses: a tier's token, or a broken
// credential with the error it must get on every route.
type soakCaller struct {
	name   string
	tier   string // "" for a broken credential
	header string // the Authorization value, "" for anonymous
	status int    // for a broken credential: 400 or 401
	reason string
}

// soakRequest is one request the load sends and the answer the policy
// gives it, computed from the engine directly.
type soakRequest struct {
	method, path string
	body         any
	kind         string // "api" or "check"
	want         map[string]decision.Decision
}

// TestLoadAndSoak runs tierguard as its own process under 16 concurrent
// clients mixing tiers, invalid credentials, API routes and /authz/check,
// and checks every answer against the policy's own (the engine, asked
// directly), that there is no 5xx, that resident memory at the end is
// within 20 % of after warm-up, and that no credential reached the log.
func TestLoadAndSoak(t *testing.T) {
	total := soakDuration()
	warmup := total / 4
	proc := startTierguardProcess(t)

	ctx := context.Background()
	p, err := decision.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	engine, err := decision.NewEngine(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	tables := engine.Current().Tables()

	var callers []soakCaller
	var secrets []string
	callers = append(callers, soakCaller{name: "anonymous", tier: "anonymous"})
	for _, tier := range []string{"free", "plus", "pro"} {
		tok := soakMint(t, proc.base, tier)
		secrets = append(secrets, tok)
		callers = append(callers, soakCaller{name: tier, tier: tier, header: "Bearer " + tok})
	}
	parts := strings.Split(strings.TrimPrefix(callers[3].header, "Bearer "), ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	callers = append(callers,
		soakCaller{name: "tampered", header: "Bearer " + tampered, status: 401, reason: "token_signature"},
		soakCaller{name: "garbage", header: "Bearer x.y.z", status: 401, reason: "token_malformed"},
		soakCaller{name: "basic", header: "Basic dXNlcjpwYXNz", status: 400, reason: "invalid_request"},
	)
	secrets = append(secrets, tampered)

	subjectOf := func(tier string) decision.Subject {
		if tier == "anonymous" {
			return decision.Subject{}
		}
		return decision.Subject{Authenticated: true, Subject: tier + "@example.com",
			Claims: map[string]any{"tier": tier}}
	}
	expect := func(check decision.Check) map[string]decision.Decision {
		out := map[string]decision.Decision{}
		for _, c := range callers[:4] {
			out[c.tier] = engine.Decide(ctx, decision.Input{Subject: subjectOf(c.tier), Check: check})
		}
		return out
	}
	var reqs []soakRequest
	for _, r := range tables.APIRoutes {
		path := concrete(r.Template)
		check := decision.Check{Kind: decision.KindAPI, Method: r.Method, Template: r.Template, Path: path}
		want := expect(check)
		reqs = append(reqs,
			soakRequest{method: r.Method, path: path, body: bodyFor(r.Method), kind: "api", want: want},
			soakRequest{method: "POST", path: "/authz/check", kind: "check", want: want,
				body: map[string]any{"kind": "api", "method": r.Method, "path": path}})
	}
	for _, page := range tables.UIRoutes {
		path := concrete(page.Template)
		want := expect(decision.Check{Kind: decision.KindUI, Template: page.Template, Path: path})
		reqs = append(reqs, soakRequest{method: "POST", path: "/authz/check", kind: "check", want: want,
			body: map[string]any{"kind": "ui", "path": path}})
	}
	for _, name := range tables.Features {
		want := expect(decision.Check{Kind: decision.KindFeature, Name: name})
		reqs = append(reqs, soakRequest{method: "POST", path: "/authz/check", kind: "check", want: want,
			body: map[string]any{"kind": "feature", "name": name}})
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute,
	}}
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		sent     atomic.Int64
		mu       sync.Mutex
		failures []string
		statuses = map[int]int{}
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for !stop.Load() {
				caller := callers[rng.IntN(len(callers))]
				req := reqs[rng.IntN(len(reqs))]
				status, body, err := soakDo(client, proc.base, req, caller.header)
				sent.Add(1)
				mu.Lock()
				statuses[status]++
				mu.Unlock()
				if err != nil {
					fail("%s %s %s: %v", caller.name, req.method, req.path, err)
					continue
				}
				if msg := soakJudge(caller, req, status, body); msg != "" {
					fail("%s %s %s %v: %s", caller.name, req.method, req.path, req.body, msg)
				}
			}
		}()
	}

	time.Sleep(warmup)
	warm := proc.rssKB(t)
	time.Sleep(total - warmup)
	end := proc.rssKB(t)
	stop.Store(true)
	wg.Wait()

	n := sent.Load()
	t.Logf("%d requests in %v (%.0f/s) from 16 clients; statuses %v", n, total,
		float64(n)/total.Seconds(), statuses)
	t.Logf("resident memory: %d KiB after %v of warm-up, %d KiB at the end (%+.1f%%)",
		warm, warmup, end, 100*float64(end-warm)/float64(warm))
	if len(failures) > 0 {
		t.Errorf("answers that differ from the policy's (first %d):\n%s", len(failures),
			strings.Join(failures, "\n"))
	}
	for status, count := range statuses {
		if status >= 500 {
			t.Errorf("%d answers with status %d", count, status)
		}
	}
	if float64(end) > 1.2*float64(warm) {
		t.Errorf("resident memory grew from %d KiB to %d KiB, more than 20%%", warm, end)
	}
	if n < 100 {
		t.Errorf("only %d requests were sent", n)
	}
	assertNoSecrets(t, proc.stderr.String(), secrets...)
}

// soakMint asks the process's dev issuer for an access token of tier.
func soakMint(t *testing.T, base, tier string) string {
	t.Helper()
	body := `{"sub": "` + tier + `@example.com", "tier": "` + tier + `"}`
	resp, err := http.Post(base+"/dev/token", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("POST /dev/token: %d %v", resp.StatusCode, err)
	}
	return tr.AccessToken
}

func soakDo(client *http.Client, base string, r soakRequest, auth string) (int, map[string]any, error) {
	var rd *strings.Reader
	if r.body != nil {
		b, _ := json.Marshal(r.body)
		rd = strings.NewReader(string(b))
	} else {
		rd = strings.NewReader("")
	}
	req, err := http.NewRequest(r.method, base+r.path, rd)
	if err != nil {
		return 0, nil, err
	}
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var body map[string]any
	if resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return resp.StatusCode, nil, fmt.Errorf("status %d, body not JSON: %w", resp.StatusCode, err)
		}
	}
	return resp.StatusCode, body, nil
}

// soakJudge compares one answer with the policy's; "" when they agree.
func soakJudge(caller soakCaller, req soakRequest, status int, body map[string]any) string {
	if caller.tier == "" {
		if status != caller.status || body["reason"] != caller.reason {
			return fmt.Sprintf("%d %v, want %d %s", status, body, caller.status, caller.reason)
		}
		return ""
	}
	want := req.want[caller.tier]
	var wantTier any
	if want.RequiredTier != "" {
		wantTier = want.RequiredTier
	}
	if req.kind == "check" {
		if status != 200 || body["allow"] != want.Allow || body["reason"] != want.Reason ||
			body["required_tier"] != wantTier {
			return fmt.Sprintf("%d %v, want %+v", status, body, want)
		}
		return ""
	}
	switch {
	case want.Allow:
		if status < 200 || status > 299 {
			return fmt.Sprintf("%d %v, the policy allows", status, body)
		}
	case caller.tier == "anonymous" && want.Reason == decision.ReasonUnauthenticated:
		if status != 401 || body["reason"] != want.Reason || body["required_tier"] != wantTier {
			return fmt.Sprintf("%d %v, want 401 %+v", status, body, want)
		}
	default:
		if status != 403 || body["reason"] != want.Reason || body["required_tier"] != wantTier {
			return fmt.Sprintf("%d %v, want 403 %+v", status, body, want)
		}
	}
	return ""
}
