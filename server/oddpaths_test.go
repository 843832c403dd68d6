package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tierguard/tierguard/server"
)

// rawResponse is what came back for a request written byte for byte.
type rawResponse struct {
	status int
	header http.Header
	body   string
}

// rawDo writes "METHOD target HTTP/1.1" and the given headers on a fresh
// TCP connection, so that the target reaches the server exactly as
// written: Go's client would clean or re-escape it.
func (s *service) rawDo(t testing.TB, method, target string, header ...string) rawResponse {
	t.Helper()
	addr := strings.TrimPrefix(s.base, "http://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))

	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, addr)
	for i := 0; i+1 < len(header); i += 2 {
		fmt.Fprintf(w, "%s: %s\r\n", header[i], header[i+1])
	}
	fmt.Fprint(w, "\r\n")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}

	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %.80s: reading the response: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// pointAnswer is one enforcement point's answer, reduced to what the three
// must agree on.
type pointAnswer struct {
	allow  bool
	reason string
	needs  string
}

func (v pointAnswer) String() string {
	if v.allow {
		return "allow"
	}
	return fmt.Sprintf("deny %s (needs %q)", v.reason, v.needs)
}

// askCheck is /authz/check's pointAnswer on an api check of method and path.
func (s *service) askCheck(t testing.TB, token, method, path string) (pointAnswer, response) {
	t.Helper()
	r := s.do(t, "POST", "/authz/check", token, map[string]any{"kind": "api", "method": method, "path": path})
	if r.status != 200 {
		return pointAnswer{}, r
	}
	needs, _ := r.body["required_tier"].(string)
	reason, _ := r.body["reason"].(string)
	return pointAnswer{allow: r.body["allow"] == true, reason: reason, needs: needs}, r
}

// askForward is forward auth's pointAnswer, as nginx's auth_request asks it.
func (s *service) askForward(t testing.TB, token, method, uri string) (pointAnswer, response) {
	t.Helper()
	r := s.do(t, "GET", "/authz/forward", token, nil,
		"X-Original-Method", method, "X-Original-URI", uri)
	v := pointAnswer{allow: r.status == 200, reason: r.header.Get("Tierguard-Reason"),
		needs: r.header.Get("Tierguard-Required-Tier")}
	if v.allow {
		v.reason, v.needs = "allowed", ""
	}
	return v, r
}

// oddTargets are request targets that spell, or nearly spell, a protected
// route in a way some component might normalise differently.
func oddTargets(addr string) []string {
	long := strings.Repeat("a", 8<<10)
	return []string{
		"/api/treasure-map",
		"/api/treasure-map?x=1",
		"/api/treasure-map?access=plus&tier=pro",
		// trailing and doubled slashes
		"/api/treasure-map/",
		"/api/treasure-map//",
		"//api/treasure-map",
		"/api//treasure-map",
		"/api/admin/",
		// dot segments, raw and encoded
		"/api/./treasure-map",
		"/api/videos/../treasure-map",
		"/api/videos/../admin",
		"/api/news/../treasure-map",
		"/api/videos/%2e%2e/admin",
		"/api/videos/%2E%2E/treasure-map",
		"/api/news/..%2ftreasure-map",
		"/api/news/%2e%2e%2ftreasure-map",
		"/api/videos/1/download/..",
		"/api/videos/1/./download",
		// encoded slashes and other escapes
		"/api/videos/1%2Fdownload",
		"/api/videos/1%2fdownload",
		"/api%2Ftreasure-map",
		"/api/treasure%2Dmap",
		"/api/%74reasure-map",
		"/api/treasure-map%2F",
		"/api/treasure-map%3Bx=1",
		"/api/treasure-map%00",
		"/api/treasure-map%20",
		"/api/treasure-map%",
		"/api/videos/%31",
		// case
		"/API/treasure-map",
		"/Api/treasure-map",
		"/api/Treasure-Map",
		"/api/TREASURE-MAP",
		"/api/ADMIN",
		// ; parameters
		"/api/treasure-map;x=1",
		"/api/treasure-map;",
		"/api;x=1/treasure-map",
		"/api/videos/1;/download",
		"/api/videos/1/download;jsessionid=1",
		// unicode, raw and percent-encoded
		"/api/tréasure-map",
		"/api/treasure\u2010map",
		"/api/\uff54reasure-map",
		"/api/treasure-map\u200b",
		"/api/tr%C3%A9asure-map",
		"/api/treasure%E2%80%90map",
		"/api/videos/%E2%80%AE1",
		// backslashes and fragments a client should never send
		"/api\\treasure-map",
		"/api/treasure-map#x",
		// very long
		"/api/videos/" + long,
		"/api/videos/1/download?" + long,
		"/api/treasure-map?" + long,
		"/api/" + long + "/../treasure-map",
		// absolute form
		"http://" + addr + "/api/treasure-map",
		"http://" + addr + "/api/videos/1/download",
		"http://evil.example/api/treasure-map",
		"HTTP://" + addr + "/api/admin",
		"http://" + addr + "/api/videos/../admin",
		"http://" + addr + "//api/treasure-map",
	}
}

// originForm is target as nginx's $request_uri holds it: an absolute-form
// target loses its scheme and authority, byte for byte otherwise.
func originForm(target string) string {
	_, rest, ok := strings.Cut(target, "://")
	if !ok {
		return target
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return rest[i:]
	}
	return "/"
}

// loggedRoute reads the route template the access log recorded for the
// request with id.
func loggedRoute(logs, id string) (string, bool) {
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, `"request_id":"`+id+`"`) || !strings.Contains(line, `"msg":"request"`) {
			continue
		}
		var entry struct {
			Route string `json:"route"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil {
			return entry.Route, true
		}
	}
	return "", false
}

// protectedBodies are text only the handler of a route with a tier
// requirement writes, by the tier it needs.
var protectedBodies = []struct{ text, tier string }{
	{"X marks the spot", "plus"},
	{`"by_tier"`, "pro"},
	{"views_last_7_days", "pro"},
	{"download_url", "pro"},
}

var tierRank = map[string]int{"anonymous": 0, "free": 1, "plus": 2, "pro": 3}

// TestOddPathsAgree sends every odd target, as every tier, to the
// enforcing middleware (over a raw connection), to /authz/check and to
// forward auth, and holds them to one answer: nothing reaches a handler
// the policy denies, check and forward agree exactly, and a 401 or 403
// from the API says what check says.
func TestOddPathsAgree(t *testing.T) {
	s := startService(t, server.Config{})
	addr := strings.TrimPrefix(s.base, "http://")
	tokens := map[string]string{}
	for _, tier := range tiers {
		tokens[tier] = s.token(t, tier)
	}

	declared := map[string]bool{}
	for _, r := range s.engine.Current().Tables().APIRoutes {
		declared[r.Method+" "+r.Template] = true
	}
	var requestIDs []string

	for _, target := range oddTargets(addr) {
		// A proxy and the browser's guard see the origin form.
		asked := originForm(target)
		for _, tier := range tiers {
			token := tokens[tier]
			var auth []string
			if token != "" {
				auth = []string{"Authorization", "Bearer " + token}
			}
			requestID := fmt.Sprintf("odd-%d", len(requestIDs))
			requestIDs = append(requestIDs, requestID)
			real := s.rawDo(t, "GET", target, append(auth, "X-Request-Id", requestID)...)
			label := fmt.Sprintf("%s GET %.90q", tier, target)

			for _, pb := range protectedBodies {
				if strings.Contains(real.body, pb.text) && tierRank[tier] < tierRank[pb.tier] {
					t.Errorf("%s: %d with %s-only data: %.200s", label, real.status, pb.tier, real.body)
				}
			}

			fwd, fr := s.askForward(t, token, "GET", asked)
			if fr.status != 200 && fr.status != 401 && fr.status != 403 {
				t.Errorf("%s: forward auth = %d %s, want 200, 401 or 403", label, fr.status, fr.raw)
				continue
			}
			chk, cr := s.askCheck(t, token, "GET", asked)
			if len(asked) > server.MaxPathLen {
				// The check API refuses a path past its field limit, by name.
				if cr.status != 400 || cr.body["field"] != "path" {
					t.Errorf("%s: /authz/check with a %d-byte path = %d %s, want 400 on path",
						label, len(asked), cr.status, cr.raw)
				}
				chk = fwd
			} else if cr.status != 200 {
				t.Errorf("%s: /authz/check = %d %s", label, cr.status, cr.raw)
				continue
			}

			if chk != fwd {
				t.Errorf("%s: /authz/check says %v, forward auth says %v", label, chk, fwd)
			}
			if real.status >= 200 && real.status < 300 && !chk.allow {
				t.Errorf("%s: the API answered %d, but the policy denies it: %v", label, real.status, chk)
			}
			if real.status >= 500 {
				t.Errorf("%s: the API answered %d: %.200s", label, real.status, real.body)
			}
			if real.status == 401 || real.status == 403 {
				var p struct {
					Reason       string  `json:"reason"`
					RequiredTier *string `json:"required_tier"`
				}
				decodeJSON(t, real.body, &p)
				needs := ""
				if p.RequiredTier != nil {
					needs = *p.RequiredTier
				}
				if got := (pointAnswer{reason: p.Reason, needs: needs}); got != chk {
					t.Errorf("%s: the API denied with %v, /authz/check says %v", label, got, chk)
				}
			}
			if chk.allow && (real.status == 401 || real.status == 403) {
				t.Errorf("%s: /authz/check allows, the API answered %d", label, real.status)
			}

			// The template Echo matched for the real request, from the
			// access log, is a route of the policy exactly when check and
			// forward auth resolved one. A fragment is the one documented
			// difference: sent raw it is part of the path, and the resolver
			// drops it.
			route, ok := loggedRoute(s.logs.String(), requestID)
			if !ok && real.status == 400 {
				// net/http refused the request line before any routing.
				if chk.reason != "route_unknown" {
					t.Errorf("%s: the server refused the target, /authz/check says %v", label, chk)
				}
				continue
			}
			if !ok {
				t.Errorf("%s: %d without an access log line for request %s", label, real.status, requestID)
				continue
			}
			if declared["GET "+route] == (chk.reason == "route_unknown") && !strings.Contains(asked, "#") {
				t.Errorf("%s: Echo routed the request to %q, but /authz/check says %v", label, route, chk)
			}
		}
	}
	// Forward auth reads origin-form URIs, as nginx and Traefik send them;
	// an absolute-form one is denied, never resolved by a guess.
	fwd, _ := s.askForward(t, tokens["pro"], "GET", "http://"+addr+"/api/treasure-map")
	if fwd.allow || fwd.reason != "route_unknown" {
		t.Errorf("forward auth on an absolute-form X-Original-URI = %v, want deny route_unknown", fwd)
	}
	assertNoSecrets(t, s.logs.String(), tokenValues(tokens)...)
}

// Method-override headers are not honoured anywhere: the method on the
// request line is the method decided.
func TestMethodOverrideNeverChangesADecision(t *testing.T) {
	s := startService(t, server.Config{})
	free, plus := s.token(t, "free"), s.token(t, "plus")
	overrides := []string{"X-HTTP-Method-Override", "X-Method-Override", "X-HTTP-Method"}

	tests := []struct {
		token, method, path string
		status              int
	}{
		{free, "GET", "/api/treasure-map", 403},
		{plus, "GET", "/api/treasure-map", 200},
		{free, "POST", "/api/playlists", 403}, // a plus route
		{plus, "GET", "/api/playlists", 200},
		{free, "GET", "/api/videos/1/download", 403},
		{"", "GET", "/api/news", 200},
	}
	for _, tt := range tests {
		for _, name := range overrides {
			for _, to := range []string{"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "get"} {
				r := s.do(t, tt.method, tt.path, tt.token, bodyFor(tt.method), name, to)
				if r.status != tt.status {
					t.Errorf("%s %s with %s: %s = %d, want %d as without it",
						tt.method, tt.path, name, to, r.status, tt.status)
				}
				fr := s.do(t, "GET", "/authz/forward", tt.token, nil, name, to,
					"X-Original-Method", tt.method, "X-Original-URI", tt.path)
				want := tt.status
				if want == 200 || fr.status == 200 {
					if (fr.status == 200) != (want == 200) {
						t.Errorf("forward %s %s with %s: %s = %d, want %d", tt.method, tt.path,
							name, to, fr.status, want)
					}
				}
			}
		}
	}
	// The playlists POST with a free token and an override to GET must not
	// have created anything or been decided as a GET.
	r := s.do(t, "POST", "/api/playlists", free, bodyFor("POST"), "X-HTTP-Method-Override", "GET")
	if r.status != 403 || r.body["required_tier"] != "plus" {
		t.Errorf("POST /api/playlists as free, overridden to GET = %d %s, want 403 needing plus", r.status, r.raw)
	}
}

// HEAD and OPTIONS, as SECURITY.md documents them. Echo does not answer
// HEAD from a GET route: HEAD or OPTIONS on an API route is, after
// authentication, a 405 method_not_allowed naming the route's methods in
// Allow (a problem body for OPTIONS, no body for HEAD). Neither ever
// carries data, and /authz/check and forward auth deny both as
// route_unknown.
func TestHeadAndOptions(t *testing.T) {
	s := startService(t, server.Config{})
	free, plus := s.token(t, "free"), s.token(t, "plus")

	for _, token := range []string{"", free, plus} {
		var auth []string
		if token != "" {
			auth = []string{"Authorization", "Bearer " + token}
		}
		for _, path := range []string{"/api/treasure-map", "/api/news", "/api/videos/1/download"} {
			r := s.rawDo(t, "HEAD", path, auth...)
			if r.status != 405 || r.body != "" || r.header.Get("Allow") != "GET" {
				t.Errorf("HEAD %s = %d %q Allow %q, want 405 without a body, Allow GET",
					path, r.status, r.body, r.header.Get("Allow"))
			}
			r = s.rawDo(t, "OPTIONS", path, auth...)
			if r.status != 405 || !strings.Contains(r.body, `"reason":"method_not_allowed"`) ||
				r.header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("OPTIONS %s = %d %q, want a 405 method_not_allowed problem", path, r.status, r.body)
			}
		}
		for _, method := range []string{"HEAD", "OPTIONS"} {
			v, cr := s.askCheck(t, token, method, "/api/treasure-map")
			if cr.status != 200 || v.allow || v.reason != "route_unknown" {
				t.Errorf("/authz/check %s /api/treasure-map = %d %s, want deny route_unknown",
					method, cr.status, cr.raw)
			}
			fv, _ := s.askForward(t, token, method, "/api/treasure-map")
			if fv.allow || fv.reason != "route_unknown" {
				t.Errorf("forward %s /api/treasure-map = %v, want deny route_unknown", method, fv)
			}
		}
	}

	r := s.rawDo(t, "HEAD", "/api/treasure-map", "Authorization", "Bearer x.y.z")
	if r.status != 401 || r.body != "" {
		t.Errorf("HEAD with a bad token = %d %q, want 401 without a body", r.status, r.body)
	}
	r = s.rawDo(t, "OPTIONS", "*")
	if r.status != 200 || r.body != "" {
		t.Errorf("OPTIONS * = %d %q, want net/http's empty 200", r.status, r.body)
	}
}

// A CORS preflight is answered by the CORS middleware before any route
// handler, for allowed and other origins, with or without a token.
func TestPreflightNeverCarriesData(t *testing.T) {
	origin := "https://app.example.com"
	s := startService(t, server.Config{CORSOrigins: []string{origin}})
	pro := s.token(t, "pro")
	for _, path := range []string{"/api/treasure-map", "/api/admin", "/api/videos/1/download",
		"/api/treasure-map/", "/api/nope", "/authz/routes"} {
		for _, from := range []string{origin, "https://evil.example.com", ""} {
			for _, token := range []string{"", pro, "x.y.z"} {
				h := []string{"Access-Control-Request-Method", "GET"}
				if from != "" {
					h = append(h, "Origin", from)
				}
				if token != "" {
					h = append(h, "Authorization", "Bearer "+token)
				}
				r := s.rawDo(t, "OPTIONS", path, h...)
				if r.status != 204 || r.body != "" {
					t.Errorf("preflight %s from %q (token %v) = %d %q, want 204 and no body",
						path, from, token != "", r.status, r.body)
				}
			}
		}
	}
}

// Forward auth routes every target the API routes, however long its query:
// it once refused targets over MaxPathLen as route_unknown, so a plus
// user's long query string was a 403 at the proxy and a 200 at the API.
func TestForwardRoutesLongTargets(t *testing.T) {
	s := startService(t, server.Config{})
	plus := s.token(t, "plus")
	for _, target := range []string{
		"/api/treasure-map?q=" + strings.Repeat("x", 5000),
		"/api/videos/" + strings.Repeat("1", 9000),
	} {
		real := s.rawDo(t, "GET", target, "Authorization", "Bearer "+plus)
		fwd, fr := s.askForward(t, plus, "GET", target)
		if !fwd.allow || real.status == 401 || real.status == 403 {
			t.Errorf("plus GET %.40s... (%d bytes): API %d, forward auth %d %v; want both to allow",
				target, len(target), real.status, fr.status, fwd)
		}
	}
}
