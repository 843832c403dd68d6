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
func (s *Server) forward(c echo.Context) error {
	h := c.Request().Header
	method, uri := h.Get("X-Original-Method"), h.Get("X-Original-URI")
	if method == "" && uri == "" {
		method, uri = h.Get("X-Forwarded-Method"), h.Get("X-Forwarded-Uri")
	}
	if method == "" || uri == "" {
		return newError(http.StatusBadRequest, reasonInvalidRequest,
			"send X-Original-Method and X-Original-URI, or X-Forwarded-Method and X-Forwarded-Uri")
	}
	if !validMethod(method) {
		return badField("method", "must be an HTTP method in upper case")
	}

	rev := revisionOf(c)
	check := decision.Check{Kind: decision.KindAPI, Method: method, Path: uri,
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
