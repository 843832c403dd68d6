package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tierguard/tierguard/decision"
	"github.com/tierguard/tierguard/server/identity"
)

// MaxBatch is the most checks one /authz/check request may carry.
const MaxBatch = 100

// checkRequest is one check as a client sends it: a concrete path, which
// the server resolves to a template with Echo's router.
type checkRequest struct {
	Kind   string `json:"kind"`
	Method string `json:"method,omitempty"`
	Path   string `json:"path,omitempty"`
	Type   string `json:"type,omitempty"`
	Action string `json:"action,omitempty"`
	ID     string `json:"id,omitempty"`
	Name   string `json:"name,omitempty"`
}

// fieldsByKind lists the members each kind accepts; anything else is a
// client bug worth a 400 rather than a silent guess.
var fieldsByKind = map[string]map[string]bool{
	decision.KindAPI:      {"kind": true, "method": true, "path": true},
	decision.KindUI:       {"kind": true, "path": true},
	decision.KindResource: {"kind": true, "type": true, "action": true, "id": true},
	decision.KindFeature:  {"kind": true, "name": true},
}

type decisionJSON struct {
	Allow        bool      `json:"allow"`
	Reason       string    `json:"reason"`
	RequiredTier *nullable `json:"required_tier"`
	DecisionID   string    `json:"decision_id"`
}

type singleResponse struct {
	decisionJSON
	Revision  string `json:"revision"`
	ExpiresAt string `json:"expires_at"`
}

type batchResponse struct {
	Revision  string         `json:"revision"`
	ExpiresAt string         `json:"expires_at"`
	Decisions []decisionJSON `json:"decisions"`
}

// check answers POST /authz/check: one check, or {"checks": [...]} as one
// evaluation. Identity comes only from the caller's token.
func (s *Server) check(c echo.Context) error {
	if !isJSON(c.Request()) {
		return newError(http.StatusUnsupportedMediaType, reasonUnsupportedMedia,
			"send the check as application/json")
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	reqs, batch, err := parseChecks(body)
	if err != nil {
		return err
	}

	rev := revisionOf(c)
	resolver := s.resolver(rev)
	checks := make([]decision.Check, len(reqs))
	for i, r := range reqs {
		checks[i] = toCheck(resolver, r)
	}

	who := callerOf(c)
	decisions, ids := s.decideBatch(c, rev, who, checks)
	expires := s.expiresAt(who.id)
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")

	if !batch {
		return c.JSON(http.StatusOK, singleResponse{
			decisionJSON: toJSON(decisions[0], ids[0]),
			Revision:     rev.ID, ExpiresAt: expires,
		})
	}
	out := batchResponse{Revision: rev.ID, ExpiresAt: expires, Decisions: make([]decisionJSON, len(decisions))}
	for i, d := range decisions {
		out.Decisions[i] = toJSON(d, ids[i])
	}
	return c.JSON(http.StatusOK, out)
}

func toJSON(d decision.Decision, id string) decisionJSON {
	return decisionJSON{Allow: d.Allow, Reason: d.Reason, RequiredTier: tierOf(d.RequiredTier), DecisionID: id}
}

// toCheck resolves a request's path to the template Echo would route it
// to. An unresolvable path keeps an empty template: the policy knows no
// such route and denies it as route_unknown.
func toCheck(r *Resolver, req checkRequest) decision.Check {
	c := decision.Check{Kind: req.Kind, Method: req.Method, Path: pathOnly(req.Path),
		Type: req.Type, Action: req.Action, ID: req.ID, Name: req.Name}
	switch req.Kind {
	case decision.KindAPI:
		c.Template = r.API(req.Method, req.Path)
	case decision.KindUI:
		c.Template = r.UI(req.Path)
	}
	return c
}

// pathOnly drops a target's query and fragment: routing never reads them,
// and a query is where a misplaced credential would sit.
func pathOnly(target string) string {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		return target[:i]
	}
	return target
}

// decideBatch decides checks with a decision id each: from the decision
// table where it holds them, and every other check in one evaluation.
func (s *Server) decideBatch(c echo.Context, rev *decision.Revision, who *caller,
	checks []decision.Check) ([]decision.Decision, []string) {
	start := time.Now()
	out := make([]decision.Decision, len(checks))
	var missed []int
	for i, check := range checks {
		d, ok := s.lookup(c, rev, who, check)
		if !ok {
			missed = append(missed, i)
			continue
		}
		out[i] = d
	}
	if len(missed) > 0 {
		rest := make([]decision.Check, len(missed))
		for j, i := range missed {
			rest[j] = checks[i]
		}
		full := rev.DecideBatch(c.Request().Context(), SubjectOf(who.id), who.id.Profile, rest)
		for j, i := range missed {
			out[i] = full[j]
		}
	}

	each := time.Since(start) / time.Duration(max(len(out), 1))
	subject := SubjectOf(who.id)
	batchID := ""
	if s.cfg.DecisionLog != nil && len(out) > 1 {
		batchID = newDecisionID()
	}
	ids := make([]string, len(out))
	for i, d := range out {
		ids[i] = newDecisionID()
		s.logDecision(c.Request().Context(), subject, who.id.Profile, checks[i], d, ids[i], batchID, each)
	}
	s.metrics.observeBatch(checks, out, each)
	return out, ids
}

// expiresAt is when a client should ask again: the decision TTL, but
// never past the token's own expiry.
func (s *Server) expiresAt(id identity.Identity) string {
	t := s.cfg.Now().Add(s.cfg.DecisionTTL)
	if id.Authenticated && !id.Expiry.IsZero() && id.Expiry.Before(t) {
		t = id.Expiry
	}
	return t.UTC().Truncate(time.Second).Format(time.RFC3339)
}

// readBody reads a request body that the body limit guards. A body over
// the limit is 413; one that breaks off, is malformed on the wire or
// arrives too slowly is the client's fault, never a 500.
func readBody(c echo.Context) ([]byte, error) {
	body, err := io.ReadAll(c.Request().Body)
	if err == nil {
		return body, nil
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return nil, err // the body limit's 413
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		e := newError(http.StatusRequestTimeout, reasonRequestTimeout, "the body arrived too slowly")
		e.cause = err
		return nil, e
	}
	e := newError(http.StatusBadRequest, reasonInvalidRequest, "the body could not be read")
	e.cause = err
	return nil, e
}

func isJSON(r *http.Request) bool {
	ct := r.Header.Get(echo.HeaderContentType)
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), echo.MIMEApplicationJSON)
}

// parseChecks reads one check or a batch, strictly: a malformed check
// fails the whole request and names the field (checks[3].kind).
// checkBody is a request body decoded in one pass: one check, or a batch
// in Checks.
type checkBody struct {
	checkRequest
	Checks *[]*checkRequest `json:"checks"`
}

// parseChecks reads one check or a batch. Well-formed bodies are decoded
// in one pass; anything else is read again, member by member, by
// parseChecksStrictly, so that the 400 names the field at fault.
func parseChecks(body []byte) ([]checkRequest, bool, error) {
	top, err := topLevelMembers(body)
	if err != nil {
		return nil, false, newError(http.StatusBadRequest, reasonInvalidRequest,
			"the body is not a JSON object")
	}
	batchShape := slices.Contains(top, "checks")
	if batchShape && len(top) != 1 {
		return parseChecksStrictly(body)
	}

	var b checkBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if dec.Decode(&b) != nil || dec.More() {
		return parseChecksStrictly(body)
	}
	if !batchShape {
		if validateCheck(b.checkRequest, "") != nil {
			return parseChecksStrictly(body)
		}
		return []checkRequest{b.checkRequest}, false, nil
	}
	if b.Checks == nil || len(*b.Checks) == 0 || len(*b.Checks) > MaxBatch {
		return parseChecksStrictly(body)
	}
	out := make([]checkRequest, len(*b.Checks))
	for i, c := range *b.Checks {
		if c == nil || validateCheck(*c, "") != nil {
			return parseChecksStrictly(body)
		}
		out[i] = *c
	}
	return out, true, nil
}

// topLevelMembers returns the member names of the object in data, after
// refusing duplicates anywhere in it. Whether data is valid JSON is left
// to the decoder that reads it next.
func topLevelMembers(data []byte) ([]string, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	return scanMembers(data)
}

// parseChecksStrictly reads a body member by member, naming the first
// field at fault.
func parseChecksStrictly(body []byte) ([]checkRequest, bool, error) {
	var top map[string]json.RawMessage
	if err := strictUnmarshal(body, &top); err != nil || top == nil {
		return nil, false, newError(http.StatusBadRequest, reasonInvalidRequest,
			"the body is not a JSON object")
	}
	raw, isBatch := top["checks"]
	if !isBatch {
		c, err := parseCheck(body, "")
		if err != nil {
			return nil, false, err
		}
		return []checkRequest{c}, false, nil
	}
	for k := range top {
		if k != "checks" {
			return nil, true, badField(k, "a batch holds only checks")
		}
	}

	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, true, badField("checks", "must be an array of check objects")
	}
	if len(items) == 0 {
		return nil, true, badField("checks", "must hold at least one check")
	}
	if len(items) > MaxBatch {
		e := newError(http.StatusBadRequest, reasonBatchTooLarge,
			fmt.Sprintf("a batch holds at most %d checks", MaxBatch))
		e.Field = "checks"
		return nil, true, e
	}
	out := make([]checkRequest, len(items))
	for i, item := range items {
		c, err := parseCheck(item, fmt.Sprintf("checks[%d].", i))
		if err != nil {
			return nil, true, err
		}
		out[i] = c
	}
	return out, true, nil
}

// parseCheck decodes one check object, already checked for duplicate
// members, straight into its struct: unknown members and members of the
// wrong type are refused by the decoder and named here.
func parseCheck(raw json.RawMessage, prefix string) (checkRequest, error) {
	var c checkRequest
	if string(bytes.TrimSpace(raw)) == "null" {
		return c, checkDecodeError(errors.New("null"), prefix)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, checkDecodeError(err, prefix)
	}
	return c, validateCheck(c, prefix)
}

// validateCheck holds a decoded check to its kind: the members it needs,
// and none that belong to another kind. An empty member counts as absent.
func validateCheck(c checkRequest, prefix string) error {
	allowed, ok := fieldsByKind[c.Kind]
	if !ok {
		return badField(prefix+"kind", "must be one of api, ui, resource, feature")
	}
	members := [...]struct{ name, value string }{{"method", c.Method}, {"path", c.Path},
		{"type", c.Type}, {"action", c.Action}, {"id", c.ID}, {"name", c.Name}}
	for _, m := range members {
		if m.value == "" {
			continue
		}
		if !allowed[m.name] {
			return badField(prefix+m.name, "is not a member of a "+c.Kind+" check")
		}
		if len(m.value) > MaxPathLen {
			return badField(prefix+m.name, "is too long")
		}
	}

	require := func(name, value string) error {
		if value == "" {
			return badField(prefix+name, "is required")
		}
		return nil
	}
	switch c.Kind {
	case decision.KindAPI:
		if err := require("method", c.Method); err != nil {
			return err
		}
		if !validMethod(c.Method) {
			return badField(prefix+"method", "must be an HTTP method in upper case")
		}
		return checkPath(prefix, c.Path)
	case decision.KindUI:
		return checkPath(prefix, c.Path)
	case decision.KindResource:
		if err := require("type", c.Type); err != nil {
			return err
		}
		return require("action", c.Action)
	default:
		return require("name", c.Name)
	}
}

// checkDecodeError names the member a decoding error is about.
func checkDecodeError(err error, prefix string) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return badField(prefix+typeErr.Field, "must be a string")
	}
	if _, name, ok := strings.Cut(err.Error(), "unknown field "); ok {
		return badField(prefix+strings.Trim(name, `"`), "is not a member of a check")
	}
	where := strings.TrimSuffix(prefix, ".")
	if where == "" {
		where = "body"
	}
	return badField(where, "must be a check object")
}

func checkPath(prefix, p string) error {
	if p == "" {
		return badField(prefix+"path", "is required")
	}
	if !strings.HasPrefix(p, "/") {
		return badField(prefix+"path", "must be an absolute path starting with /")
	}
	return nil
}

func validMethod(m string) bool {
	if len(m) > 16 {
		return false
	}
	for _, r := range m {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

// strictUnmarshal refuses trailing data after the value, and objects
// that name a member twice: a decoder keeps the last, and a check must not
// mean one thing to us and another to whoever wrote it.
func strictUnmarshal(data []byte, v any) error {
	if _, err := scanMembers(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// maxJSONDepth bounds nesting in request bodies; no check needs more.
const maxJSONDepth = 32

// scanMembers finds an object that names a member twice, comparing names
// as decoded (an escaped "p\u0061th" is "path"), and returns the
// outermost object's member names. It reads the bytes once, without
// building values; whether data is valid JSON at all is the decoder's to
// say, and malformed input only ends the scan early.
func scanMembers(data []byte) ([]string, error) {
	type frame struct {
		object, wantKey bool
		keys            []string
	}
	var stack []frame
	var outer []string
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '{', '[':
			if len(stack) >= maxJSONDepth {
				return nil, errors.New("JSON nested too deeply")
			}
			stack = append(stack, frame{object: data[i] == '{', wantKey: data[i] == '{'})
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case ',':
			if n := len(stack); n > 0 && stack[n-1].object {
				stack[n-1].wantKey = true
			}
		case '"':
			end, escaped := stringEnd(data, i)
			if n := len(stack); n > 0 && stack[n-1].wantKey {
				top := &stack[n-1]
				name := string(data[i+1 : min(end, len(data))])
				if escaped && end < len(data) {
					if err := json.Unmarshal(data[i:end+1], &name); err != nil {
						return nil, err
					}
				}
				if slices.Contains(top.keys, name) {
					return nil, fmt.Errorf("member %q appears twice", name)
				}
				top.keys = append(top.keys, name)
				top.wantKey = false
				if n == 1 {
					outer = top.keys
				}
			}
			i = end
		}
	}
	return outer, nil
}

// stringEnd returns the index of the quote closing the string that opens
// at data[start], or len(data), and whether it holds escapes.
func stringEnd(data []byte, start int) (int, bool) {
	escaped := false
	for i := start + 1; i < len(data); i++ {
		switch data[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			return i, escaped
		}
	}
	return len(data), escaped
}

// routeEntry and the route map are GET /authz/routes, the guard's view of
// every page and feature for the caller.
type routeEntry struct {
	Allow        bool      `json:"allow"`
	Reason       string    `json:"reason"`
	RequiredTier *nullable `json:"required_tier"`
	Requires     []string  `json:"requires"`
}

type featureEntry struct {
	Allow        bool      `json:"allow"`
	Reason       string    `json:"reason"`
	RequiredTier *nullable `json:"required_tier"`
}

type routeMap struct {
	Tier      string                  `json:"tier"`
	Revision  string                  `json:"revision"`
	ExpiresAt string                  `json:"expires_at,omitempty"`
	Routes    map[string]routeEntry   `json:"routes"`
	Features  map[string]featureEntry `json:"features"`
}

func (s *Server) routeMap(c echo.Context) error {
	rev := revisionOf(c)
	tables := rev.Tables()
	checks := make([]decision.Check, 0, len(tables.UIRoutes)+len(tables.Features))
	for _, page := range tables.UIRoutes {
		checks = append(checks, decision.Check{Kind: decision.KindUI, Template: page.Template, Path: page.Template})
	}
	for _, name := range tables.Features {
		checks = append(checks, decision.Check{Kind: decision.KindFeature, Name: name})
	}

	who := callerOf(c)
	decisions, _ := s.decideBatch(c, rev, who, checks)
	m := routeMap{
		Tier: tierFrom(decisions, who.id), Revision: rev.ID,
		Routes:   make(map[string]routeEntry, len(tables.UIRoutes)),
		Features: make(map[string]featureEntry, len(tables.Features)),
	}
	for i, page := range tables.UIRoutes {
		d := decisions[i]
		requires := page.Requires
		if requires == nil {
			requires = []string{}
		}
		m.Routes[page.Template] = routeEntry{Allow: d.Allow, Reason: d.Reason,
			RequiredTier: tierOf(d.RequiredTier), Requires: requires}
	}
	for i, name := range tables.Features {
		d := decisions[len(tables.UIRoutes)+i]
		m.Features[name] = featureEntry{Allow: d.Allow, Reason: d.Reason, RequiredTier: tierOf(d.RequiredTier)}
	}

	// The ETag covers everything but expires_at, which moves every call.
	stable, err := json.Marshal(m)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(stable)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`

	h := c.Response().Header()
	h.Set(headerETag, etag)
	h.Set(echo.HeaderCacheControl, "private, no-cache")
	h.Set("Vary", "Authorization, X-ID-Token")
	if etagMatches(c.Request().Header.Get(headerIfNoneMatch), etag) {
		return c.NoContent(http.StatusNotModified)
	}
	m.ExpiresAt = s.expiresAt(who.id)
	return c.JSON(http.StatusOK, m)
}

// tierFrom reads the caller's tier off any decision: the policy computes
// it, Go never does.
func tierFrom(ds []decision.Decision, id identity.Identity) string {
	for _, d := range ds {
		if d.Tier != "" {
			return d.Tier
		}
	}
	if !id.Authenticated {
		return "anonymous"
	}
	return ""
}

// etagMatches implements If-None-Match's weak comparison (RFC 9110
// 13.1.2): a W/ prefix does not stop a match, and * matches anything.
func etagMatches(header, etag string) bool {
	for _, candidate := range strings.Split(header, ",") {
		candidate = strings.TrimPrefix(strings.TrimSpace(candidate), "W/")
		if candidate == "*" || candidate == etag {
			return true
		}
	}
	return false
}
