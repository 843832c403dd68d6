package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/tierguard/tierguard/decision"
	"github.com/tierguard/tierguard/server"
	"github.com/tierguard/tierguard/server/identity"
)

// documentedPrefixes are the public APIs /openapi.json must describe. The
// demo API under /api and the dev issuer under /dev are left out on
// purpose: the first is the story's sample app, the second exists only
// with --dev.
var documentedPrefixes = []string{"/authz/", "/access/", "/.well-known/", "/health/",
	"/metrics", "/openapi.json"}

// openAPIHandler builds the server without listening: enough to list its
// routes and to serve the static document.
func openAPIHandler(t testing.TB) *echo.Echo {
	t.Helper()
	p, err := decision.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	engine, err := decision.NewEngine(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := identity.NewDevIssuer("http://127.0.0.1:8080/dev")
	if err != nil {
		t.Fatal(err)
	}
	issuers := []identity.IssuerConfig{dev.IssuerConfig()}
	verifier, err := identity.NewVerifier(issuers, identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Dev: dev}, engine, verifier, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := srv.Handler().(*echo.Echo)
	if !ok {
		t.Fatalf("Handler() is a %T, want *echo.Echo", srv.Handler())
	}
	return e
}

func loadOpenAPI(t testing.TB) map[string]any {
	t.Helper()
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	return doc
}

// openAPIPath writes an Echo route template as an OpenAPI path template.
func openAPIPath(template string) string {
	parts := strings.Split(template, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, ":") {
			parts[i] = "{" + p[1:] + "}"
		}
	}
	return strings.Join(parts, "/")
}

var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// TestOpenAPIDocumentsEveryRoute keeps the document and the router in
// step, both ways: every public route Echo serves is documented with its
// method, and every documented operation is one Echo serves.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc := loadOpenAPI(t)
	paths, _ := doc["paths"].(map[string]any)
	if len(paths) == 0 {
		t.Fatal("openapi.json documents no paths")
	}

	served := map[string]bool{}
	for _, r := range openAPIHandler(t).Routes() {
		documented := slices.ContainsFunc(documentedPrefixes, func(p string) bool {
			return strings.HasPrefix(r.Path, p)
		})
		if r.Method == echo.RouteNotFound || !documented {
			continue
		}
		path, method := openAPIPath(r.Path), strings.ToLower(r.Method)
		served[method+" "+path] = true
		item, _ := paths[path].(map[string]any)
		if _, ok := item[method]; !ok {
			t.Errorf("the server serves %s %s, but openapi.json does not document it", r.Method, r.Path)
		}
	}
	for _, want := range []string{"post /authz/check", "get /authz/routes", "get /authz/forward",
		"get /.well-known/authzen-configuration", "post /access/v1/evaluation",
		"post /access/v1/evaluations", "get /health/live", "get /health/ready"} {
		if !served[want] {
			t.Errorf("the server no longer serves %s; the route list above missed it", want)
		}
	}

	for path, v := range paths {
		item := v.(map[string]any)
		for _, method := range openAPIMethods {
			if _, ok := item[method]; ok && !served[method+" "+path] {
				t.Errorf("openapi.json documents %s %s, which the server does not serve",
					strings.ToUpper(method), path)
			}
		}
	}
}

// TestOpenAPIIsWellFormed checks what a generator or a linter would trip
// on first: the version, every $ref resolving, unique operation ids, and
// responses on every operation.
func TestOpenAPIIsWellFormed(t *testing.T) {
	doc := loadOpenAPI(t)
	if v, _ := doc["openapi"].(string); !regexp.MustCompile(`^3\.1\.\d+$`).MatchString(v) {
		t.Errorf("openapi = %q, want 3.1.x", v)
	}
	info, _ := doc["info"].(map[string]any)
	if info["title"] == nil || info["version"] == nil {
		t.Errorf("info needs a title and a version: %v", info)
	}

	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				if _, err := jsonPointer(doc, ref); err != nil {
					t.Errorf("%s: $ref %q: %v", at, ref, err)
				}
			}
			for k, child := range v {
				walk(child, at+"/"+k)
			}
		case []any:
			for i, child := range v {
				walk(child, at+"/"+strconv.Itoa(i))
			}
		}
	}
	walk(doc, "#")

	ids := map[string]string{}
	for path, v := range doc["paths"].(map[string]any) {
		for _, method := range openAPIMethods {
			op, ok := v.(map[string]any)[method].(map[string]any)
			if !ok {
				continue
			}
			where := strings.ToUpper(method) + " " + path
			id, _ := op["operationId"].(string)
			if id == "" {
				t.Errorf("%s has no operationId", where)
			} else if other, dup := ids[id]; dup {
				t.Errorf("operationId %q is used by %s and %s", id, other, where)
			}
			ids[id] = where
			if rs, _ := op["responses"].(map[string]any); len(rs) == 0 {
				t.Errorf("%s has no responses", where)
			}
		}
	}

	problem, err := jsonPointer(doc, "#/components/schemas/Problem")
	if err != nil {
		t.Fatal(err)
	}
	required, _ := problem.(map[string]any)["required"].([]any)
	if !slices.Contains(required, any("reason")) {
		t.Errorf("the Problem schema does not require reason: %v", required)
	}
}

// jsonPointer resolves a local JSON jsonPointer (RFC 6901) such as
// "#/components/schemas/Problem" in doc.
func jsonPointer(doc map[string]any, ref string) (any, error) {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, errPointerNotLocal
	}
	var cur any = doc
	for _, token := range strings.Split(rest, "/") {
		token = strings.ReplaceAll(strings.ReplaceAll(token, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, errPointerNoTarget
		}
		if cur, ok = m[token]; !ok {
			return nil, errPointerNoTarget
		}
	}
	return cur, nil
}

type jsonPointerError string

func (e jsonPointerError) Error() string { return string(e) }

const (
	errPointerNotLocal jsonPointerError = "not a local reference"
	errPointerNoTarget jsonPointerError = "points at nothing"
)

// TestOpenAPIServed: GET /openapi.json serves the file in the repository,
// byte for byte, with no token.
func TestOpenAPIServed(t *testing.T) {
	want, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	openAPIHandler(t).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	got, _ := io.ReadAll(rec.Body)
	if rec.Code != http.StatusOK || !bytes.Equal(got, want) {
		t.Errorf("GET /openapi.json = %d, %d bytes; want 200 and the %d bytes of openapi.json",
			rec.Code, len(got), len(want))
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("GET /openapi.json Content-Type = %q, want application/json", ct)
	}
}
