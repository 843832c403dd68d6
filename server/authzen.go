package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tierguard/tierguard/decision"
	"github.com/tierguard/tierguard/server/identity"
)

// AuthZEN 1.0 (https://openid.net/specs/authorization-api-1_0.html) lets
// other enforcement points (gateways, services) ask tierguard's policy the
// same questions the API middleware and the browser's guard ask. The
// caller is a PEP speaking for a subject, not the subject itself, so the
// subject comes from the request body and the PEP's own token only says
// who may ask.

// AuthZEN paths. The metadata path is fixed by the specification; the
// others are what the metadata advertises.
const (
	authzenMetadataPath    = "/.well-known/authzen-configuration"
	authzenEvaluationPath  = "/access/v1/evaluation"
	authzenEvaluationsPath = "/access/v1/evaluations"
)

// Evaluations semantics (AuthZEN 1.0, section 7.1.2).
const (
	semanticExecuteAll          = "execute_all"
	semanticDenyOnFirstDeny     = "deny_on_first_deny"
	semanticPermitOnFirstPermit = "permit_on_first_permit"
)

// Resource types with a meaning of their own. Any other type is a
// resource check of that type, with the action name as its action.
const (
	// resourceRoute is AuthZEN's API-gateway profile: the id is a concrete
	// request path and the action name the HTTP method.
	resourceRoute   = "route"
	resourceUIRoute = "ui_route"
	resourceFeature = "feature"
)

// subjectTypes are the subject types that name a person. "user" is the
// specification's example; "identity" is what the AuthZEN API-gateway
// interop profile sends. Anything else (a service, a device) has no tier.
var subjectTypes = map[string]bool{"user": true, "identity": true}

const keyPEP = "tierguard.pep"

// registerAuthZEN mounts the AuthZEN 1.0 endpoints. The metadata is public
// so a PEP can discover the endpoints before it has a token; evaluations
// need a PEP client's token, and answer from the request's one revision.
func (s *Server) registerAuthZEN(e *echo.Echo, limit echo.MiddlewareFunc) {
	e.GET(authzenMetadataPath, s.authzenMetadata)

	access := e.Group("/access/v1", limit, s.revisionHeader, noStore, s.authenticate, s.requirePEP)
	access.POST("/evaluation", s.evaluation)
	access.POST("/evaluations", s.evaluations)
}

type authzenMetadata struct {
	PolicyDecisionPoint       string `json:"policy_decision_point"`
	AccessEvaluationEndpoint  string `json:"access_evaluation_endpoint"`
	AccessEvaluationsEndpoint string `json:"access_evaluations_endpoint"`
}

// authzenMetadata answers GET /.well-known/authzen-configuration with
// absolute URLs built from the request's scheme and host, so the same
// binary answers correctly behind any name. A PEP must find
// policy_decision_point equal to the URL it asked under; tierguard served
// under a path prefix would break that, and is not supported. The search
// endpoints are absent because tierguard does not implement them.
func (s *Server) authzenMetadata(c echo.Context) error {
	base := c.Scheme() + "://" + c.Request().Host
	h := c.Response().Header()
	// The answer reflects the request's Host and scheme headers, so no
	// shared cache may keep it for anyone else: a forged Host must not
	// poison what other PEPs read.
	h.Set(echo.HeaderCacheControl, "private, no-cache")
	h.Set("Vary", "Host, X-Forwarded-Proto, X-Forwarded-Protocol, X-Forwarded-Ssl, X-Url-Scheme")
	return c.JSON(http.StatusOK, authzenMetadata{
		PolicyDecisionPoint:       base,
		AccessEvaluationEndpoint:  base + authzenEvaluationPath,
		AccessEvaluationsEndpoint: base + authzenEvaluationsPath,
	})
}

// requirePEP lets only configured PEP clients through. Any valid token
// from a trusted issuer is not enough: a PEP chooses the subject it asks
// about, so an ordinary user's token here would let the user probe the
// policy for anyone.
func (s *Server) requirePEP(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := identityOf(c)
		if !id.Authenticated {
			e := newError(http.StatusUnauthorized, reasonUnauthenticated,
				"send a PEP client's access token")
			challenge := [2]string{echo.HeaderWWWAuthenticate, `Bearer realm="tierguard"`}
			e.headers = append(e.headers, challenge)
			return e
		}
		pep, ok := s.pepClient(id.ClientID)
		if !ok {
			return newError(http.StatusForbidden, reasonPEPForbidden,
				"this client is not configured as a policy enforcement point")
		}
		c.Set(keyPEP, pep)
		return next(c)
	}
}

func (s *Server) pepClient(clientID string) (PEPClient, bool) {
	if clientID == "" {
		return PEPClient{}, false
	}
	for _, p := range s.cfg.PEPClients {
		if p.ClientID == clientID {
			return p, true
		}
	}
	return PEPClient{}, false
}

// azEntity is a subject, action or resource as parsed, with the JSON path
// it came from, so an error names the member the client actually sent.
type azEntity struct {
	field      string
	Type       string
	ID         string
	Name       string
	Properties map[string]any
}

// azRequest is one evaluation's 4-tuple after defaults are applied. The
// context is checked for shape and otherwise unused: the policy has no
// input for it.
type azRequest struct {
	subject, action, resource *azEntity
}

type azContext struct {
	Reason       string    `json:"reason"`
	RequiredTier *nullable `json:"required_tier"`
	DecisionID   string    `json:"decision_id"`
	Revision     string    `json:"revision"`
}

type azResult struct {
	Decision bool      `json:"decision"`
	Context  azContext `json:"context"`
}

type azResults struct {
	Evaluations []azResult `json:"evaluations"`
}

// evaluation answers POST /access/v1/evaluation: one subject, action and
// resource, one decision. A deny is 200 with decision false, as the
// specification requires; only a malformed request is an HTTP error.
func (s *Server) evaluation(c echo.Context) error {
	top, err := readAuthZENBody(c)
	if err != nil {
		return err
	}
	return s.evaluateOne(c, top)
}

// evaluateOne answers a body holding one 4-tuple.
func (s *Server) evaluateOne(c echo.Context, top map[string]json.RawMessage) error {
	req, err := parseEvaluation(top, "", azRequest{})
	if err != nil {
		return err
	}
	results, err := s.evaluate(c, []azRequest{req})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, results[0])
}

// evaluations answers POST /access/v1/evaluations. Top-level subject,
// action, resource and context are defaults that an item's own member
// replaces whole. Without an evaluations array it is the single
// evaluation, as the specification says. The short-circuit semantics cut
// the answer after the first deny or permit; every item is still decided,
// in the same evaluation, so a short answer costs no less than a full one.
func (s *Server) evaluations(c echo.Context) error {
	top, err := readAuthZENBody(c)
	if err != nil {
		return err
	}
	semantic, err := parseSemantic(top)
	if err != nil {
		return err
	}
	items, err := parseItems(top)
	if err != nil {
		return err
	}
	if items == nil {
		return s.evaluateOne(c, top)
	}

	defaults, err := parseDefaults(top)
	if err != nil {
		return err
	}
	reqs := make([]azRequest, len(items))
	for i, item := range items {
		prefix := fmt.Sprintf("evaluations[%d].", i)
		if reqs[i], err = parseEvaluation(item, prefix, defaults); err != nil {
			return err
		}
	}
	results, err := s.evaluate(c, reqs)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, azResults{Evaluations: cut(results, semantic)})
}

// cut applies an evaluations semantic to the decisions in request order:
// deny_on_first_deny ends the answer with the first deny, and
// permit_on_first_permit with the first permit.
func cut(results []azResult, semantic string) []azResult {
	for i, r := range results {
		if (semantic == semanticDenyOnFirstDeny && !r.Decision) ||
			(semantic == semanticPermitOnFirstPermit && r.Decision) {
			return results[:i+1]
		}
	}
	return results
}

// evaluate decides reqs on the request's revision. Requests about the same
// subject are one evaluation; the usual batch, one subject and many
// resources, is a single call to the engine. Results keep request order.
func (s *Server) evaluate(c echo.Context, reqs []azRequest) ([]azResult, error) {
	rev := revisionOf(c)
	resolver := s.resolver(rev)
	peer := identityOf(c)
	pep, _ := c.Get(keyPEP).(PEPClient)

	type group struct {
		subject decision.Subject
		index   []int
		checks  []decision.Check
	}
	groups := map[string]*group{}
	var order []string
	ignored := false
	for i, r := range reqs {
		check, err := azCheck(resolver, r)
		if err != nil {
			return nil, err
		}
		subject, key, err := azSubject(pep, peer, r.subject)
		if err != nil {
			return nil, err
		}
		ignored = ignored || (!pep.TrustSubjectProperties && len(r.subject.Properties) > 0)
		g, ok := groups[key]
		if !ok {
			g = &group{subject: subject}
			groups[key] = g
			order = append(order, key)
		}
		g.index = append(g.index, i)
		g.checks = append(g.checks, check)
	}
	if ignored {
		// Not trusted to assert them (PEPClient.TrustSubjectProperties).
		s.logger.Debug("authzen subject properties ignored", slog.String("client_id", pep.ClientID))
	}

	out := make([]azResult, len(reqs))
	for _, key := range order {
		g := groups[key]
		start := time.Now()
		ds := rev.DecideBatch(c.Request().Context(), g.subject, nil, g.checks)
		share := time.Since(start) / time.Duration(len(ds))
		batchID := ""
		if s.cfg.DecisionLog != nil && len(reqs) > 1 {
			batchID = newDecisionID()
		}
		for j, d := range ds {
			decisionID := newDecisionID()
			s.metrics.observe(g.checks[j], d, share)
			s.logDecision(c.Request().Context(), g.subject, nil, g.checks[j], d, decisionID, batchID, share)
			out[g.index[j]] = azResult{Decision: d.Allow, Context: azContext{
				Reason: d.Reason, RequiredTier: tierOf(d.RequiredTier),
				DecisionID: decisionID, Revision: rev.ID,
			}}
		}
	}
	return out, nil
}

// azSubject turns the request's subject into policy input. The policy's
// per-subject data decides by id; the PEP's own issuer stands in for the
// subject's, so an entry pinned to an issuer applies only through PEPs of
// that issuer. Properties become claims and groups only for a PEP trusted
// to assert them; from any other PEP they are ignored, not refused, since
// gateways commonly send properties such as ip_address that mean nothing
// here. The key groups requests the policy sees as one subject.
func azSubject(pep PEPClient, peer identity.Identity, e *azEntity) (
	decision.Subject, string, error) {
	subject := decision.Subject{Authenticated: true, Issuer: peer.Issuer, Subject: e.ID}
	if !pep.TrustSubjectProperties || len(e.Properties) == 0 {
		return subject, e.ID, nil
	}

	groups, err := groupsOf(e.Properties["groups"], e.field+".properties.groups")
	if err != nil {
		return decision.Subject{}, "", err
	}
	subject.Groups = groups
	subject.Claims = e.Properties
	props, err := json.Marshal(e.Properties) // map keys sort, so equal maps give equal keys
	if err != nil {
		return decision.Subject{}, "", badField(e.field+".properties", "is not valid JSON")
	}
	return subject, e.ID + "\x00" + string(props), nil
}

func groupsOf(v any, field string) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	items, ok := v.([]any)
	if !ok {
		return nil, badField(field, "must be an array of strings")
	}
	out := make([]string, len(items))
	for i, item := range items {
		s, ok := item.(string)
		if !ok {
			return nil, badField(fmt.Sprintf("%s[%d]", field, i), "must be a string")
		}
		out[i] = s
	}
	return out, nil
}

// azCheck maps a resource to a check kind: a route is an api check whose
// path resolves with the same router as /authz/check and forward auth, a
// ui_route a ui check, a feature a feature check (the action name does
// not matter for those two), anything else a resource check.
func azCheck(resolver *Resolver, r azRequest) (decision.Check, error) {
	res, act := r.resource, r.action
	switch res.Type {
	case resourceRoute:
		if !validMethod(act.Name) {
			return decision.Check{}, badField(act.field+".name",
				"must be an HTTP method in upper case for a route resource")
		}
		if err := azPath(res.field+".id", res.ID); err != nil {
			return decision.Check{}, err
		}
		return decision.Check{Kind: decision.KindAPI, Method: act.Name, Path: res.ID,
			Template: resolver.API(act.Name, res.ID)}, nil
	case resourceUIRoute:
		if err := azPath(res.field+".id", res.ID); err != nil {
			return decision.Check{}, err
		}
		return decision.Check{Kind: decision.KindUI, Path: res.ID, Template: resolver.UI(res.ID)}, nil
	case resourceFeature:
		return decision.Check{Kind: decision.KindFeature, Name: res.ID}, nil
	default:
		return decision.Check{Kind: decision.KindResource, Type: res.Type,
			Action: act.Name, ID: res.ID}, nil
	}
}

func azPath(field, p string) error {
	if !strings.HasPrefix(p, "/") {
		return badField(field, "must be an absolute path starting with /")
	}
	return nil
}

// readAuthZENBody reads a JSON object body. Members this version does not
// know are ignored, not refused: the specification lets later versions
// add parameters, and a PEP built for them must still get an answer.
func readAuthZENBody(c echo.Context) (map[string]json.RawMessage, error) {
	if !isJSON(c.Request()) {
		return nil, newError(http.StatusUnsupportedMediaType, reasonUnsupportedMedia,
			"send the evaluation as application/json")
	}
	body, err := readBody(c)
	if err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := strictUnmarshal(body, &top); err != nil || top == nil {
		return nil, newError(http.StatusBadRequest, reasonInvalidRequest,
			"the body is not a JSON object")
	}
	return top, nil
}

func parseSemantic(top map[string]json.RawMessage) (string, error) {
	raw, ok := top["options"]
	if !ok {
		return semanticExecuteAll, nil
	}
	options, err := members(raw, "options")
	if err != nil {
		return "", err
	}
	semantic, err := stringMember(options, "options", "evaluations_semantic", false)
	if err != nil {
		return "", err
	}
	switch semantic {
	case "":
		return semanticExecuteAll, nil
	case semanticExecuteAll, semanticDenyOnFirstDeny, semanticPermitOnFirstPermit:
		return semantic, nil
	}
	return "", badField("options.evaluations_semantic",
		"must be one of execute_all, deny_on_first_deny, permit_on_first_permit")
}

// parseItems returns the evaluations array's objects, or nil when there is
// none (absent, null or empty), which makes the request a single one.
func parseItems(top map[string]json.RawMessage) ([]map[string]json.RawMessage, error) {
	raw, ok := top["evaluations"]
	if !ok {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, badField("evaluations", "must be an array of evaluation objects")
	}
	if len(items) == 0 {
		return nil, nil
	}
	if len(items) > MaxBatch {
		e := newError(http.StatusBadRequest, reasonBatchTooLarge,
			fmt.Sprintf("a request holds at most %d evaluations", MaxBatch))
		e.Field = "evaluations"
		return nil, e
	}
	out := make([]map[string]json.RawMessage, len(items))
	for i, item := range items {
		m, err := members(item, fmt.Sprintf("evaluations[%d]", i))
		if err != nil {
			return nil, err
		}
		out[i] = m
	}
	return out, nil
}

// parseDefaults reads the top-level members of a batch, each optional.
func parseDefaults(top map[string]json.RawMessage) (azRequest, error) {
	return parseMembers(top, "", azRequest{})
}

// parseEvaluation reads one 4-tuple; prefix names where it sits
// ("evaluations[3].") and defaults fill what it leaves out.
func parseEvaluation(m map[string]json.RawMessage, prefix string,
	defaults azRequest) (azRequest, error) {
	r, err := parseMembers(m, prefix, defaults)
	if err != nil {
		return r, err
	}
	switch {
	case r.subject == nil:
		return r, badField(prefix+"subject", "is required")
	case r.action == nil:
		return r, badField(prefix+"action", "is required")
	case r.resource == nil:
		return r, badField(prefix+"resource", "is required")
	}
	return r, nil
}

// parseMembers reads whichever of subject, action, resource and context
// m holds, over base.
func parseMembers(m map[string]json.RawMessage, prefix string, base azRequest) (azRequest, error) {
	r := base
	entities := []struct {
		name  string
		dst   **azEntity
		parse func(json.RawMessage, string) (*azEntity, error)
	}{
		{"subject", &r.subject, parseSubject},
		{"action", &r.action, func(raw json.RawMessage, f string) (*azEntity, error) {
			return parseEntity(raw, f, "name")
		}},
		{"resource", &r.resource, func(raw json.RawMessage, f string) (*azEntity, error) {
			return parseEntity(raw, f, "type", "id")
		}},
	}
	for _, en := range entities {
		raw, ok := m[en.name]
		if !ok {
			continue
		}
		e, err := en.parse(raw, prefix+en.name)
		if err != nil {
			return r, err
		}
		*en.dst = e
	}
	if raw, ok := m["context"]; ok {
		if _, err := members(raw, prefix+"context"); err != nil {
			return r, err
		}
	}
	return r, nil
}

func parseSubject(raw json.RawMessage, field string) (*azEntity, error) {
	e, err := parseEntity(raw, field, "type", "id")
	if err != nil {
		return nil, err
	}
	if !subjectTypes[e.Type] {
		return nil, badField(field+".type", `must be "user" or "identity": only people have a tier`)
	}
	return e, nil
}

// parseEntity reads an object with the named required string members
// (type, id, name) and optional properties.
func parseEntity(raw json.RawMessage, field string, required ...string) (*azEntity, error) {
	m, err := members(raw, field)
	if err != nil {
		return nil, err
	}
	e := &azEntity{field: field}
	dst := map[string]*string{"type": &e.Type, "id": &e.ID, "name": &e.Name}
	for _, name := range required {
		if *dst[name], err = stringMember(m, field, name, true); err != nil {
			return nil, err
		}
	}
	e.Properties, err = propertiesMember(m, field)
	return e, err
}

func members(raw json.RawMessage, field string) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, badField(field, "must be an object")
	}
	return m, nil
}

// stringMember reads a string member. A required one must be non-empty:
// the specification's type, id and name are all REQUIRED strings.
func stringMember(m map[string]json.RawMessage, field, name string, required bool) (string, error) {
	raw, ok := m[name]
	if !ok {
		if required {
			return "", badField(field+"."+name, "is required")
		}
		return "", nil
	}
	var v *string
	if err := json.Unmarshal(raw, &v); err != nil || v == nil {
		return "", badField(field+"."+name, "must be a string")
	}
	if required && *v == "" {
		return "", badField(field+"."+name, "must not be empty")
	}
	if len(*v) > MaxPathLen {
		return "", badField(field+"."+name, "is too long")
	}
	return *v, nil
}

// propertiesMember reads an optional properties object. Numbers stay
// json.Number so that a large integer claim keeps every digit.
func propertiesMember(m map[string]json.RawMessage, field string) (map[string]any, error) {
	raw, ok := m["properties"]
	if !ok {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var props map[string]any
	if err := dec.Decode(&props); err != nil || props == nil {
		return nil, badField(field+".properties", "must be an object")
	}
	return props, nil
}
