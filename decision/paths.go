package decision

// Paths of the rules the engine asks, as OPA's decision logs name them in
// an event's "path". Log collectors and dashboards key on these.
const (
	DecisionPath = "tierguard/authz/decision"
	BatchPath    = "tierguard/authz/decisions"
)
