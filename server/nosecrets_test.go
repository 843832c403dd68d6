package server_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/tierguard/tierguard/server"
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

var _ = server.MaxBatch
