package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tierguard/tierguard/decision"
	"github.com/tierguard/tierguard/decision/decisionlog"
	"github.com/tierguard/tierguard/server"
	"github.com/tierguard/tierguard/server/identity"
)

type serveOptions struct {
	addr        string
	dev         bool
	policies    string
	config      string
	app         string
	issuer      string
	audience    string
	clientIDs   []string
	corsOrigins []string
	logLevel    string
	tokenCache  int

	forwardProxy   string
	logConsole     bool
	logURL         string
	bundleURL      string
	bundleResource string
	bundleKey      string
	bundleDir      string
	bundleInsecure bool
}

func newServeCommand() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the authorization service",
		Long: `Run the authorization service: the API's enforcement, /authz/check and
/authz/routes for the browser's route guard, AuthZEN, forward auth and the
story's demo API.

Every flag has an environment equivalent: --client-id is TIERGUARD_CLIENT_ID
(lists comma-separated). A flag on the command line wins over the
environment, which wins over the --config file.

The YAML config file takes the flags' settings by their snake_case names
(addr, policies, app, cors_origins, forward_auth_proxy) and what only it
can hold:
  issuers:        [{issuer, audience, client_ids, algorithms (RS256, ES256),
                    clock_skew (60s), require_at_jwt, max_key_age (1h)}]
  pep_clients:    [{client_id, trust_subject_properties}]   AuthZEN callers
  decision_ttl:   5m    bound on expires_at in /authz answers
  bundle:         {url, resource, public_key, dir, insecure_allow_unsigned,
                   poll_min, poll_max, long_poll_timeout, bearer_token}
  decision_logs:  {console, url, resource, bearer_token, labels, mask,
                   flush_interval}

  tierguard serve --dev                      no Okta needed: a dev issuer on loopback
  tierguard serve --issuer https://example.okta.com/oauth2/default \
                  --audience api://default --client-id 0oa1b2c3d4SPAclient \
                  --bundle-url https://bundles.example.com --bundle-public-key bundle.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			return runServe(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "", `address to listen on (default "127.0.0.1:8080")`)
	f.BoolVar(&o.dev, "dev", false, "run a dev issuer inside the process (loopback only; mints tokens for anyone who asks)")
	f.StringVar(&o.policies, "policies", "", "policy directory, watched and reloaded on change (default: the embedded policies)")
	f.StringVar(&o.config, "config", "", "YAML config file (several issuers, PEP clients, ...)")
	f.StringVar(&o.app, "app", "", "directory of a built single-page app to serve at / (default in --dev: web/dist/demo/browser when present)")
	f.StringVar(&o.issuer, "issuer", "", "OIDC issuer URL to trust (discovery at <issuer>/.well-known/openid-configuration)")
	f.StringVar(&o.audience, "audience", "", "API audience the --issuer's access tokens must carry")
	f.StringSliceVar(&o.clientIDs, "client-id", nil, "client ID allowed for the --issuer (repeatable)")
	f.StringSliceVar(&o.corsOrigins, "cors-origin", nil, "SPA origin allowed to call cross-origin (repeatable)")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.IntVar(&o.tokenCache, "token-cache-size", 0, "verified tokens to remember (0: the default, 10000; -1: off, every request checks a signature)")
	f.StringVar(&o.forwardProxy, "forward-auth-proxy", "", "read /authz/forward's original request only from nginx (X-Original-*) or traefik (X-Forwarded-*) headers; default either, refusing both when they disagree")
	f.BoolVar(&o.logConsole, "decision-log-console", false, "write one decision-log event per decision to stdout, as JSON in OPA's format")
	f.StringVar(&o.logURL, "decision-log-url", "", "upload decision logs to this OPA-compatible collector (POST <url>/logs, gzip)")
	f.StringVar(&o.bundleURL, "bundle-url", "", "OPA bundle server to pull policies from, instead of --policies (base URL)")
	f.StringVar(&o.bundleResource, "bundle-resource", "", `bundle path below --bundle-url (default "`+decision.DefaultBundleResource+`")`)
	f.StringVar(&o.bundleKey, "bundle-public-key", "", "PEM public key bundles must be signed with (opa build --signing-key)")
	f.StringVar(&o.bundleDir, "bundle-dir", "", "directory keeping the last good bundle, for a start while the bundle server is down")
	f.BoolVar(&o.bundleInsecure, "bundle-insecure-allow-unsigned", false, "accept unsigned bundles: whoever answers for the bundle server decides who may reach what")
	return cmd
}

func runServe(cmd *cobra.Command, o serveOptions) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	fc := fileConfig{}
	if o.config != "" {
		var err error
		if fc, err = readConfigFile(o.config); err != nil {
			return err
		}
	}
	addr := firstOf(o.addr, fc.Addr, "127.0.0.1:8080")
	policyDir := firstOf(o.policies, fc.Policies)
	appDir := firstOf(o.app, fc.App)
	cors := o.corsOrigins
	if len(cors) == 0 {
		cors = fc.CORSOrigins
	}
	ttl, err := optionalDuration(fc.DecisionTTL)
	if err != nil {
		return fmt.Errorf("config decision_ttl: %w", err)
	}

	var issuers []identity.IssuerConfig
	for i, fi := range fc.Issuers {
		ic, err := fi.toConfig(i)
		if err != nil {
			return err
		}
		issuers = append(issuers, ic)
	}
	if o.issuer != "" {
		issuers = append(issuers, identity.IssuerConfig{Issuer: o.issuer, Audience: o.audience, ClientIDs: o.clientIDs})
	} else if o.audience != "" || len(o.clientIDs) > 0 {
		return errors.New("--audience and --client-id need --issuer")
	}
	if len(issuers) == 0 && !o.dev {
		return errors.New("no issuer to trust: give --issuer and --audience, an issuers list in --config, or run with --dev")
	}
	// Settings are checked before anything listens, so a typo fails fast
	// and never holds a port.
	for _, ic := range issuers {
		if err := ic.Validate(); err != nil {
			return err
		}
		if len(ic.ClientIDs) == 0 {
			logger.Warn("issuer has no client IDs: access tokens issued to any of its clients are accepted",
				slog.String("issuer", ic.Issuer))
		}
	}
	if o.dev && !isLoopback(addr) {
		return fmt.Errorf("--dev listens only on a loopback address, not %q: its issuer mints tokens for anyone", addr)
	}

	bundleCfg, err := bundleConfig(o, fc.Bundle)
	if err != nil {
		return err
	}
	if bundleCfg != nil && policyDir != "" {
		return errors.New("--policies and --bundle-url are two policy sources: give one")
	}

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	engine, err := loadEngine(ctx, policyDir, logger)
	if err != nil {
		return err
	}

	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer l.Close()
	base := "http://" + l.Addr().String()

	cfg := server.Config{CORSOrigins: cors, PEPClients: fc.PEPClients, DecisionTTL: ttl,
		TokenCacheSize: o.tokenCache, ForwardAuthProxy: firstOf(o.forwardProxy, fc.ForwardAuthProxy)}
	if bundleCfg != nil {
		// Until the first bundle is active the embedded policy answers and
		// /health/ready says the service is not ready.
		if cfg.Bundle, err = decision.NewBundleSource(engine, *bundleCfg, logger); err != nil {
			return err
		}
	}
	if o.dev {
		dev, err := identity.NewDevIssuer(base + "/dev")
		if err != nil {
			return err
		}
		cfg.Dev = dev
		issuers = append(issuers, dev.IssuerConfig())
		if appDir == "" {
			if st, err := os.Stat("web/dist/demo/browser"); err == nil && st.IsDir() {
				appDir = "web/dist/demo/browser"
			}
		}
	}
	if appDir != "" {
		cfg.App = os.DirFS(appDir)
		if _, err := fs.Stat(cfg.App, "index.html"); err != nil {
			return fmt.Errorf("--app %s: no index.html: %w", appDir, err)
		}
	}

	if cfg.DecisionLog, err = decisionLogger(o, fc.DecisionLogs, logger); err != nil {
		return err
	}
	if cfg.DecisionLog != nil {
		defer func() {
			// Flush what is buffered, but never hang a shutdown on a
			// collector that is down.
			flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := cfg.DecisionLog.Close(flushCtx); err != nil {
				logger.Warn("decision log not fully flushed", slog.Any("error", err))
			}
		}()
	}

	verifier, err := identity.NewVerifier(issuers, identity.Options{Logger: logger})
	if err != nil {
		return err
	}
	srv, err := server.New(cfg, engine, verifier, logger)
	if err != nil {
		return err
	}
	verifier.Start(ctx)
	if policyDir != "" {
		go func() {
			if err := decision.WatchDir(ctx, engine, policyDir, logger); err != nil {
				logger.Error("policy directory watch stopped; the last good policy keeps serving",
					slog.String("dir", policyDir), slog.Any("error", err))
			}
		}()
	}

	if cfg.Bundle != nil {
		go func() {
			if err := cfg.Bundle.Run(ctx); err != nil {
				logger.Error("bundle polling stopped; the last good policy keeps serving",
					slog.String("bundle_url", bundleCfg.URL), slog.Any("error", err))
			}
		}()
	}

	logger.Info("serving", slog.String("addr", base), slog.String("revision", engine.Current().ID),
		slog.Bool("dev", o.dev), slog.Int("issuers", len(issuers)))
	if o.dev {
		printDevBanner(cmd, base, appDir != "")
	}
	return srv.Serve(ctx, l, 10*time.Second)
}

// decisionLogger builds the decision log from flags over the config file,
// or nil when neither asks for one.
func decisionLogger(o serveOptions, fl fileDecisionLogs, logger *slog.Logger) (*decisionlog.Logger, error) {
	cfg := decisionlog.Config{
		Console:     o.logConsole || fl.Console,
		URL:         firstOf(o.logURL, fl.URL),
		Resource:    fl.Resource,
		BearerToken: fl.BearerToken,
		Labels:      fl.Labels,
		Mask:        fl.Mask,
	}
	if !cfg.Console && cfg.URL == "" {
		if fl.Resource != "" || len(fl.Mask) > 0 || len(fl.Labels) > 0 || fl.BearerToken != "" {
			return nil, errors.New("config decision_logs needs console: true or a url")
		}
		return nil, nil
	}
	var err error
	if cfg.FlushInterval, err = optionalDuration(fl.FlushInterval); err != nil {
		return nil, fmt.Errorf("config decision_logs.flush_interval: %w", err)
	}
	return decisionlog.New(cfg, logger)
}

// loadEngine starts from the embedded policies, or from dir after it has
// compiled and passed its own tests.
func loadEngine(ctx context.Context, dir string, logger *slog.Logger) (*decision.Engine, error) {
	var p *decision.Policy
	var err error
	if dir == "" {
		p, err = decision.Embedded()
	} else {
		p, err = decision.LoadDir(dir)
		if err == nil {
			err = p.Test(ctx)
		}
	}
	if err != nil {
		return nil, err
	}
	return decision.NewEngine(ctx, p, decision.WithLogger(logger))
}

// bundleConfig is bundle mode's settings, flags over the config file, or
// nil without a bundle URL. A public key makes signatures mandatory;
// without one, unsigned bundles need the insecure switch.
func bundleConfig(o serveOptions, fb fileBundle) (*decision.BundleConfig, error) {
	url := firstOf(o.bundleURL, fb.URL)
	if url == "" {
		if o.bundleResource != "" || o.bundleKey != "" || o.bundleDir != "" || o.bundleInsecure ||
			fb != (fileBundle{}) {
			return nil, errors.New("the --bundle-* settings (config bundle.*) need --bundle-url")
		}
		return nil, nil
	}
	bc := decision.BundleConfig{
		URL:                   url,
		Resource:              firstOf(o.bundleResource, fb.Resource),
		PersistDir:            firstOf(o.bundleDir, fb.Dir),
		BearerToken:           fb.BearerToken,
		InsecureAllowUnsigned: o.bundleInsecure || fb.InsecureAllowUnsigned,
	}
	if keyFile := firstOf(o.bundleKey, fb.PublicKey); keyFile != "" {
		key, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("bundle public key: %w", err)
		}
		bc.VerificationKey = string(key)
	}

	var err error
	if bc.PollMin, err = optionalDuration(fb.PollMin); err != nil {
		return nil, fmt.Errorf("config bundle.poll_min: %w", err)
	}
	if bc.PollMax, err = optionalDuration(fb.PollMax); err != nil {
		return nil, fmt.Errorf("config bundle.poll_max: %w", err)
	}
	if bc.LongPollTimeout, err = optionalDuration(fb.LongPollTimeout); err != nil {
		return nil, fmt.Errorf("config bundle.long_poll_timeout: %w", err)
	}
	if err := bc.Validate(); err != nil {
		return nil, err
	}
	return &bc, nil
}

func printDevBanner(cmd *cobra.Command, base string, app bool) {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "\ntierguard dev mode on %s (dev issuer: %s/dev)\n\n", base, base)
	fmt.Fprintf(out, "Get a token of any tier (anonymous, free, plus, pro):\n\n")
	fmt.Fprintf(out, "  TOKEN=$(curl -s -X POST %s/dev/token -H 'Content-Type: application/json' \\\n", base)
	fmt.Fprintf(out, "    -d '{\"sub\": \"alex@example.com\", \"tier\": \"plus\"}' | jq -r .access_token)\n\n")
	fmt.Fprintf(out, "  curl -s %s/api/treasure-map -H \"Authorization: Bearer $TOKEN\"\n", base)
	fmt.Fprintf(out, "  curl -s %s/authz/check -H \"Authorization: Bearer $TOKEN\" \\\n", base)
	fmt.Fprintf(out, "    -H 'Content-Type: application/json' -d '{\"kind\": \"ui\", \"path\": \"/protected-content\"}'\n\n")
	if app {
		fmt.Fprintf(out, "The demo app is at %s/\n\n", base)
	}
}

func firstOf(values ...string) string {
	for _, v := range values {
		if strings.TrimSpace(v) != "" {
			return v
		}
	}
	return ""
}
