package server

import (
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/tierguard/tierguard/decision"
	"github.com/tierguard/tierguard/server/identity"
)

// Response headers of the contract.
const (
	headerRevision     = "Tierguard-Revision"
	headerReason       = "Tierguard-Reason"
	headerRequiredTier = "Tierguard-Required-Tier"
	headerDecisionID   = "Tierguard-Decision-Id"

	headerETag        = "ETag"
	headerIfNoneMatch = "If-None-Match"
)

const (
	keyRevision = "tierguard.revision"
	keyIdentity = "tierguard.identity"
)

// revisionHeader pins one policy revision for the whole request and names
// it in Tierguard-Revision, so a client that sees it change knows to
// reload its route map.
func (s *Server) revisionHeader(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		rev := s.engine.Current()
		c.Set(keyRevision, rev)
		c.Response().Header().Set(headerRevision, rev.ID)
		return next(c)
	}
}

func revisionOf(c echo.Context) *decision.Revision {
	return c.Get(keyRevision).(*decision.Revision)
}

// authenticate verifies the caller's tokens. No Authorization header is
// the anonymous identity; a bad one is an error on every route, never a
// silent downgrade to anonymous.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		who, err := s.identify(c.Request())
		if err != nil {
			return err
		}
		c.Set(keyIdentity, who)
		return next(c)
	}
}

func (s *Server) identify(r *http.Request) (*caller, error) {
	access, err := identity.BearerToken(r.Header)
	if err != nil {
		return nil, err
	}
	idToken, err := identity.IDTokenHeader(r.Header)
	if err != nil {
		return nil, err
	}
	if access == "" && idToken == "" {
		return anonymousCaller, nil
	}

	var key [32]byte
	if s.tokens != nil && access != "" {
		key = tokenKey(access, idToken)
		if who, ok := s.tokens.get(key); ok {
			return who, nil
		}
	}
	id, err := s.verifier.Verify(r.Context(), access, idToken)
	if err != nil {
		return nil, err
	}
	who := &caller{id: id}
	if s.tokens != nil {
		s.tokens.add(key, who)
	}
	return who, nil
}

func callerOf(c echo.Context) *caller {
	if who, ok := c.Get(keyIdentity).(*caller); ok {
		return who
	}
	return anonymousCaller
}

func identityOf(c echo.Context) identity.Identity { return callerOf(c).id }

// SubjectOf is the one place an identity becomes policy input; tierguard
// check uses it too, so offline answers match the service's.
func SubjectOf(id identity.Identity) decision.Subject {
	if !id.Authenticated {
		return decision.Subject{}
	}
	return decision.Subject{
		Authenticated: true,
		Issuer:        id.Issuer,
		Subject:       id.Subject,
		ClientID:      id.ClientID,
		Scopes:        id.Scopes,
		Groups:        id.Groups,
		Claims:        id.Claims,
	}
}

// enforce asks the policy about the route Echo matched, before the handler
// runs. The handler runs only on an allow.
func (s *Server) enforce(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		template := c.Path()
		if !s.registered[route{c.Request().Method, template}] {
			return next(c) // no route: Echo's 404 or 405, after authentication
		}
		who := callerOf(c)
		check := decision.Check{
			Kind: decision.KindAPI, Method: c.Request().Method,
			Template: template, Path: c.Request().URL.Path,
		}
		d, decisionID := s.decide(c, who, check)
		if d.Allow {
			return next(c)
		}
		return denial(d, decisionID, !who.id.Authenticated)
	}
}

// decide evaluates one check on the request's revision, with a decision
// id and metrics: from the revision's decision table when it holds the
// answer, by full evaluation otherwise.
func (s *Server) decide(c echo.Context, who *caller, check decision.Check) (decision.Decision, string) {
	start := time.Now()
	rev := revisionOf(c)
	d, ok := s.lookup(c, rev, who, check)
	if !ok {
		d = rev.Decide(c.Request().Context(), decision.Input{
			Subject: SubjectOf(who.id), Profile: who.id.Profile, Check: check,
		})
	}
	decisionID := newDecisionID()
	elapsed := time.Since(start)
	s.metrics.observe(check, d, elapsed)
	s.logDecision(c.Request().Context(), SubjectOf(who.id), who.id.Profile, check, d, decisionID, "", elapsed)
	return d, decisionID
}

func (s *Server) lookup(c echo.Context, rev *decision.Revision, who *caller,
	check decision.Check) (decision.Decision, bool) {
	tier, ok := who.tierOn(c.Request().Context(), rev)
	if !ok {
		return decision.Decision{}, false
	}
	return rev.Lookup(tier, who.id.Authenticated, check)
}

// apiNotFound answers an /api request no route takes. The group's
// not-found route shadows Echo's own 405, so it asks Echo's router itself
// which methods the path has: 405 with Allow when it has any, else 404.
func (s *Server) apiNotFound(c echo.Context) error {
	path := echo.GetPath(c.Request())
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete} {
		if s.registered[route{m, find(s.echo, m, path)}] {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		return echo.ErrNotFound
	}
	c.Response().Header().Set(echo.HeaderAllow, strings.Join(allow, ", "))
	return echo.ErrMethodNotAllowed
}

// denial turns a deny into the API's error: 401 when a token would help
// and none was sent, else 403, both naming the reason and the tier.
func denial(d decision.Decision, decisionID string, anonymous bool) error {
	status := http.StatusForbidden
	e := newError(status, d.Reason, "")
	if anonymous && d.Reason == reasonUnauthenticated {
		e.Status = http.StatusUnauthorized
		e.Detail = "sign in to reach this route"
		e.headers = append(e.headers, [2]string{echo.HeaderWWWAuthenticate, `Bearer realm="tierguard"`})
	} else if d.Reason == decision.ReasonTierRequired {
		e.Detail = "this route needs a higher tier"
	}
	e.RequiredTier = tierOf(d.RequiredTier)
	e.DecisionID = decisionID
	e.headers = append(e.headers, [2]string{headerDecisionID, decisionID})
	return e
}

// noStore keeps API data and decisions out of every cache.
func noStore(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
		return next(c)
	}
}

func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set(echo.HeaderXContentTypeOptions, "nosniff")
		h.Set(echo.HeaderXFrameOptions, "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		return next(c)
	}
}

// accessLog writes one JSON line per request through slog. It logs the
// path without the query string, with anything shaped like a JWT in it
// redacted, and no request headers at all, so no token can reach the log
// even when a client misplaces one.
func (s *Server) accessLog() echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogStatus: true, LogMethod: true, LogURIPath: true, LogRoutePath: true,
		LogLatency: true, LogRequestID: true, LogRemoteIP: true, LogResponseSize: true,
		// The error handler answers first, so the line has the status the
		// client got (a 403 is logged as 403, not as the 200 not yet sent).
		HandleError: true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			s.logger.LogAttrs(c.Request().Context(), slog.LevelInfo, "request",
				slog.String("method", v.Method),
				slog.String("path", redactJWTs(v.URIPath)),
				slog.String("route", v.RoutePath),
				slog.Int("status", v.Status),
				slog.Duration("latency", v.Latency),
				slog.Int64("bytes", v.ResponseSize),
				slog.String("request_id", v.RequestID),
				slog.String("remote_ip", v.RemoteIP),
			)
			return nil
		},
	})
}

// jwtShaped matches three dot-separated base64url runs, as a compact JWS
// is: a token a client put in a path (/api/videos/eyJ...) would otherwise
// be logged whole. A file name like a.b.c is too short to match.
var jwtShaped = regexp.MustCompile(`[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)

// redactJWTs replaces every JWT-shaped run in s.
func redactJWTs(s string) string {
	if strings.Count(s, ".") < 2 {
		return s
	}
	return jwtShaped.ReplaceAllLiteralString(s, "[REDACTED]")
}

// sanitizeRequestID drops a client's X-Request-ID unless it looks like an
// id: at most 128 characters of letters, digits, '-', '_' and ':'. The id
// is echoed and logged, so it must never carry a token (a JWT has dots)
// or anything long enough to flood a log line; a fresh id replaces it.
func sanitizeRequestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header
		if id := h.Get(echo.HeaderXRequestID); id != "" && !safeRequestID(id) {
			h.Del(echo.HeaderXRequestID)
		}
		return next(c)
	}
}

func safeRequestID(id string) bool {
	if len(id) > 128 {
		return false
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '-' || r == '_' || r == ':'
		if !ok {
			return false
		}
	}
	return true
}
