// Package decision loads tierguard's Rego policies, prepares them once per
// revision and evaluates checks against them. It knows nothing of HTTP: the
// server hands it a verified subject and an already resolved route template.
package decision

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Reason codes a decision can carry. They are part of the public contract:
// clients switch on them, so they never change meaning.
const (
	ReasonAllowed         = "allowed"
	ReasonUnauthenticated = "unauthenticated"
	ReasonTierRequired    = "tier_required"
	ReasonRouteUnknown    = "route_unknown"
	ReasonResourceUnknown = "resource_unknown"
	ReasonFeatureUnknown  = "feature_unknown"
	ReasonCheckInvalid    = "check_invalid"
	ReasonPolicyError     = "policy_error"
)

// Check kinds, as the policy receives them in input.check.kind.
const (
	KindAPI      = "api"
	KindUI       = "ui"
	KindResource = "resource"
	KindFeature  = "feature"
)

// Subject is the verified caller as the policy sees it. Claims must hold
// only verified token claims: the policy maps them to a tier and trusts
// them. The zero Subject is anonymous.
type Subject struct {
	Authenticated bool
	Issuer        string
	Subject       string
	ClientID      string
	Scopes        []string
	Groups        []string
	Claims        map[string]any
}

// Check is one question: may the subject reach this API route, UI route,
// resource or feature? Which fields matter depends on Kind. Template is a
// route template in Echo's syntax, already resolved from Path by the
// caller; the engine never matches paths itself.
type Check struct {
	Kind     string `json:"kind"`
	Method   string `json:"method,omitempty"`
	Template string `json:"template,omitempty"`
	Path     string `json:"path,omitempty"`
	Type     string `json:"type,omitempty"`
	Action   string `json:"action,omitempty"`
	ID       string `json:"id,omitempty"`
	Name     string `json:"name,omitempty"`
}

// Input is everything one evaluation sees. Profile holds verified ID-token
// claims for display; policies must never grant anything on its strength.
type Input struct {
	Subject Subject
	Profile map[string]any
	Check   Check
}

// Decision is the policy's answer to one check. RequiredTier is the lowest
// tier that would be allowed, empty when no tier helps and on every allow.
type Decision struct {
	Allow        bool
	Reason       string
	RequiredTier string
	Tier         string
	// Revision names the policy revision that decided.
	Revision string
}

// MarshalJSON writes the decision in the contract's shape, with
// required_tier as null rather than "" when no tier helps.
func (d Decision) MarshalJSON() ([]byte, error) {
	var required *string
	if d.RequiredTier != "" {
		required = &d.RequiredTier
	}
	return json.Marshal(struct {
		Allow        bool    `json:"allow"`
		Reason       string  `json:"reason"`
		RequiredTier *string `json:"required_tier"`
		Tier         string  `json:"tier"`
		Revision     string  `json:"revision,omitempty"`
	}{d.Allow, d.Reason, required, d.Tier, d.Revision})
}

// ErrNoPolicy is returned when a policy tree holds no decision rules.
var ErrNoPolicy = errors.New("decision: no policy modules")

// PolicyError says why a policy could not be loaded, compiled or tested.
// Its message is for operators; it never reaches an HTTP client.
type PolicyError struct {
	Stage string // "load", "compile", "test" or "prepare"
	Err   error
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("decision: policy failed to %s: %v", e.Stage, e.Err)
}

func (e *PolicyError) Unwrap() error { return e.Err }
