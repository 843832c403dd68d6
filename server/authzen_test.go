package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"

	"github.com/tierguard/tierguard/decision"
	"github.com/tierguard/tierguard/server"
	"github.com/tierguard/tierguard/server/identity"
)

// Subjects the AuthZEN tests ask about, and the tier data.subjects (or its
// absence) gives each. With no entry, an authenticated subject is free.
const (
	subAlice      = "alice@example.com"      // entry: pro
	subPaul       = "paul@example.com"       // entry: plus
	subNobody     = "nobody@example.com"     // no entry: free
	subElsewhere  = "elsewhere@example.com"  // entry pinned to another issuer: free here
	subDevPinned  = "devpinned@example.com"  // entry pinned to the dev issuer: plus
	subDowngraded = "downgraded@example.com" // entry: free, whatever a PEP asserts
)

// startAuthZEN starts the service with cfg and swaps in the embedded
// policy with per-subject entries. The dev issuer is the PEP's issuer, and
// its URL is known only once the listener is up, so the policy is loaded
// after start.
func startAuthZEN(t *testing.T, cfg server.Config) (*service, string) {
	t.Helper()
	s := startService(t, cfg)
	subjects := map[string]any{
		subAlice:      map[string]any{"tier": "pro"},
		subPaul:       map[string]any{"tier": "plus"},
		subElsewhere:  map[string]any{"tier": "pro", "iss": "https://elsewhere.example.com"},
		subDevPinned:  map[string]any{"tier": "plus", "iss": s.base + "/dev"},
		subDowngraded: map[string]any{"tier": "free"},
	}
	if _, err := s.engine.Load(context.Background(), azPolicyWithSubjects(t, subjects)); err != nil {
		t.Fatal(err)
	}
	pep, err := s.dev.Mint(identity.TokenRequest{Sub: "gateway"})
	if err != nil {
		t.Fatal(err)
	}
	return s, pep.AccessToken
}

// azPEPConfig makes the dev client, whose tokens the tests mint, the PEP.
func azPEPConfig(trusted bool) server.Config {
	return server.Config{PEPClients: []server.PEPClient{
		{ClientID: identity.DevClientID, TrustSubjectProperties: trusted},
	}}
}

func azPolicyWithSubjects(t testing.TB, subjects map[string]any) *decision.Policy {
	t.Helper()
	data, err := readPolicyFile("tierguard/data.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	doc["subjects"] = subjects
	module, err := readPolicyFile("tierguard/authz/authz.rego")
	if err != nil {
		t.Fatal(err)
	}
	p, err := decision.LoadFS(fstest.MapFS{
		"tierguard/data.json":        {Data: []byte(mustJSON(doc))},
		"tierguard/authz/authz.rego": {Data: module},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// azPost posts a raw JSON body with a token and optional header pairs.
func (s *service) azPost(t testing.TB, path, token, body string, header ...string) response {
	t.Helper()
	return s.send(t, http.MethodPost, path, token, "application/json", []byte(body), header...)
}

func azUser(id string) map[string]any { return map[string]any{"type": "user", "id": id} }

func azAction(name string) map[string]any { return map[string]any{"name": name} }

func azResource(typ, id string) map[string]any { return map[string]any{"type": typ, "id": id} }

func azEval(subject, action, resource map[string]any) map[string]any {
	return map[string]any{"subject": subject, "action": action, "resource": resource}
}

// azVerdict is what the tests compare: the decision and its reason codes,
// without the ids that change on every call.
type azVerdict struct {
	Decision     bool
	Reason       string
	RequiredTier any
}

func azVerdictOf(t testing.TB, m map[string]any) azVerdict {
	t.Helper()
	ctx, ok := m["context"].(map[string]any)
	if !ok {
		t.Fatalf("evaluation without a context object: %v", m)
	}
	d, _ := m["decision"].(bool)
	reason, _ := ctx["reason"].(string)
	return azVerdict{Decision: d, Reason: reason, RequiredTier: ctx["required_tier"]}
}

// The verdicts the tests want: allowed, or denied with the reason and
// the tier that would help.
var (
	azOK         = azVerdict{true, "allowed", nil}
	azPlus       = azVerdict{false, "tier_required", "plus"}
	azPro        = azVerdict{false, "tier_required", "pro"}
	azNoRoute    = azVerdict{false, "route_unknown", nil}
	azNoFeature  = azVerdict{false, "feature_unknown", nil}
	azNoResource = azVerdict{false, "resource_unknown", nil}
)

// TestAuthZENEvaluation asks about every resource type for subjects whose
// tier comes from data.subjects; the wanted answers are read off
// policies/tierguard/data.json.
func TestAuthZENEvaluation(t *testing.T) {
	s, pep := startAuthZEN(t, azPEPConfig(false))
	rev := s.engine.Current().ID

	tests := []struct {
		name    string
		subject string
		action  string
		typ, id string
		want    azVerdict
	}{
		{"pro entry reaches the treasure map", subAlice, "GET", "route", "/api/treasure-map", azOK},
		{"plus entry is refused admin", subPaul, "GET", "route", "/api/admin", azPro},
		{"no entry is free: a video by id", subNobody, "GET", "route", "/api/videos/42", azOK},
		{"no entry is free: no treasure map", subNobody, "GET", "route", "/api/treasure-map", azPlus},
		{"query strings do not route", subNobody, "GET", "route", "/api/videos/42?x=1", azOK},
		{"method picks the route", subPaul, "POST", "route", "/api/playlists", azOK},
		{"free may not delete a playlist", subNobody, "DELETE", "route", "/api/playlists/7", azPlus},
		{"unknown route", subAlice, "GET", "route", "/api/nope", azNoRoute},
		{"unknown method on a known path", subAlice, "PATCH", "route", "/api/profile", azNoRoute},
		{"plus opens the protected page", subPaul, "view", "ui_route", "/protected-content", azOK},
		{"free does not", subNobody, "view", "ui_route", "/protected-content", azPlus},
		{"admin page needs pro", subPaul, "view", "ui_route", "/admin", azPro},
		{"page template resolves", subNobody, "view", "ui_route", "/videos/42", azOK},
		{"unknown page", subAlice, "view", "ui_route", "/nowhere", azNoRoute},
		{"pro has 4k", subAlice, "use", "feature", "4k", azOK},
		{"plus lacks 4k", subPaul, "use", "feature", "4k", azPro},
		{"free lacks hd", subNobody, "use", "feature", "hd", azPlus},
		{"unknown feature", subAlice, "use", "feature", "teleport", azNoFeature},
		{"plus reads the map resource", subPaul, "read", "treasure-map", "the-map", azOK},
		{"free does not", subNobody, "read", "treasure-map", "the-map", azPlus},
		{"report export needs pro", subPaul, "export", "report", "q3", azPro},
		{"video download needs pro", subNobody, "download", "video", "42", azPro},
		{"unknown resource type", subAlice, "read", "spaceship", "1", azNoResource},
		{"unknown action on a known type", subAlice, "burn", "treasure-map", "the-map", azNoResource},
		{"entry pinned to another issuer does not apply", subElsewhere, "use", "feature", "4k", azPro},
		{"entry pinned to the PEP's issuer applies", subDevPinned, "use", "feature", "hd", azOK},
		{"pinned plus still lacks 4k", subDevPinned, "use", "feature", "4k", azPro},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := azEval(azUser(tt.subject), azAction(tt.action), azResource(tt.typ, tt.id))
			r := s.azPost(t, "/access/v1/evaluation", pep, mustJSON(body))
			if r.status != 200 {
				t.Fatalf("evaluation %s = %d %s, want 200", mustJSON(body), r.status, r.raw)
			}
			if got := azVerdictOf(t, r.body); got != tt.want {
				t.Errorf("evaluation %s = %+v, want %+v", mustJSON(body), got, tt.want)
			}
			ctx := r.body["context"].(map[string]any)
			if id, _ := ctx["decision_id"].(string); len(id) != 36 {
				t.Errorf("decision_id = %v, want a UUID", ctx["decision_id"])
			}
			if ctx["revision"] != rev {
				t.Errorf("context.revision = %v, want %s", ctx["revision"], rev)
			}
		})
	}
}

// TestAuthZENHeaders checks what every /access answer carries: the
// revision, no-store, and the PEP's X-Request-ID echoed back.
func TestAuthZENHeaders(t *testing.T) {
	s, pep := startAuthZEN(t, azPEPConfig(false))
	body := mustJSON(azEval(azUser(subAlice), azAction("GET"), azResource("route", "/api/admin")))
	for _, path := range []string{"/access/v1/evaluation", "/access/v1/evaluations"} {
		r := s.azPost(t, path, pep, body, "X-Request-ID", "bfe9eb29-ab87-4ca3-be83-a1d5d8305716")
		if r.status != 200 || r.body["decision"] != true {
			t.Fatalf("POST %s = %d %s, want 200 and decision true", path, r.status, r.raw)
		}
		want := map[string]string{
			"Tierguard-Revision": s.engine.Current().ID,
			"Cache-Control":      "no-store",
			"X-Request-Id":       "bfe9eb29-ab87-4ca3-be83-a1d5d8305716",
			"Content-Type":       "application/json",
		}
		for h, v := range want {
			if got := r.header.Get(h); got != v {
				t.Errorf("POST %s: %s = %q, want %q", path, h, got, v)
			}
		}
	}
}

func TestAuthZENMetadata(t *testing.T) {
	s := startService(t, server.Config{})
	r := s.do(t, "GET", "/.well-known/authzen-configuration", "", nil)
	if r.status != 200 {
		t.Fatalf("GET metadata without a token = %d %s, want 200", r.status, r.raw)
	}
	want := map[string]any{
		"policy_decision_point":       s.base,
		"access_evaluation_endpoint":  s.base + "/access/v1/evaluation",
		"access_evaluations_endpoint": s.base + "/access/v1/evaluations",
	}
	if diff := cmp.Diff(want, r.body); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}

	r = s.do(t, "GET", "/.well-known/authzen-configuration", "", nil, "X-Forwarded-Proto", "https")
	tls := "https://" + strings.TrimPrefix(s.base, "http://")
	if got := r.body["access_evaluation_endpoint"]; got != tls+"/access/v1/evaluation" {
		t.Errorf("behind a TLS proxy, access_evaluation_endpoint = %v, want https", got)
	}
}

// TestAuthZENOnlyForPEPs: the caller must bring a token, and its client
// must be a configured PEP.
func TestAuthZENOnlyForPEPs(t *testing.T) {
	treasure := azResource("route", "/api/treasure-map")
	body := mustJSON(azEval(azUser(subAlice), azAction("GET"), treasure))

	t.Run("no token", func(t *testing.T) {
		s, _ := startAuthZEN(t, azPEPConfig(false))
		for _, path := range []string{"/access/v1/evaluation", "/access/v1/evaluations"} {
			r := s.azPost(t, path, "", body)
			if r.status != 401 || r.body["reason"] != "unauthenticated" {
				t.Errorf("POST %s without a token = %d %s, want 401 unauthenticated",
					path, r.status, r.raw)
			}
			if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("POST %s: WWW-Authenticate = %q, want a Bearer challenge", path, got)
			}
			if got := r.header.Get("Content-Type"); got != "application/problem+json" {
				t.Errorf("POST %s: Content-Type = %q, want application/problem+json", path, got)
			}
		}
	})

	t.Run("bad token", func(t *testing.T) {
		s, pep := startAuthZEN(t, azPEPConfig(false))
		parts := strings.Split(pep, ".")
		tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
		r := s.azPost(t, "/access/v1/evaluation", tampered, body)
		if r.status != 401 || r.body["reason"] != "token_signature" {
			t.Errorf("tampered PEP token = %d %s, want 401 token_signature", r.status, r.raw)
		}
	})

	for name, cfg := range map[string]server.Config{
		"another client is the PEP": {PEPClients: []server.PEPClient{{ClientID: "gateway"}}},
		"no PEP configured":         {},
	} {
		t.Run(name, func(t *testing.T) {
			s, token := startAuthZEN(t, cfg)
			for _, path := range []string{"/access/v1/evaluation", "/access/v1/evaluations"} {
				r := s.azPost(t, path, token, body)
				if r.status != 403 || r.body["reason"] != "pep_forbidden" {
					t.Errorf("POST %s with a non-PEP token = %d %s, want 403 pep_forbidden",
						path, r.status, r.raw)
				}
				if got := r.header.Get("Tierguard-Revision"); got == "" {
					t.Errorf("POST %s: 403 without Tierguard-Revision", path)
				}
			}
		})
	}
}

// TestAuthZENSubjectProperties: properties count only from a PEP trusted
// to assert them, and even then a per-subject entry has the last word.
func TestAuthZENSubjectProperties(t *testing.T) {
	withProps := func(id string, props map[string]any) map[string]any {
		return map[string]any{"type": "user", "id": id, "properties": props}
	}
	// A large number as a property must reach the policy intact, not fail
	// the evaluation.
	proClaim := map[string]any{"tier": "pro", "ip_address": "172.217.22.14",
		"logins": json.Number("12345678901234567890")}
	plusGroup := map[string]any{"groups": []string{"Everyone", "tier-plus"}}
	badGroups := map[string]any{"groups": "tier-pro"}

	tests := []struct {
		name    string
		trusted bool
		subject map[string]any
		feature string
		want    azVerdict
	}{
		{"untrusted: tier property ignored", false, withProps(subNobody, proClaim), "4k", azPro},
		{"untrusted: groups ignored", false, withProps(subNobody, plusGroup), "hd", azPlus},
		{"untrusted: bad properties ignored", false, withProps(subNobody, badGroups), "hd", azPlus},
		{"trusted: tier property counts", true, withProps(subNobody, proClaim), "4k", azOK},
		{"trusted: tier group counts", true, withProps(subNobody, plusGroup), "hd", azOK},
		{"trusted: plus group is not pro", true, withProps(subNobody, plusGroup), "4k", azPro},
		{"trusted: entry wins over properties", true, withProps(subDowngraded, proClaim), "hd", azPlus},
		{"trusted: no properties is free", true, azUser(subNobody), "hd", azPlus},
	}
	servers := map[bool]struct {
		s   *service
		pep string
	}{}
	for _, trusted := range []bool{false, true} {
		s, pep := startAuthZEN(t, azPEPConfig(trusted))
		servers[trusted] = struct {
			s   *service
			pep string
		}{s, pep}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := servers[tt.trusted]
			body := mustJSON(azEval(tt.subject, azAction("use"), azResource("feature", tt.feature)))
			r := srv.s.azPost(t, "/access/v1/evaluation", srv.pep, body)
			if r.status != 200 {
				t.Fatalf("evaluation %s = %d %s, want 200", body, r.status, r.raw)
			}
			if got := azVerdictOf(t, r.body); got != tt.want {
				t.Errorf("evaluation %s = %+v, want %+v", body, got, tt.want)
			}
		})
	}

	t.Run("trusted: malformed groups are a 400", func(t *testing.T) {
		srv := servers[true]
		hd := azResource("feature", "hd")
		body := mustJSON(azEval(withProps(subNobody, badGroups), azAction("use"), hd))
		r := srv.s.azPost(t, "/access/v1/evaluation", srv.pep, body)
		if r.status != 400 || r.body["field"] != "subject.properties.groups" {
			t.Errorf("evaluation %s = %d %s, want 400 naming subject.properties.groups",
				body, r.status, r.raw)
		}
	})

	t.Run("trusted: subjects with different properties are decided apart", func(t *testing.T) {
		srv := servers[true]
		body := mustJSON(map[string]any{
			"action": azAction("use"), "resource": azResource("feature", "4k"),
			"evaluations": []any{
				map[string]any{"subject": withProps(subNobody, proClaim)},
				map[string]any{"subject": azUser(subNobody)},
				map[string]any{"subject": withProps(subNobody, proClaim)},
			},
		})
		r := srv.s.azPost(t, "/access/v1/evaluations", srv.pep, body)
		want := []azVerdict{azOK, azPro, azOK}
		if got := azVerdictsOf(t, r); !cmp.Equal(got, want) {
			t.Errorf("evaluations %s = %+v, want %+v", body, got, want)
		}
	})
}

func azVerdictsOf(t testing.TB, r response) []azVerdict {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("evaluations = %d %s, want 200", r.status, r.raw)
	}
	items, ok := r.body["evaluations"].([]any)
	if !ok {
		t.Fatalf("no evaluations array: %s", r.raw)
	}
	out := make([]azVerdict, len(items))
	for i, item := range items {
		out[i] = azVerdictOf(t, item.(map[string]any))
	}
	return out
}

// TestAuthZENEvaluations: defaults, overrides, request order, and each
// evaluations_semantic cutting the same decisions short.
func TestAuthZENEvaluations(t *testing.T) {
	s, pep := startAuthZEN(t, azPEPConfig(false))

	// subPaul is plus: allow, deny (pro), allow, deny (pro), allow.
	items := []any{
		map[string]any{"resource": azResource("route", "/api/treasure-map")},
		map[string]any{"resource": azResource("route", "/api/admin")},
		map[string]any{"action": azAction("POST"), "resource": azResource("route", "/api/playlists")},
		map[string]any{"action": azAction("use"), "resource": azResource("feature", "4k")},
		map[string]any{"action": azAction("read"), "resource": azResource("treasure-map", "m")},
	}
	batch := func(semantic string, items []any) string {
		b := map[string]any{
			"subject": azUser(subPaul), "action": azAction("GET"),
			"context":     map[string]any{"time": "now"},
			"evaluations": items,
		}
		if semantic != "" {
			b["options"] = map[string]any{"evaluations_semantic": semantic}
		}
		return mustJSON(b)
	}
	all := []azVerdict{azOK, azPro, azOK, azPro, azOK}
	denyFirst := []any{items[1], items[0], items[2]}

	tests := []struct {
		name string
		body string
		want []azVerdict
	}{
		{"default is execute_all", batch("", items), all},
		{"execute_all", batch("execute_all", items), all},
		{"deny_on_first_deny stops after the first deny", batch("deny_on_first_deny", items), all[:2]},
		{"permit_on_first_permit stops after the first permit",
			batch("permit_on_first_permit", items), all[:1]},
		{"permit_on_first_permit after a deny", batch("permit_on_first_permit", denyFirst),
			[]azVerdict{azPro, azOK}},
		{"deny_on_first_deny with no deny is all", batch("deny_on_first_deny",
			[]any{items[0], items[2], items[4]}), []azVerdict{azOK, azOK, azOK}},
		{"item subject overrides the default", batch("", []any{
			map[string]any{"resource": azResource("route", "/api/admin")},
			map[string]any{"subject": azUser(subAlice), "resource": azResource("route", "/api/admin")},
			map[string]any{"subject": azUser(subNobody), "resource": items[0].(map[string]any)["resource"]},
		}), []azVerdict{azPro, azOK, azPlus}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.azPost(t, "/access/v1/evaluations", pep, tt.body)
			got := azVerdictsOf(t, r)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("evaluations %s (-want +got):\n%s", tt.body, diff)
			}
			ids := map[string]bool{}
			for _, item := range r.body["evaluations"].([]any) {
				id, _ := item.(map[string]any)["context"].(map[string]any)["decision_id"].(string)
				if id == "" || ids[id] {
					t.Errorf("decision_id %q missing or repeated in %s", id, r.raw)
				}
				ids[id] = true
			}
		})
	}

	t.Run("without evaluations it is a single evaluation", func(t *testing.T) {
		body := mustJSON(azEval(azUser(subPaul), azAction("GET"), azResource("route", "/api/admin")))
		r := s.azPost(t, "/access/v1/evaluations", pep, body)
		if r.status != 200 || azVerdictOf(t, r.body) != azPro || r.body["evaluations"] != nil {
			t.Errorf("evaluations without an array = %d %s, want a single deny needing pro",
				r.status, r.raw)
		}
	})

	t.Run("100 evaluations", func(t *testing.T) {
		r := s.azPost(t, "/access/v1/evaluations", pep, batch("", azRepeat(items[0], server.MaxBatch)))
		if got := azVerdictsOf(t, r); len(got) != server.MaxBatch || got[99] != azOK {
			t.Errorf("100 evaluations gave %d answers, want 100 allows", len(got))
		}
	})

	t.Run("101 evaluations", func(t *testing.T) {
		body := batch("", azRepeat(items[0], server.MaxBatch+1))
		r := s.azPost(t, "/access/v1/evaluations", pep, body)
		if r.status != 400 || r.body["reason"] != "batch_too_large" ||
			r.body["field"] != "evaluations" {
			t.Errorf("101 evaluations = %d %s, want 400 batch_too_large on evaluations",
				r.status, r.raw)
		}
	})
}

func azRepeat(item any, n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = item
	}
	return out
}

// TestAuthZENRejectsMalformed: a malformed request is a 400 problem that
// names the member, on either endpoint; nothing is decided.
func TestAuthZENRejectsMalformed(t *testing.T) {
	s, pep := startAuthZEN(t, azPEPConfig(false))
	const (
		sub  = `"subject":{"type":"user","id":"a"}`
		get  = `"action":{"name":"GET"}`
		news = `"resource":{"type":"route","id":"/api/news"}`
		k4   = `"resource":{"type":"feature","id":"4k"}`
	)
	obj := func(members ...string) string { return "{" + strings.Join(members, ",") + "}" }
	good := sub + "," + get + "," + news

	tests := []struct {
		name, path, body, field string
	}{
		{"not JSON", "evaluation", `{"subject":`, ""},
		{"not an object", "evaluation", `[1]`, ""},
		{"trailing data", "evaluation", obj(good) + ` {}`, ""},
		{"no subject", "evaluation", obj(get, k4), "subject"},
		{"subject not an object", "evaluation", `{"subject":"alice"}`, "subject"},
		{"subject of another type", "evaluation",
			obj(`"subject":{"type":"service","id":"a"}`, get, k4), "subject.type"},
		{"subject without a type", "evaluation", `{"subject":{"id":"a"}}`, "subject.type"},
		{"subject without an id", "evaluation", `{"subject":{"type":"user"}}`, "subject.id"},
		{"subject id empty", "evaluation", `{"subject":{"type":"user","id":""}}`, "subject.id"},
		{"subject id a number", "evaluation", `{"subject":{"type":"user","id":7}}`, "subject.id"},
		{"subject properties not an object", "evaluation",
			`{"subject":{"type":"user","id":"a","properties":[1]}}`, "subject.properties"},
		{"no action", "evaluation", obj(sub, k4), "action"},
		{"action without a name", "evaluation", obj(sub, `"action":{}`, k4), "action.name"},
		{"no resource", "evaluation", obj(sub, get), "resource"},
		{"resource without an id", "evaluation",
			obj(sub, get, `"resource":{"type":"route"}`), "resource.id"},
		{"resource type null", "evaluation",
			obj(sub, get, `"resource":{"type":null,"id":"x"}`), "resource.type"},
		{"route with a lower-case method", "evaluation",
			obj(sub, `"action":{"name":"get"}`, news), "action.name"},
		{"route with a relative path", "evaluation",
			obj(sub, get, `"resource":{"type":"route","id":"api/news"}`), "resource.id"},
		{"context not an object", "evaluation", obj(good, `"context":"now"`), "context"},
		{"evaluations not an array", "evaluations", obj(good, `"evaluations":{}`), "evaluations"},
		{"evaluation not an object", "evaluations",
			obj(good, `"evaluations":[{},"x"]`), "evaluations[1]"},
		{"item missing what has no default", "evaluations",
			obj(sub, `"evaluations":[`+obj(get, k4)+`,`+obj(get)+`]`), "evaluations[1].resource"},
		{"item's own member malformed", "evaluations",
			obj(good, `"evaluations":[{},{"subject":{"type":"robot","id":"r"}}]`),
			"evaluations[1].subject.type"},
		{"bad default", "evaluations",
			obj(`"subject":{"type":"user"}`, `"evaluations":[{`+sub+`}]`), "subject.id"},
		{"unknown semantic", "evaluations",
			obj(good, `"options":{"evaluations_semantic":"first_come"}`, `"evaluations":[{}]`),
			"options.evaluations_semantic"},
		{"options not an object", "evaluations",
			obj(good, `"options":1`, `"evaluations":[{}]`), "options"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.azPost(t, "/access/v1/"+tt.path, pep, tt.body)
			if r.status != 400 || r.body["reason"] != "invalid_request" {
				t.Fatalf("POST %s %s = %d %s, want 400 invalid_request",
					tt.path, tt.body, r.status, r.raw)
			}
			if got, _ := r.body["field"].(string); got != tt.field {
				t.Errorf("POST %s %s names field %q, want %q", tt.path, tt.body, got, tt.field)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q, want application/problem+json", ct)
			}
		})
	}

	t.Run("unknown members are ignored", func(t *testing.T) {
		body := obj(good, `"page":{"next_token":""}`, `"subject_extra":1`)
		r := s.azPost(t, "/access/v1/evaluation", pep, body)
		if r.status != 200 || azVerdictOf(t, r.body) != azOK {
			t.Errorf("POST %s = %d %s, want 200 allowed", body, r.status, r.raw)
		}
	})

	t.Run("not JSON content", func(t *testing.T) {
		r := s.azPost(t, "/access/v1/evaluation", pep, obj(good), "Content-Type", "text/plain")
		if r.status != 415 || r.body["reason"] != "unsupported_media_type" {
			t.Errorf("text/plain body = %d %s, want 415 unsupported_media_type", r.status, r.raw)
		}
	})

	t.Run("over 64 KiB", func(t *testing.T) {
		pad := strings.Repeat("x", 70<<10)
		body := obj(good, fmt.Sprintf(`"context":{"pad":%q}`, pad))
		r := s.azPost(t, "/access/v1/evaluation", pep, body)
		if r.status != 413 || r.body["reason"] != "body_too_large" {
			t.Errorf("70 KiB body = %d %s, want 413 body_too_large", r.status, r.raw)
		}
	})
}
