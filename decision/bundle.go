package decision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/download"
	"github.com/open-policy-agent/opa/v1/keys"
	"github.com/open-policy-agent/opa/v1/plugins"
	"github.com/open-policy-agent/opa/v1/plugins/rest"
)

// Defaults for BundleConfig.
const (
	DefaultBundleResource = "bundles/tierguard.tar.gz"
	DefaultBundleName     = "tierguard"
	DefaultBundleKeyID    = "default" // as opa run's --verification-key-id
	DefaultBundleAlg      = "RS256"
	DefaultBundleMaxBytes = 64 << 20
	DefaultBundlePollMin  = 60 * time.Second // OPA's defaults
	DefaultBundlePollMax  = 120 * time.Second
)

// persistedBundle and persistedETag are the file names under
// PersistDir/<Name>/, the first as OPA's bundle plugin names it.
const (
	persistedBundle = "bundle.tar.gz"
	persistedETag   = "etag"
)

// BundleConfig says where policy bundles come from and how they are
// trusted. The zero value, once URL is set, is the strictest: every bundle
// must carry a signature made with VerificationKey.
type BundleConfig struct {
	// URL is the bundle service's base URL, e.g. https://bundles.example.com.
	// Required.
	URL string
	// Resource is the bundle's path below URL. Default
	// DefaultBundleResource.
	Resource string
	// Name names the bundle in logs and its directory under PersistDir.
	// Default DefaultBundleName.
	Name string

	// PollMin and PollMax bound the random delay between polls, and
	// PollMax caps the backoff while the server is unreachable. OPA counts
	// them in whole seconds. Defaults 60s and 120s.
	PollMin time.Duration
	PollMax time.Duration
	// LongPollTimeout, when set, asks the server to hold each request
	// open until a new bundle exists or this long has passed (OPA's long
	// polling), so a fleet moves within moments of a publish. A server that
	// does not answer with OPA's bundle content type is polled as usual.
	LongPollTimeout time.Duration

	// VerificationKey is the PEM public key (or, for HS256, the shared
	// secret) that bundles must be signed with, as `opa build
	// --signing-key` signs them. Required unless InsecureAllowUnsigned.
	VerificationKey string
	// KeyID names VerificationKey; a signature naming another key id is
	// refused. Default DefaultBundleKeyID.
	KeyID string
	// Algorithm is the signature algorithm. Default RS256.
	Algorithm string
	// Scope, when set, must equal the scope claim of the signature.
	Scope string

	// BearerToken, when set, is sent to the bundle server in an
	// Authorization header. It is never logged.
	BearerToken string

	// PersistDir keeps the last activated bundle, so that a restart while
	// the bundle server is down still serves the last good policy. Its
	// signature is verified again when it is read back. Empty disables
	// persistence: a cold start then waits for the server.
	PersistDir string
	// MaxBytes bounds the bundle and each file in it. Default 64 MiB.
	MaxBytes int64

	// InsecureAllowUnsigned accepts bundles without a signature. A bundle
	// that is signed is still verified when VerificationKey is set, and
	// refused when it is not. Anyone who can answer for the bundle server
	// then decides who may reach what: for development only.
	InsecureAllowUnsigned bool
}

// LogValue keeps BearerToken out of logs.
func (c BundleConfig) LogValue() slog.Value {
	token := ""
	if c.BearerToken != "" {
		token = "REDACTED"
	}
	return slog.GroupValue(
		slog.String("url", c.URL), slog.String("resource", c.Resource),
		slog.String("name", c.Name), slog.String("key_id", c.KeyID),
		slog.Bool("signed", c.VerificationKey != ""), slog.String("bearer_token", token),
		slog.String("persist_dir", c.PersistDir),
		slog.Bool("insecure_allow_unsigned", c.InsecureAllowUnsigned))
}

func (c BundleConfig) withDefaults() BundleConfig {
	if c.Resource == "" {
		c.Resource = DefaultBundleResource
	}
	if c.Name == "" {
		c.Name = DefaultBundleName
	}
	if c.PollMin == 0 && c.PollMax == 0 {
		c.PollMin, c.PollMax = DefaultBundlePollMin, DefaultBundlePollMax
	}
	if c.KeyID == "" {
		c.KeyID = DefaultBundleKeyID
	}
	if c.Algorithm == "" {
		c.Algorithm = DefaultBundleAlg
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultBundleMaxBytes
	}
	return c
}

// Validate reports the first setting that cannot work, with defaults
// applied.
func (c BundleConfig) Validate() error {
	c = c.withDefaults()
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("decision: bundle url %q is not an http(s) URL", c.URL)
	}
	if strings.Contains(c.Name, "/") || strings.Contains(c.Name, "..") {
		return fmt.Errorf("decision: bundle name %q must not contain a path", c.Name)
	}
	if c.PollMin < time.Second || c.PollMax < c.PollMin {
		return fmt.Errorf("decision: bundle polling wants 1s <= poll_min (%v) <= poll_max (%v)",
			c.PollMin, c.PollMax)
	}
	if c.LongPollTimeout != 0 && c.LongPollTimeout < time.Second {
		return fmt.Errorf("decision: bundle long_poll_timeout %v is under 1s", c.LongPollTimeout)
	}
	if c.VerificationKey == "" && !c.InsecureAllowUnsigned {
		return errors.New("decision: a bundle verification key is required " +
			"(or insecure_allow_unsigned for development)")
	}
	if !keys.IsSupportedAlgorithm(c.Algorithm) {
		return fmt.Errorf("decision: bundle signing algorithm %q is not supported", c.Algorithm)
	}
	if c.MaxBytes < 0 {
		return fmt.Errorf("decision: bundle max_bytes %d is negative", c.MaxBytes)
	}
	return nil
}

// BundleStatus reports what a BundleSource has done, for readiness
// details and metrics.
type BundleStatus struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Activated says a bundle from this source serves, from the server or
	// from disk. Until then the engine serves whatever it started with.
	Activated bool   `json:"activated"`
	Revision  string `json:"revision,omitempty"`
	// FromDisk says the active bundle was read back from PersistDir and
	// the server has not delivered a newer one since.
	FromDisk      bool      `json:"from_disk,omitempty"`
	ActivatedAt   time.Time `json:"activated_at,omitzero"`
	LastContactAt time.Time `json:"last_contact_at,omitzero"`
	// LastError is the latest download or activation failure; it clears
	// on the next successful contact.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// BundleSource feeds an Engine with policy bundles from an OPA bundle
// server, through OPA's own downloader (polling with ETags, long polling)
// and OPA's bundle reader (signature verification, size limits). Every
// bundle goes through Engine.Update, so a bundle whose tests fail or that
// does not compile strictly never serves; a bundle whose signature does not
// verify never gets that far. Both are counted in Engine.Status.
type BundleSource struct {
	engine  *Engine
	cfg     BundleConfig
	logger  *slog.Logger
	source  string
	verify  *bundle.VerificationConfig
	polling download.Config
	running atomic.Bool

	mu      sync.Mutex
	status  BundleStatus
	failed  string // the last refusal, counted once until something succeeds
	offline bool   // the server was unreachable at the last attempt
}

// NewBundleSource checks cfg and returns a source for e. Nothing is read
// or fetched until Run.
func NewBundleSource(e *Engine, cfg BundleConfig, logger *slog.Logger) (*BundleSource, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With(slog.String("bundle", cfg.Name))

	var verify *bundle.VerificationConfig
	if cfg.VerificationKey != "" {
		key := &keys.Config{Key: cfg.VerificationKey, Algorithm: cfg.Algorithm}
		verify = bundle.NewVerificationConfig(map[string]*keys.Config{cfg.KeyID: key},
			cfg.KeyID, cfg.Scope, nil)
		if cfg.InsecureAllowUnsigned {
			verify = verify.WithOptionalSignature()
		}
	}

	polling, err := downloadConfig(cfg)
	if err != nil {
		return nil, err
	}

	where := strings.TrimRight(cfg.URL, "/") + "/" + strings.TrimLeft(cfg.Resource, "/")
	s := &BundleSource{
		engine:  e,
		cfg:     cfg,
		logger:  logger,
		source:  "bundle:" + where,
		verify:  verify,
		polling: polling,
		status:  BundleStatus{Name: cfg.Name, URL: where},
	}
	return s, nil
}

// Ready reports whether a bundle from this source has been activated, from
// the server or from PersistDir. Until then the engine serves the policy it
// was created with, which is not the fleet's policy: the server should
// report itself not ready.
func (s *BundleSource) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status.Activated
}

// Status reports the source's state for /health/ready.
func (s *BundleSource) Status() BundleStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Run activates the persisted bundle, if any, then polls the server until
// ctx ends, activating each new bundle that verifies and validates. An
// unreachable server is retried with backoff while the last good revision
// keeps serving. Run returns nil when ctx ends; it may be called once.
func (s *BundleSource) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("decision: BundleSource.Run called twice")
	}
	etag := s.loadPersisted(ctx)

	client, err := s.restClient()
	if err != nil {
		return err
	}
	dl := download.New(s.polling, client, s.cfg.Resource).
		WithCallback(s.onUpdate).
		WithBundleVerificationConfig(s.verify).
		WithSizeLimitBytes(s.cfg.MaxBytes).
		WithBundleName(s.cfg.Name).
		WithBundlePersistence(s.cfg.PersistDir != "").
		WithBundleParserOpts(ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
	if etag != "" {
		// The server answers 304 for the bundle already activated from disk.
		dl.SetCache(etag)
	}

	s.logger.LogAttrs(ctx, slog.LevelInfo, "polling bundle server", slog.String("url", s.status.URL))
	dl.Start(ctx)
	<-ctx.Done()
	dl.Stop(context.WithoutCancel(ctx))
	return nil
}

func seconds(d time.Duration) *int64 {
	n := int64(math.Ceil(d.Seconds()))
	return &n
}

func downloadConfig(c BundleConfig) (download.Config, error) {
	trigger := plugins.TriggerPeriodic
	cfg := download.Config{Trigger: &trigger}
	cfg.Polling.MinDelaySeconds = seconds(c.PollMin)
	cfg.Polling.MaxDelaySeconds = seconds(c.PollMax)
	if c.LongPollTimeout > 0 {
		cfg.Polling.LongPollingTimeoutSeconds = seconds(c.LongPollTimeout)
	}
	if err := cfg.ValidateAndInjectDefaults(); err != nil {
		return cfg, fmt.Errorf("decision: bundle polling: %w", err)
	}
	return cfg, nil
}

func (s *BundleSource) restClient() (rest.Client, error) {
	service := map[string]any{"name": s.cfg.Name, "url": s.cfg.URL}
	if s.cfg.BearerToken != "" {
		service["credentials"] = map[string]any{"bearer": map[string]any{"token": s.cfg.BearerToken}}
	}
	raw, err := json.Marshal(service)
	if err != nil {
		return rest.Client{}, fmt.Errorf("decision: bundle service config: %w", err)
	}
	client, err := rest.New(raw, nil, rest.Logger(opaLogger{s.logger}))
	if err != nil {
		return rest.Client{}, fmt.Errorf("decision: bundle service config: %w", err)
	}
	return client, nil
}

// onUpdate is the downloader's callback, called on its goroutine, one
// update at a time. It never returns an error: a refused bundle is
// already bookkept, and an error here would only make OPA retry sooner.
func (s *BundleSource) onUpdate(ctx context.Context, u download.Update) error {
	if ctx.Err() != nil {
		return nil
	}
	switch {
	case u.Error != nil && unreachable(u.Error):
		s.unavailable(ctx, u.Error)
	case u.Error != nil:
		s.refused(ctx, "", fmt.Errorf("decision: bundle refused: %w", u.Error))
	case u.Bundle == nil:
		s.contact(ctx) // 304: what serves is current
	default:
		s.contact(ctx)
		if err := s.activate(ctx, s.source, u.Bundle); err != nil {
			return nil
		}
		if s.cfg.PersistDir != "" && u.Raw != nil {
			s.persist(ctx, u.Raw, u.ETag)
		}
	}
	return nil
}

// unreachable tells a server that cannot be reached (or answers with an
// error status) from a bundle that arrived and was refused.
func unreachable(err error) bool {
	var status download.HTTPError
	var transport *url.Error
	return errors.As(err, &status) || errors.As(err, &transport)
}

func (s *BundleSource) unavailable(ctx context.Context, err error) {
	s.mu.Lock()
	s.status.LastError, s.status.LastErrorAt = err.Error(), time.Now().UTC()
	first := !s.offline
	s.offline = true
	s.mu.Unlock()

	// Logged once per outage: OPA retries with backoff, every retry fails.
	level := slog.LevelDebug
	if first {
		level = slog.LevelWarn
	}
	serving := s.engine.Current().ID
	s.logger.LogAttrs(ctx, level, "bundle server unavailable, keeping the last good revision",
		slog.String("url", s.status.URL), slog.String("serving", serving), slog.Any("error", err))
}

func (s *BundleSource) contact(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.offline {
		s.logger.LogAttrs(ctx, slog.LevelInfo, "bundle server reachable again",
			slog.String("url", s.status.URL))
	}
	s.offline = false
	s.status.LastContactAt = time.Now().UTC()
	s.status.LastError, s.status.LastErrorAt = "", time.Time{}
}

// refused bookkeeps a bundle that could not even become a Policy, in the
// engine's status as Update does for one that failed validation.
func (s *BundleSource) refused(ctx context.Context, candidate string, err error) {
	s.mu.Lock()
	s.status.LastError, s.status.LastErrorAt = err.Error(), time.Now().UTC()
	repeat := s.failed == err.Error()
	s.failed = err.Error()
	s.mu.Unlock()

	// OPA refetches a refused bundle with backoff; count it once.
	if !repeat {
		s.engine.refuse(ctx, s.source, candidate, err)
	}
}

// activate turns a verified bundle into a Policy and offers it to the
// engine. The revision is the bundle's manifest revision when it has one.
func (s *BundleSource) activate(ctx context.Context, source string, b *bundle.Bundle) error {
	p, err := policyFromBundle(b)
	if err != nil {
		s.refused(ctx, b.Manifest.Revision, err)
		return err
	}

	if err := s.engine.Update(ctx, source, p); err != nil {
		s.mu.Lock()
		s.status.LastError, s.status.LastErrorAt = err.Error(), time.Now().UTC()
		s.mu.Unlock()
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed = ""
	s.status.Activated, s.status.Revision = true, p.Revision
	s.status.FromDisk = source != s.source
	s.status.ActivatedAt = time.Now().UTC()
	return nil
}

func policyFromBundle(b *bundle.Bundle) (*Policy, error) {
	if b.Type() == bundle.DeltaBundleType {
		return nil, errors.New("decision: delta bundles are not supported, serve a snapshot")
	}
	sources := make(map[string][]byte, len(b.Modules))
	for _, m := range b.Modules {
		sources[strings.TrimPrefix(m.Path, "/")] = m.Raw
	}
	return NewPolicy(sources, b.Data, b.Manifest.Revision)
}

// loadPersisted activates the bundle kept under PersistDir, verifying
// its signature again: the disk is not trusted more than the network. It
// returns the ETag the bundle was served with, or "" if none activated.
func (s *BundleSource) loadPersisted(ctx context.Context) string {
	if s.cfg.PersistDir == "" {
		return ""
	}
	dir := filepath.Join(s.cfg.PersistDir, s.cfg.Name)
	path := filepath.Join(dir, persistedBundle)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		s.logger.LogAttrs(ctx, slog.LevelInfo, "no persisted bundle, waiting for the server",
			slog.String("path", path))
		return ""
	}
	if err != nil {
		s.logger.LogAttrs(ctx, slog.LevelWarn, "cannot read persisted bundle",
			slog.String("path", path), slog.Any("error", err))
		return ""
	}
	defer f.Close()

	r := bundle.NewCustomReader(bundle.NewTarballLoaderWithBaseURL(f, "")).
		WithRegoVersion(ast.RegoV1).
		WithProcessAnnotations(true).
		WithBundleVerificationConfig(s.verify).
		WithSizeLimitBytes(s.cfg.MaxBytes).
		WithBundleName(s.cfg.Name)
	b, err := r.Read()
	if err != nil {
		s.refused(ctx, "", fmt.Errorf("decision: persisted bundle %s refused: %w", path, err))
		return ""
	}
	if err := s.activate(ctx, "bundle-cache:"+path, &b); err != nil {
		return ""
	}
	s.logger.LogAttrs(ctx, slog.LevelInfo, "activated persisted bundle",
		slog.String("path", path), slog.String("revision", b.Manifest.Revision))

	etag, err := os.ReadFile(filepath.Join(dir, persistedETag))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(etag))
}

// persist writes the activated bundle's raw bytes beside its ETag, each by
// rename, so a crash leaves the previous bundle or the new one, never half.
func (s *BundleSource) persist(ctx context.Context, raw io.Reader, etag string) {
	dir := filepath.Join(s.cfg.PersistDir, s.cfg.Name)
	err := os.MkdirAll(dir, 0o700)
	if err == nil {
		// The bundle first: a stale ETag beside a new bundle only costs one
		// download, a new ETag beside a stale bundle would pin the stale one.
		_ = os.Remove(filepath.Join(dir, persistedETag))
		err = writeFileAtomic(filepath.Join(dir, persistedBundle), raw)
	}
	if err == nil && etag != "" {
		err = writeFileAtomic(filepath.Join(dir, persistedETag), strings.NewReader(etag))
	}
	if err != nil {
		s.logger.LogAttrs(ctx, slog.LevelWarn, "cannot persist bundle",
			slog.String("dir", dir), slog.Any("error", err))
	}
}

func writeFileAtomic(path string, r io.Reader) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	_, err = io.Copy(tmp, r)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
