// Package decisionlog records one entry per authorization decision, in
// OPA's decision-log event format, to stdout and to an OPA-compatible
// collector, without ever making the request that decided wait for it.
package decisionlog

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/plugins/logs"
	"github.com/open-policy-agent/opa/v1/util"
)

// Defaults for Config.
const (
	DefaultResource      = "logs" // as OPA's decision_logs.resource, "/logs"
	DefaultBufferSize    = 10000
	DefaultMaxPending    = 100000
	DefaultBatchSize     = 100
	DefaultFlushInterval = 5 * time.Second
	DefaultMinRetryDelay = 500 * time.Millisecond
	DefaultMaxRetryDelay = time.Minute
	DefaultUploadTimeout = 10 * time.Second
	DefaultBundleName    = "tierguard"
)

// Entry is one decision, as the server saw it. The logger takes ownership
// of Input and Result: the caller must not change them after Log. Both are
// copied before masking, so entries may share maps (a batch's items share
// one subject).
type Entry struct {
	DecisionID string
	// BatchID ties the entries of one batched check together.
	BatchID  string
	Revision string
	// Path names the rule that decided, OPA-style: "tierguard/authz/decision".
	Path      string
	Timestamp time.Time
	// Input is the decision input: subject and check, never a token.
	Input map[string]any
	// Result is the decision as the client saw it; it must encode as JSON.
	Result any
	// Latency is the time the server spent on the check.
	Latency time.Duration
	// Labels add to, and override, Config.Labels for this entry.
	Labels map[string]string
}

// Config says where decision logs go. The zero value writes nothing; set
// Console, URL or both.
type Config struct {
	// Console writes each event as one JSON line to stdout (or the writer
	// given WithOutput).
	Console bool
	// URL is the collector's base URL; events are POSTed to URL/Resource
	// in OPA's upload format: a gzip-compressed JSON array of events.
	URL string
	// Resource is the upload path below URL. Default "logs".
	Resource string
	// BearerToken, when set, is sent in an Authorization header. Never
	// logged.
	BearerToken string
	// Labels are added to every event (OPA sets "id" and "version").
	Labels map[string]string
	// BundleName keys the revision in the event's "bundles" map. Default
	// "tierguard".
	BundleName string
	// Mask erases or replaces parts of every event's input and result.
	Mask []MaskRule

	// BufferSize bounds the entries waiting to be encoded. Log drops, and
	// counts, entries that find it full. Default 10000.
	BufferSize int
	// MaxPending bounds the events waiting for upload while the collector
	// is slow or down; the oldest are dropped, and counted, first.
	// Default 100000.
	MaxPending int
	// BatchSize is the most events in one upload. Default 100.
	BatchSize int
	// FlushInterval is the longest an event waits for a batch to fill.
	// Default 5s.
	FlushInterval time.Duration
	// MinRetryDelay and MaxRetryDelay bound the backoff between failed
	// uploads of a batch. Defaults 500ms and 1m.
	MinRetryDelay time.Duration
	MaxRetryDelay time.Duration
	// UploadTimeout bounds one upload request. Default 10s.
	UploadTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.Resource == "" {
		c.Resource = DefaultResource
	}
	if c.BundleName == "" {
		c.BundleName = DefaultBundleName
	}
	if c.BufferSize == 0 {
		c.BufferSize = DefaultBufferSize
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.MinRetryDelay == 0 {
		c.MinRetryDelay = DefaultMinRetryDelay
	}
	if c.MaxRetryDelay == 0 {
		c.MaxRetryDelay = DefaultMaxRetryDelay
	}
	if c.UploadTimeout == 0 {
		c.UploadTimeout = DefaultUploadTimeout
	}
	return c
}

// Validate reports the first setting that cannot work, with defaults
// applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("decisionlog: url %q is not an http(s) URL", c.URL)
		}
	}
	if c.BufferSize < 0 || c.MaxPending < 0 || c.BatchSize < 0 {
		return errors.New("decisionlog: buffer_size, max_pending and batch_size must be positive")
	}
	if c.FlushInterval < 0 || c.MinRetryDelay < 0 || c.MaxRetryDelay < c.MinRetryDelay {
		return errors.New("decisionlog: want flush_interval >= 0 and " +
			"0 <= min_retry_delay <= max_retry_delay")
	}
	for i, r := range c.Mask {
		if _, err := ParseMaskRule(r.Op, r.Path, r.Value); err != nil {
			return fmt.Errorf("decisionlog: mask[%d]: %w", i, err)
		}
	}
	return nil
}

// LogValue keeps BearerToken out of logs.
func (c Config) LogValue() slog.Value {
	token := ""
	if c.BearerToken != "" {
		token = "REDACTED"
	}
	return slog.GroupValue(slog.Bool("console", c.Console), slog.String("url", c.URL),
		slog.String("resource", c.Resource), slog.String("bearer_token", token),
		slog.Int("mask_rules", len(c.Mask)))
}

// Option adjusts a Logger.
type Option func(*Logger)

// WithOutput sends console events to w instead of os.Stdout.
func WithOutput(w io.Writer) Option { return func(l *Logger) { l.out = w } }

// WithHTTPClient uploads with c instead of a client with UploadTimeout.
func WithHTTPClient(c *http.Client) Option { return func(l *Logger) { l.client = c } }

// Stats counts what a Logger did with the entries it was given.
type Stats struct {
	// Logged entries were accepted by Log.
	Logged uint64 `json:"logged"`
	// Dropped entries were lost: the buffer was full, the collector was
	// down long enough for MaxPending to overflow, or Close gave up.
	Dropped uint64 `json:"dropped"`
	// Uploaded events reached the collector.
	Uploaded uint64 `json:"uploaded"`
	// UploadErrors counts failed upload attempts, retries included.
	UploadErrors uint64 `json:"upload_errors"`
	// Pending events wait for upload.
	Pending int `json:"pending"`
}

// Logger ships decision-log events. Log is safe for concurrent use and
// never blocks; Close flushes. A Logger with neither Console nor URL
// accepts and discards entries, so callers need no nil checks.
type Logger struct {
	cfg    Config
	logger *slog.Logger
	out    io.Writer
	client *http.Client
	upload string // the collector's URL, "" if none

	entries chan Entry
	closing chan struct{}
	closed  atomic.Bool
	encoded chan struct{} // the encoder has drained entries and exited

	mu       sync.Mutex
	pending  []json.RawMessage
	inflight int           // pending[:inflight] is being uploaded
	kick     chan struct{} // a batch is full, or Close wants everything
	done     chan struct{} // the uploader has exited
	giveUp   context.CancelFunc

	logged, dropped, uploaded, uploadErrors atomic.Uint64
}

// New starts a Logger. Call Close at shutdown, or queued events are lost.
func New(cfg Config, logger *slog.Logger, opts ...Option) (*Logger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	rules := make([]MaskRule, len(cfg.Mask))
	for i, r := range cfg.Mask {
		rules[i], _ = ParseMaskRule(r.Op, r.Path, r.Value) // validated above
	}
	cfg.Mask = rules
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Logger{
		cfg:     cfg,
		logger:  logger,
		out:     os.Stdout,
		entries: make(chan Entry, cfg.BufferSize),
		closing: make(chan struct{}),
		encoded: make(chan struct{}),
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	if cfg.URL != "" {
		l.upload = strings.TrimRight(cfg.URL, "/") + "/" + strings.TrimLeft(cfg.Resource, "/")
	}
	for _, opt := range opts {
		opt(l)
	}
	if l.client == nil {
		l.client = &http.Client{Timeout: cfg.UploadTimeout}
	}

	uploadCtx, giveUp := context.WithCancel(context.Background())
	l.giveUp = giveUp
	go l.encode()
	go l.uploadLoop(uploadCtx)
	return l, nil
}

// Log queues e and returns at once. If the buffer is full, or the Logger
// is closed, e is dropped and counted: a decision is never delayed for its
// log line.
func (l *Logger) Log(_ context.Context, e Entry) {
	if l.closed.Load() {
		l.dropped.Add(1)
		return
	}
	select {
	case l.entries <- e:
		l.logged.Add(1)
	default:
		l.dropped.Add(1)
	}
}

// Stats reports counts since New.
func (l *Logger) Stats() Stats {
	l.mu.Lock()
	pending := len(l.pending)
	l.mu.Unlock()
	return Stats{
		Logged: l.logged.Load(), Dropped: l.dropped.Load(),
		Uploaded: l.uploaded.Load(), UploadErrors: l.uploadErrors.Load(), Pending: pending,
	}
}

// Close stops accepting entries, writes what is queued and uploads it,
// retrying until ctx ends. Events still unsent then are dropped, counted,
// and reported in the error. Entries logged while Close runs may be lost.
func (l *Logger) Close(ctx context.Context) error {
	if !l.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(l.closing)
	<-l.encoded

	select {
	case <-l.done:
	case <-ctx.Done():
		l.giveUp()
		<-l.done
	}

	l.mu.Lock()
	lost := len(l.pending)
	l.pending = nil
	l.mu.Unlock()
	if lost > 0 {
		l.dropped.Add(uint64(lost))
		return fmt.Errorf("decisionlog: %d events not uploaded before close: %w", lost, ctx.Err())
	}
	return nil
}

// encode turns entries into events, writes them to the console and queues
// them for upload. It runs on its own goroutine, so masking and encoding
// cost the request nothing.
func (l *Logger) encode() {
	defer close(l.encoded)
	console := json.NewEncoder(l.out)
	console.SetEscapeHTML(false)
	handle := func(e Entry) {
		raw, err := l.event(e)
		if err != nil {
			l.dropped.Add(1)
			l.logger.LogAttrs(context.Background(), slog.LevelError, "decision log entry not encodable",
				slog.String("decision_id", e.DecisionID), slog.Any("error", err))
			return
		}
		if l.cfg.Console {
			if err := console.Encode(raw); err != nil {
				l.logger.LogAttrs(context.Background(), slog.LevelError, "decision log write failed",
					slog.Any("error", err))
			}
		}
		if l.upload != "" {
			l.enqueue(raw)
		}
	}
	for {
		select {
		case e := <-l.entries:
			handle(e)
		case <-l.closing:
			for {
				select {
				case e := <-l.entries:
					handle(e)
				default:
					return
				}
			}
		}
	}
}

// event builds OPA's EventV1 from e, masked, as JSON.
func (l *Logger) event(e Entry) (json.RawMessage, error) {
	input, err := generic(e.Input)
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	result, err := generic(e.Result)
	if err != nil {
		return nil, fmt.Errorf("result: %w", err)
	}

	var erased, masked []string
	erased = scrubCredentials(input, "/input", erased)
	slices.Sort(erased)
	for _, r := range l.cfg.Mask {
		doc := &input
		if r.root == "result" {
			doc = &result
		}
		if !r.apply(doc) {
			continue
		}
		if r.Op == OpRemove {
			erased = append(erased, r.Path)
		} else {
			masked = append(masked, r.Path)
		}
	}

	labels := make(map[string]string, len(l.cfg.Labels)+len(e.Labels))
	for k, v := range l.cfg.Labels {
		labels[k] = v
	}
	for k, v := range e.Labels {
		labels[k] = v
	}
	ev := logs.EventV1{
		Labels:          labels,
		DecisionID:      e.DecisionID,
		BatchDecisionID: e.BatchID,
		Revision:        e.Revision,
		Path:            e.Path,
		Timestamp:       e.Timestamp.UTC(),
		Erased:          erased,
		Masked:          masked,
		Metrics:         map[string]any{"timer_server_handler_ns": e.Latency.Nanoseconds()},
	}
	if e.Revision != "" {
		ev.Bundles = map[string]logs.BundleInfoV1{l.cfg.BundleName: {Revision: e.Revision}}
	}
	if input != nil {
		ev.Input = &input
	}
	if result != nil {
		ev.Result = &result
	}
	return json.Marshal(ev)
}

// generic copies v into a fresh JSON tree (maps, slices, float64s), so
// masks never touch the caller's values.
func generic(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

func (l *Logger) enqueue(raw json.RawMessage) {
	l.mu.Lock()
	if len(l.pending) >= l.cfg.MaxPending && len(l.pending) > l.inflight {
		// Drop the oldest event not in flight, as OPA drops the oldest.
		l.pending = append(l.pending[:l.inflight], l.pending[l.inflight+1:]...)
		l.dropped.Add(1)
	}
	l.pending = append(l.pending, raw)
	full := len(l.pending) >= l.cfg.BatchSize
	l.mu.Unlock()
	if full {
		l.wake()
	}
}

func (l *Logger) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// uploadLoop ships batches: when one is full, every FlushInterval, and
// everything at Close. A failed batch is retried with backoff, and events
// keep queueing behind it up to MaxPending.
func (l *Logger) uploadLoop(ctx context.Context) {
	defer close(l.done)
	if l.upload == "" {
		<-l.encoded
		return
	}
	tick := time.NewTicker(l.cfg.FlushInterval)
	defer tick.Stop()
	for {
		// A full batch goes at once; a partial one waits for the tick.
		final, all := false, false
		select {
		case <-l.kick:
		case <-tick.C:
			all = true
		case <-l.encoded:
			final, all = true, true
		}
		for batch := l.peek(); len(batch) > 0; batch = l.peek() {
			if !all && len(batch) < l.cfg.BatchSize {
				l.release()
				break
			}
			if !l.send(ctx, batch) {
				return // Close gave up
			}
			l.commit()
		}
		if final {
			return
		}
	}
}

// peek marks the next batch in flight and returns it. Overflow never drops
// an event in flight: it could not be taken back from the collector.
func (l *Logger) peek() []json.RawMessage {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight = min(len(l.pending), l.cfg.BatchSize)
	return l.pending[:l.inflight:l.inflight]
}

// release puts the batch back: it was not sent.
func (l *Logger) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight = 0
}

// commit removes the batch in flight, which the collector accepted.
func (l *Logger) commit() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.uploaded.Add(uint64(l.inflight))
	l.pending = l.pending[l.inflight:]
	l.inflight = 0
}

// send uploads batch until it succeeds or ctx ends.
func (l *Logger) send(ctx context.Context, batch []json.RawMessage) bool {
	body, err := gzipArray(batch)
	if err != nil {
		l.logger.LogAttrs(ctx, slog.LevelError, "decision log batch not encodable",
			slog.Any("error", err))
		return true
	}
	for attempt := 0; ; attempt++ {
		err := l.post(ctx, body)
		if err == nil {
			if attempt > 0 {
				l.logger.LogAttrs(ctx, slog.LevelInfo, "decision log upload recovered",
					slog.Int("attempts", attempt+1))
			}
			return true
		}
		l.uploadErrors.Add(1)
		level := slog.LevelDebug
		if attempt == 0 {
			level = slog.LevelWarn
		}
		l.logger.LogAttrs(ctx, level, "decision log upload failed, retrying",
			slog.String("url", l.upload), slog.Int("events", len(batch)), slog.Any("error", err))

		// OPA's own backoff, as its decision-log plugin retries: doubling-ish
		// with jitter, so a fleet does not retry in step.
		delay := util.DefaultBackoff(float64(l.cfg.MinRetryDelay), float64(l.cfg.MaxRetryDelay), attempt+1)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return false
		}
	}
}

func (l *Logger) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.upload, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("User-Agent", "tierguard")
	if l.cfg.BearerToken != "" {
		req.Header.Set("Authorization", "Bearer "+l.cfg.BearerToken)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("collector answered %s", resp.Status)
	}
	return nil
}

// gzipArray writes events as one gzip-compressed JSON array, OPA's
// decision-log upload body.
func gzipArray(events []json.RawMessage) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte{'['})
	for i, e := range events {
		if i > 0 {
			zw.Write([]byte{','})
		}
		zw.Write(e)
	}
	zw.Write([]byte{']'})
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
