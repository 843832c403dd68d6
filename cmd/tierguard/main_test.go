package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// run executes the root command as a user would, returning its output and
// exit code.
func run(t *testing.T, ctx context.Context, args ...string) (string, int) {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		out.WriteString("\nerror: " + err.Error())
		return out.String(), exitCode(err)
	}
	return out.String(), 0
}

func TestCheck(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--tier", "free", "api", "GET", "/api/treasure-map"}, 1, "deny: tier_required (tier free, needs plus)"},
		{[]string{"--tier", "plus", "api", "get", "/api/videos/42"}, 0, `allow: allowed (tier plus)`},
		{[]string{"--tier", "plus", "api", "GET", "/api/videos/42"}, 0, `template "/api/videos/:id"`},
		{[]string{"--tier", "anonymous", "ui", "/protected-content"}, 1, "deny: unauthenticated (tier anonymous, needs plus)"},
		{[]string{"--tier", "pro", "ui", "/admin"}, 0, "allow: allowed (tier pro)"},
		{[]string{"--tier", "plus", "resource", "treasure-map", "read"}, 0, "allow"},
		{[]string{"--tier", "plus", "feature", "4k"}, 1, "needs pro"},
		{[]string{"--tier", "plus", "feature", "8k"}, 1, "feature_unknown"},
		{[]string{"--tier", "plus", "ui", "/admin", "--explain"}, 1, "_ui_tier(template)"},
		{[]string{"--tier", "plus", "teleport", "x"}, 2, "unknown check kind"},
		{[]string{"--tier", "plus", "api", "GET"}, 2, "api takes 2 arguments"},
		{[]string{"api", "GET", "/api/news"}, 2, "exactly one of --tier and --token"},
		{[]string{"--token", "not-a-jwt", "feature", "hd"}, 2, "token_malformed"},
		{[]string{"--policies", "/nonexistent", "--tier", "pro", "feature", "hd"}, 2, "error"},
		{[]string{"--tier", "gold", "feature", "hd"}, 2, "not a tier of this policy"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, code := run(t, context.Background(), append([]string{"check"}, tt.args...)...)
			if code != tt.code || !strings.Contains(out, tt.want) {
				t.Errorf("check %v: exit %d, output:\n%s\nwant exit %d and %q", tt.args, code, out, tt.code, tt.want)
			}
		})
	}
}

func TestCheckJSONAndToken(t *testing.T) {
	// An unsigned Okta-shaped token: check reads claims offline.
	token := "eyJhbGciOiJSUzI1NiJ9." + b64(`{"iss":"https://example.okta.com/oauth2/default","sub":"alex@example.com","groups":["Everyone","tier-plus"]}`) + ".c2ln"
	out, code := run(t, context.Background(), "check", "--token", token, "--json", "api", "GET", "/api/treasure-map")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	var got struct {
		Decision struct {
			Allow bool   `json:"allow"`
			Tier  string `json:"tier"`
		} `json:"decision"`
		Check struct {
			Template string `json:"template"`
		} `json:"check"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
	if !got.Decision.Allow || got.Decision.Tier != "plus" || got.Check.Template != "/api/treasure-map" {
		t.Errorf("got %+v, want an allow for tier plus on /api/treasure-map", got)
	}
}

func TestServeRefusesBadSettings(t *testing.T) {
	dir := t.TempDir()
	badYAML := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badYAML, []byte("issuers:\n  - issuer: https://example.okta.com\n    audiense: x\n"), 0o644)
	badSkew := filepath.Join(dir, "skew.yaml")
	os.WriteFile(badSkew, []byte("issuers:\n  - issuer: https://example.okta.com\n    audience: x\n    clock_skew: soon\n"), 0o644)

	// Settings are checked before listening: a taken port must not hide
	// the real error.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().String()

	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no issuer", []string{}, nil, "no issuer to trust"},
		{"dev on a public address", []string{"--dev", "--addr", "0.0.0.0:0"}, nil, "loopback"},
		{"dev on a public address from the environment", []string{"--dev"}, map[string]string{"TIERGUARD_ADDR": "0.0.0.0:0"}, "loopback"},
		{"plain http issuer off loopback", []string{"--issuer", "http://example.com/oauth2/default", "--audience", "api://default"}, nil, "identity"},
		{"issuer without audience", []string{"--issuer", "https://example.okta.com/oauth2/default"}, nil, "audience"},
		{"bad issuer while the port is taken", []string{"--addr", busy, "--issuer", "https://example.okta.com/oauth2/default"}, nil, "audience"},
		{"audience without issuer", []string{"--audience", "api://default"}, nil, "need --issuer"},
		{"unknown key in the config file", []string{"--config", badYAML}, nil, "audiense"},
		{"bad duration", []string{"--config", badSkew}, nil, "clock_skew"},
		{"wildcard CORS", []string{"--dev", "--addr", "127.0.0.1:0", "--cors-origin", "*"}, nil, "CORS"},
		{"bad log level", []string{"--dev", "--log-level", "loud"}, nil, "--log-level"},
		{"policies that fail to load", []string{"--dev", "--addr", "127.0.0.1:0", "--policies", dir}, nil, "policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			out, code := run(t, context.Background(), append([]string{"serve"}, tt.args...)...)
			if code == 0 || !strings.Contains(out, tt.want) {
				t.Errorf("serve %v: exit %d, output:\n%s\nwant a failure mentioning %q", tt.args, code, out, tt.want)
			}
		})
	}
}

// TestServeDev runs `tierguard serve --dev` in-process as a newcomer would,
// follows the banner's instructions, and stops it as SIGTERM would.
func TestServeDev(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root := newRootCommand()
	out := &lockedBuffer{}
	root.SetOut(out)
	root.SetErr(out)
	root.SetArgs([]string{"serve", "--dev", "--addr", "127.0.0.1:0", "--log-level", "warn"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	base := ""
	re := regexp.MustCompile(`dev mode on (http://127\.0\.0\.1:\d+)`)
	deadline := time.Now().Add(20 * time.Second)
	for base == "" {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no banner within 20s:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		resp, err := http.Get(base + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(50 * time.Millisecond)
	}

	resp, err := http.Post(base+"/dev/token", "application/json", strings.NewReader(`{"sub": "alex@example.com", "tier": "plus"}`))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	req, _ := http.NewRequest("GET", base+"/api/treasure-map", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("plus token on /api/treasure-map = %d, want 200", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v after shutdown, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop within 15s of its context ending")
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
