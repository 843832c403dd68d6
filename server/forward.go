package server

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/tierguard/tierguard/decision"
)

// forward answers a reverse proxy's sub-request: nginx auth_request sends
// X-Original-Method and X-Original-URI, Traefik ForwardAuth sends
// X-Forwarded-Method and X-Forwarded-Uri. The path is resolved with the
// same router as everything else and decided as an api check. The answer
// is in the status (200, 401, 403) and the Tierguard-* headers; the proxy
// passes or refuses the original request on that.
//
// Danger: a proxy that copies the client's own headers into the
// sub-request (Traefik does by default) would let a client name a
// different request than the one it makes. Config.ForwardAuthProxy pins
// the one header set to read; left unset, a request carrying both sets
// that disagree is refused rather than guessed at.
func (s *Server) forward(c echo.Context) error {
	method, uri, err := originalRequest(c.Request().Header, s.cfg.ForwardAuthProxy)
	if err != nil {
		return err
	}
	if !validMethod(method) {
		return badField("method", "must be an HTTP method in upper case")
	}

	rev := revisionOf(c)
	check := decision.Check{Kind: decision.KindAPI, Method: method, Path: pathOnly(uri),
		Template: s.resolver(rev).API(method, uri)}
	who := callerOf(c)
	d, decisionID := s.decide(c, who, check)

	out := c.Response().Header()
	out.Set(echo.HeaderCacheControl, "no-store")
	out.Set(headerReason, d.Reason)
	out.Set(headerDecisionID, decisionID)
	if d.RequiredTier != "" {
		out.Set(headerRequiredTier, d.RequiredTier)
	}
	if d.Allow {
		return c.NoContent(http.StatusOK)
	}
	return denial(d, decisionID, !who.id.Authenticated)
}

// Proxies whose headers forward auth reads; see Config.ForwardAuthProxy.
const (
	ProxyNginx   = "nginx"
	ProxyTraefik = "traefik"
)

func originalRequest(h http.Header, proxy string) (method, uri string, err error) {
	names := []string{"X-Original-Method", "X-Original-URI", "X-Forwarded-Method", "X-Forwarded-Uri"}
	for _, name := range names {
		// A proxy that appends rather than sets would let a client's own
		// header come first.
		if len(h.Values(name)) > 1 {
			return "", "", newError(http.StatusBadRequest, reasonInvalidRequest, name+" appears twice")
		}
	}
	nm, nu := h.Get("X-Original-Method"), h.Get("X-Original-URI")
	tm, tu := h.Get("X-Forwarded-Method"), h.Get("X-Forwarded-Uri")
	switch proxy {
	case ProxyNginx:
		method, uri = nm, nu
	case ProxyTraefik:
		method, uri = tm, tu
	default:
		nginx, traefik := nm != "" || nu != "", tm != "" || tu != ""
		if nginx && traefik && (nm != tm || nu != tu) {
			return "", "", newError(http.StatusBadRequest, reasonInvalidRequest,
				"the X-Original-* and X-Forwarded-* headers name different requests")
		}
		method, uri = nm, nu
		if !nginx {
			method, uri = tm, tu
		}
	}
	if method == "" || uri == "" {
		return "", "", newError(http.StatusBadRequest, reasonInvalidRequest,
			"send X-Original-Method and X-Original-URI, or X-Forwarded-Method and X-Forwarded-Uri")
	}
	return method, uri, nil
}
