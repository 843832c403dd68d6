package server_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/tierguard/tierguard/server"
	"github.com/tierguard/tierguard/server/identity"
)

// jwtLike matches anything shaped like a compact JWS: three dot-separated
// base64url runs of some length. No log line has a reason to hold one.
var jwtLike = regexp.MustCompile(`[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)

// assertNoSecrets fails when logs hold a JWT-shaped string, or the
// payload or signature of any of secrets (tokens, header values).
func assertNoSecrets(t testing.TB, logs string, secrets ...string) {
	t.Helper()
	if m := jwtLike.FindString(logs); m != "" {
		t.Errorf("the log holds a JWT-shaped string %.60q...", m)
	}
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		pieces := []string{secret}
		if parts := strings.Split(secret, "."); len(parts) == 3 {
			pieces = parts[1:] // the header of a JWT is no secret
		}
		for _, p := range pieces {
			if len(p) >= 8 && strings.Contains(logs, p) {
				t.Errorf("the log holds secret text %.24q...", p)
			}
		}
	}
}

func tokenValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func decodeJSON(t testing.TB, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Errorf("body is not JSON: %v: %.200s", err, body)
	}
}

// TestNoSecretInLogs runs a session that puts credentials everywhere a
// client might, by design or by mistake: both token headers, bad and
// mismatched tokens, a token in the query, in the path, in a check, in
// forward auth's headers and in a header over the size limit. Nothing of
// any of them may reach a log line.
func TestNoSecretInLogs(t *testing.T) {
	s := startService(t, server.Config{
		PEPClients: []server.PEPClient{{ClientID: identity.DevClientID}},
	})
	plus, err := s.dev.Mint(identity.TokenRequest{Sub: "alex@example.com", Tier: "plus"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.dev.Mint(identity.TokenRequest{Sub: "sam@example.com", Tier: "pro"})
	if err != nil {
		t.Fatal(err)
	}
	at, id := plus.AccessToken, plus.IDToken
	parts := strings.Split(at, ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	secrets := []string{at, id, other.AccessToken, other.IDToken, tampered}

	s.do(t, "GET", "/api/treasure-map", at, nil, "X-ID-Token", id)
	s.do(t, "GET", "/api/profile", at, nil, "X-ID-Token", other.IDToken) // not bound: 401
	s.do(t, "GET", "/api/treasure-map", tampered, nil)
	s.do(t, "GET", "/api/treasure-map", "", nil, "X-ID-Token", id) // an ID token alone: 400
	s.do(t, "GET", "/api/treasure-map", "", nil, "Authorization", "Bearer "+at+" "+id)
	s.do(t, "GET", "/api/treasure-map", "", nil, "Authorization", "Basic "+at)
	s.do(t, "GET", "/api/treasure-map?access_token="+at, "", nil)
	s.do(t, "GET", "/api/videos/"+at, at, nil)
	s.do(t, "GET", "/api/"+at, "", nil)
	s.do(t, "GET", "/"+at, "", nil)
	s.do(t, "POST", "/authz/check", at, map[string]any{"kind": "api", "method": "GET", "path": "/api/videos/" + at})
	s.do(t, "POST", "/authz/check", at, map[string]any{"kind": "feature", "name": at})
	s.do(t, "POST", "/authz/check", at, map[string]any{"kind": "nope", "name": at})
	s.do(t, "GET", "/authz/forward", at, nil, "X-Original-Method", "GET",
		"X-Original-URI", "/api/treasure-map?token="+id)
	s.do(t, "GET", "/authz/routes", at, nil, "X-ID-Token", id)
	s.do(t, "POST", "/access/v1/evaluation", at, map[string]any{
		"subject":  map[string]any{"type": "user", "id": at, "properties": map[string]any{"token": id}},
		"action":   map[string]any{"name": "GET"},
		"resource": map[string]any{"type": "route", "id": "/api/treasure-map?t=" + id},
	})
	s.rawDo(t, "GET", "/api/news", "Authorization", "Bearer "+at, "X-Big", strings.Repeat(at, 5000))

	logs := s.logs.String()
	if !strings.Contains(logs, `"msg":"request"`) {
		t.Fatalf("no access log captured:\n%s", logs)
	}
	assertNoSecrets(t, logs, secrets...)
	if t.Failed() {
		for _, line := range strings.Split(logs, "\n") {
			if jwtLike.MatchString(line) {
				t.Logf("leaking line: %.300s", line)
			}
		}
	}
}
