package server

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tierguard/tierguard/decision"
)

// Resolver maps a concrete path to the route template that Echo's own
// router would pick for it. There is one matcher in tierguard, Echo's: the
// middleware gets its template from the request's routing, and /authz/check
// gets it here from routers built with the same code. A second matcher with
// its own idea of normalisation is the classic hole this closes.
type Resolver struct {
	api *echo.Echo
	ui  *echo.Echo

	apiRoutes map[string]bool // "METHOD template"
	uiRoutes  map[string]bool // template
}

// MaxPathLen bounds a path asked about in a check. Longer paths are
// refused before they reach a router.
const MaxPathLen = 4096

// maxTargetLen bounds a target the Resolver routes. It is the serving
// http.Server's header limit, not MaxPathLen: forward auth resolves the
// proxy's X-Original-URI, query included, and must route every target the
// API itself routes, or a long query string would be denied as
// route_unknown at the proxy while the API allows it.
const maxTargetLen = 64 << 10

// NewResolver builds the routers for one policy revision. extraAPI adds
// routes the serving Echo instance registers but the policy lacks, so both
// routers hold the same route set and pick the same template for a path;
// the policy then denies those routes as route_unknown.
func NewResolver(t decision.Tables, extraAPI []decision.APIRoute) *Resolver {
	r := &Resolver{
		api: echo.New(), ui: echo.New(),
		apiRoutes: map[string]bool{}, uiRoutes: map[string]bool{},
	}
	noop := func(echo.Context) error { return nil }
	for _, route := range append(append([]decision.APIRoute(nil), t.APIRoutes...), extraAPI...) {
		r.api.Add(route.Method, route.Template, noop)
		r.apiRoutes[route.Method+" "+route.Template] = true
	}
	for _, page := range t.UIRoutes {
		r.ui.Add(http.MethodGet, page.Template, noop)
		r.uiRoutes[page.Template] = true
	}
	return r
}

// API returns the template of the API route that method and target (a
// path, possibly with a query) reach, or "" when none does.
func (r *Resolver) API(method, target string) string {
	path, ok := routingPath(target)
	if !ok {
		return ""
	}
	template := find(r.api, method, path)
	if !r.apiRoutes[method+" "+template] {
		return ""
	}
	return template
}

// UI returns the template of the page target reaches, or "".
func (r *Resolver) UI(target string) string {
	path, ok := routingPath(target)
	if !ok {
		return ""
	}
	template := find(r.ui, http.MethodGet, path)
	if !r.uiRoutes[template] {
		return ""
	}
	return template
}

func find(e *echo.Echo, method, path string) string {
	c := e.AcquireContext()
	defer e.ReleaseContext(c)
	c.Reset(nil, nil)
	e.Router().Find(method, path, c)
	return c.Path()
}

// routingPath reads target as an origin-form request target and returns
// the path exactly as Echo routes a request for it: the raw (still
// escaped) path when the target has escapes that matter, the decoded one
// otherwise. Query and fragment never take part in routing.
func routingPath(target string) (string, bool) {
	if target == "" || len(target) > maxTargetLen || !strings.HasPrefix(target, "/") {
		return "", false
	}
	// ParseRequestURI is what net/http itself uses on a request line.
	u, err := url.ParseRequestURI(stripFragment(target))
	if err != nil {
		return "", false
	}
	return echo.GetPath(&http.Request{URL: u}), true
}

func stripFragment(target string) string {
	before, _, _ := strings.Cut(target, "#")
	return before
}
