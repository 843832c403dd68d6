// Package server is tierguard's HTTP face: Echo middleware that enforces
// decisions on the API, the /authz endpoints the browser's route guard
// asks, AuthZEN for other enforcement points, and forward auth for
// proxies. Every one of them asks the same engine through the same code,
// so the page a user may open is never one whose data the API refuses.
package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/tierguard/tierguard/decision"
	"github.com/tierguard/tierguard/decision/decisionlog"
	"github.com/tierguard/tierguard/server/identity"
)

// PEPClient is a policy enforcement point allowed to call AuthZEN.
type PEPClient struct {
	// ClientID is matched against the caller's verified client (cid,
	// client_id or azp).
	ClientID string `json:"client_id"`
	// TrustSubjectProperties lets this client assert subject.properties
	// (a tier, groups) instead of having them looked up. Dangerous: such a
	// client can claim any tier for anyone.
	TrustSubjectProperties bool `json:"trust_subject_properties"`
}

// Config holds the server's start-up settings. The zero value, after
// defaults, is the strictest: no CORS origins, no PEP clients.
type Config struct {
	// CORSOrigins are the SPA origins allowed to call with credentials.
	CORSOrigins []string
	// PEPClients may call the AuthZEN endpoints.
	PEPClients []PEPClient
	// DecisionTTL bounds expires_at in /authz answers; the token's exp
	// bounds it further. Default 5 minutes.
	DecisionTTL time.Duration
	// App, when set, is served at / as a single-page app (index.html for
	// unknown paths outside the API).
	App fs.FS
	// Dev mounts the dev issuer's endpoints under /dev.
	Dev *identity.DevIssuer
	// Bundle, when set, is the bundle source feeding the engine. Until its
	// first bundle is active the engine serves the policy it started with,
	// which is not the fleet's: /health/ready answers 503 until then, and
	// shows the source's status.
	Bundle *decision.BundleSource
	// TokenCacheSize bounds the verified-token cache (default
	// DefaultTokenCacheSize); negative turns the cache off, so every
	// request verifies its token's signature.
	TokenCacheSize int
	// ForwardAuthProxy pins the headers /authz/forward reads the original
	// request from: ProxyNginx (X-Original-*) or ProxyTraefik
	// (X-Forwarded-*). Empty reads either, and refuses a request carrying
	// both that disagree.
	ForwardAuthProxy string
	// DecisionLog, when set, receives one entry per decision (one per
	// item of a batch). The server does not close it.
	DecisionLog *decisionlog.Logger
	// Now is the clock; tests set it.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.DecisionTTL == 0 {
		c.DecisionTTL = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.TokenCacheSize == 0 {
		c.TokenCacheSize = DefaultTokenCacheSize
	}
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	for _, o := range c.CORSOrigins {
		if o == "*" {
			return errors.New("server: a CORS origin of * would let any site use the caller's token")
		}
		if !strings.HasPrefix(o, "https://") && !strings.HasPrefix(o, "http://") {
			return fmt.Errorf("server: CORS origin %q is not an http(s) origin", o)
		}
	}
	for _, p := range c.PEPClients {
		if p.ClientID == "" {
			return errors.New("server: a PEP client needs a client_id")
		}
	}
	switch c.ForwardAuthProxy {
	case "", ProxyNginx, ProxyTraefik:
	default:
		return fmt.Errorf("server: forward-auth proxy %q is neither nginx nor traefik", c.ForwardAuthProxy)
	}
	if c.DecisionTTL < 0 {
		return errors.New("server: decision TTL must be positive")
	}
	return nil
}

// Server is the configured Echo application.
type Server struct {
	cfg      Config
	engine   *decision.Engine
	verifier *identity.Verifier
	logger   *slog.Logger
	metrics  *metrics
	echo     *echo.Echo
	tokens   *tokenCache // nil when turned off

	// current holds the resolver of the newest revision asked about, so
	// the hot path reads a pointer rather than taking a lock.
	current atomic.Pointer[revisionResolver]
	// registered holds every route Echo serves, to tell a real route from
	// Echo's not-found stand-ins.
	registered map[route]bool
}

// New builds the server. It does no I/O: call Serve to listen.
func New(cfg Config, engine *decision.Engine, verifier *identity.Verifier,
	logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg, engine: engine, verifier: verifier, logger: logger,
	}
	if cfg.TokenCacheSize > 0 {
		tc, err := newTokenCache(cfg.TokenCacheSize, cfg.Now)
		if err != nil {
			return nil, err
		}
		s.tokens = tc
		verifier.OnKeysChanged(tc.dropIssuer)
	}
	s.metrics = newMetrics(s)
	s.echo = s.routes()
	s.registered = map[route]bool{}
	for _, r := range s.echo.Routes() {
		s.registered[route{r.Method, r.Path}] = true
	}
	s.reportUndeclaredRoutes()
	return s, nil
}

// Handler returns the HTTP handler, for tests and for embedding.
func (s *Server) Handler() http.Handler { return s.echo }

// Serve answers on l until ctx ends, then shuts down gracefully: requests
// in flight get up to grace to finish.
func (s *Server) Serve(ctx context.Context, l net.Listener, grace time.Duration) error {
	srv := &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.logger.Info("shutting down", slog.Duration("grace", grace))
	shutdownCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("server: shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError

	e.Pre(sanitizeRequestID)
	e.Use(middleware.RequestID())
	e.Use(s.accessLog())
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{
		DisableStackAll: true,
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			s.logger.Error("panic recovered", slog.Any("error", err), slog.String("stack", string(stack)))
			return err
		},
	}))
	e.Use(securityHeaders)
	if len(s.cfg.CORSOrigins) > 0 {
		e.Use(middleware.CORSWithConfig(middleware.CORSConfig{
			AllowOrigins: s.cfg.CORSOrigins,
			AllowMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost,
				http.MethodPut, http.MethodDelete},
			AllowHeaders: []string{echo.HeaderAuthorization, identity.IDTokenHeaderName,
				echo.HeaderContentType, headerIfNoneMatch},
			ExposeHeaders: []string{headerRevision, headerETag, headerReason,
				headerRequiredTier, headerDecisionID},
			MaxAge: 600,
		}))
	}

	e.GET("/health/live", s.live)
	e.GET("/health/ready", s.ready)
	e.GET("/metrics", echo.WrapHandler(s.metrics.handler()))
	e.GET("/openapi.json", serveOpenAPI)

	if s.cfg.Dev != nil {
		e.Any("/dev/*", echo.WrapHandler(http.MaxBytesHandler(s.cfg.Dev.Handler(), 4<<10)))
	}

	limit := middleware.BodyLimit("64K")
	authz := e.Group("/authz", limit, s.revisionHeader, s.authenticate)
	authz.POST("/check", s.check)
	authz.GET("/routes", s.routeMap)
	authz.GET("/forward", s.forward)

	s.registerAuthZEN(e, limit)

	api := e.Group("/api", s.revisionHeader, noStore, s.authenticate, s.enforce)
	registerDemoAPI(api)
	// Unmatched /api paths still pass identity checks first, so a bad
	// token is a 401 on every route, known or not.
	api.RouteNotFound("/*", s.apiNotFound)

	if s.cfg.App != nil {
		s.serveApp(e)
	}
	return e
}

// route is a method and an Echo route template.
type route struct{ method, template string }

type revisionResolver struct {
	rev      *decision.Revision
	resolver *Resolver
}

// resolver returns the resolver for rev, building it on first use. Around
// a swap two requests may each build one; both are right, one is kept.
func (s *Server) resolver(rev *decision.Revision) *Resolver {
	if cur := s.current.Load(); cur != nil && cur.rev == rev {
		return cur.resolver
	}
	r := NewResolver(rev.Tables(), s.undeclared(rev))
	if rev == s.engine.Current() {
		s.current.Store(&revisionResolver{rev: rev, resolver: r})
	}
	return r
}

// echoAPIRoutes lists the /api routes this server itself serves.
func (s *Server) echoAPIRoutes() []decision.APIRoute {
	var out []decision.APIRoute
	for _, r := range s.echo.Routes() {
		if !strings.HasPrefix(r.Path, "/api/") || r.Method == echo.RouteNotFound {
			continue
		}
		out = append(out, decision.APIRoute{Method: r.Method, Template: r.Path})
	}
	return out
}

// undeclared returns the /api routes Echo serves that rev does not declare.
func (s *Server) undeclared(rev *decision.Revision) []decision.APIRoute {
	declared := map[string]bool{}
	for _, r := range rev.Tables().APIRoutes {
		declared[r.Method+" "+r.Template] = true
	}
	var out []decision.APIRoute
	for _, r := range s.echoAPIRoutes() {
		if !declared[r.Method+" "+r.Template] {
			out = append(out, r)
		}
	}
	return out
}

// reportUndeclaredRoutes warns about /api routes the policy does not
// declare: the policy denies them (route_unknown) until it does.
func (s *Server) reportUndeclaredRoutes() {
	for _, r := range s.undeclared(s.engine.Current()) {
		s.logger.Warn("api route not in policy; it is denied",
			slog.String("method", r.Method), slog.String("template", r.Template))
	}
}
