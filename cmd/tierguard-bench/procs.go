package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// binaries are the two servers, built once per run.
type binaries struct {
	opa, tierguard string
}

// build finds the OPA CLI at the version go.mod pins, as `go tool opa`
// runs it (`go tool -n opa` names the binary the build cache keeps, and
// builds it when missing), and builds tierguard into dir.
func build(ctx context.Context, dir string, log io.Writer) (binaries, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return binaries{}, err
	}
	b := binaries{tierguard: filepath.Join(dir, "tierguard")}

	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "tool", "-n", "opa")
	cmd.Dir = root
	out, err := cmd.Output()
	b.opa = strings.TrimSpace(string(out))
	if st, statErr := os.Stat(b.opa); err != nil || statErr != nil || st.Mode()&0o111 == 0 {
		// An older go, or a cache that lost the binary: build it here.
		b.opa = filepath.Join(dir, "opa")
		if err := goBuild(ctx, root, b.opa, "github.com/open-policy-agent/opa"); err != nil {
			return b, err
		}
	}
	fmt.Fprintf(log, "OPA CLI %s (%s)\n", b.opa, time.Since(start).Round(100*time.Millisecond))

	start = time.Now()
	if err := goBuild(ctx, root, b.tierguard, "./cmd/tierguard"); err != nil {
		return b, err
	}
	fmt.Fprintf(log, "built tierguard in %s\n", time.Since(start).Round(100*time.Millisecond))
	return b, nil
}

func goBuild(ctx context.Context, root, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run from inside the tierguard module (go run ./cmd/tierguard-bench)")
	}
	return filepath.Dir(gomod), nil
}

// proc is a server the bench started. Its output goes to a log file in
// the work directory.
type proc struct {
	name string
	base string // http://127.0.0.1:port
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	// tableOff is why a tierguard serves without its decision table, when
	// it does: the rows then measure full evaluation, and say so.
	tableOff string
}

// procs tracks every started process, so that every exit path stops them.
type procs struct {
	mu  sync.Mutex
	all []*proc
}

// start runs bin with args, where an argument "ADDR" becomes a free
// 127.0.0.1 port, in dir, its output to dir/name.log.
func (ps *procs) start(name, bin, dir string, args ...string) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args = slices.Clone(args)
	for i, a := range args {
		if a == "ADDR" {
			args[i] = addr
		}
	}
	logPath := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, base: "http://" + addr, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	ps.mu.Lock()
	ps.all = append(ps.all, p)
	ps.mu.Unlock()
	return p, nil
}

// stop asks p to end (SIGTERM, the servers' graceful shutdown), and kills
// it after a few seconds.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(terminate)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// stopAll stops every process still running.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	all := ps.all
	ps.all = nil
	ps.mu.Unlock()
	for _, p := range all {
		p.stop()
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitOK polls url until it answers 200, p exits, or the timeout passes.
func (p *proc) waitOK(ctx context.Context, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("status %d: %.300s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready; see %s:\n%s", p.name, p.log, p.tail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s after %s (%s); see %s", p.name, path, timeout, last, p.log)
		}
	}
}

// tail is the end of p's log, for errors.
func (p *proc) tail() string {
	raw, _ := os.ReadFile(p.log)
	if len(raw) > 2000 {
		raw = raw[len(raw)-2000:]
	}
	return string(raw)
}

// tableDisabled is the reason a tierguard logged for disabling a
// decision table, or "".
func (p *proc) tableDisabled() string {
	raw, _ := os.ReadFile(p.log)
	for _, line := range bytes.Split(raw, []byte("\n")) {
		var entry struct {
			Msg    string `json:"msg"`
			Reason string `json:"reason"`
		}
		if json.Unmarshal(line, &entry) == nil && strings.HasPrefix(entry.Msg, "decision table disabled") {
			return entry.Reason
		}
	}
	return ""
}

// devToken asks a tierguard --dev for an access token of the given tier.
func devToken(ctx context.Context, base, tier string) (string, error) {
	body := strings.NewReader(`{"sub": "bench@example.com", "tier": "` + tier + `"}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/dev/token", body)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("dev token from %s: status %d, %v", base, resp.StatusCode, err)
	}
	return tok.AccessToken, nil
}

// tableShare sends probes to a tierguard one at a time and returns the
// share of them its metrics timed under 5 µs: decision-table lookups. A
// full evaluation takes 10 µs or more, so a share near 1 means the
// revision's table is built, checked and serving. tierguard does not
// report the table's state over HTTP; its "decision table ready" log line
// is at info level, which the bench turns off with the access log.
func tableShare(ctx context.Context, base string, probe endpoint, probes int) (float64, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	fast0, all0, err := decisionTimes(ctx, client, base)
	if err != nil {
		return 0, err
	}
	for range probes {
		if err := askOnce(ctx, client, probe); err != nil {
			return 0, err
		}
	}
	fast1, all1, err := decisionTimes(ctx, client, base)
	if err != nil {
		return 0, err
	}
	if all1 <= all0 {
		return 0, errors.New("tierguard's decision metrics did not move")
	}
	return (fast1 - fast0) / (all1 - all0), nil
}

// decisionTimes reads how many API decisions tierguard's histogram holds
// in its 5 µs bucket and in all.
func decisionTimes(ctx context.Context, c *http.Client, base string) (fast, all float64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	const (
		bucket = `tierguard_decision_duration_seconds_bucket{kind="api",le="5e-06"} `
		count  = `tierguard_decision_duration_seconds_count{kind="api"} `
	)
	var seen int
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		for _, m := range []struct {
			prefix string
			dst    *float64
		}{{bucket, &fast}, {count, &all}} {
			if v, ok := strings.CutPrefix(line, m.prefix); ok {
				if *m.dst, err = strconv.ParseFloat(v, 64); err != nil {
					return 0, 0, err
				}
				seen++
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if seen != 2 {
		// Before the first API decision the series does not exist yet.
		return 0, 0, nil
	}
	return fast, all, nil
}
