# METADATA
# title: tierguard authorization
# description: |
#   Which subscription tier may reach which API route, UI route, resource
#   and feature. Who reaches what is data (../data.json); this package only
#   says how claims become a tier and how a tier meets a requirement.
# scope: package
# schemas:
#   - input:
#       type: object
#       properties:
#         subject:
#           type: object
#           properties:
#             authenticated: {type: boolean}
#             iss: {type: string}
#             sub: {type: string}
#             client_id: {type: string}
#             scopes: {type: array, items: {type: string}}
#             groups: {type: array, items: {}}
#             claims: {type: object, additionalProperties: true}
#         profile: {type: object, additionalProperties: true}
#         check:
#           $ref: "#/definitions/check"
#         checks:
#           type: array
#           items: {$ref: "#/definitions/check"}
#       definitions:
#         check:
#           type: object
#           properties:
#             kind: {type: string}
#             method: {type: string}
#             template: {type: string}
#             path: {type: string}
#             type: {type: string}
#             action: {type: string}
#             id: {type: string}
#             name: {type: string}
package tierguard.authz

# Tiers rank by their position in data.tierguard.tiers, lowest first. Ranks
# come from this map, never from comparing tier names as strings.
_rank := {name: i | some i, name in data.tierguard.tiers}

# METADATA
# description: |
#   The subject's tier. Anonymous without a token; otherwise a per-subject
#   entry in data decides, then the token's tier claim and tier groups.
default tier := "anonymous"

tier := _authenticated_tier if input.subject.authenticated == true

# A per-subject entry is the policy author's word and wins outright, even
# when it lowers the tier. An entry naming no known tier counts as free.
_authenticated_tier := _subject_entry.tier if {
	_rank[_subject_entry.tier]
} else := "free" if {
	_subject_entry
} else := _lowest(_claimed_tiers) if {
	count(_claimed_tiers) > 0
} else := "free"

_subject_entry := entry if {
	entry := data.tierguard.subjects[input.subject.sub]
	_entry_applies(entry)
}

# An entry may pin its issuer, so that the same sub from another trusted
# issuer does not inherit it.
_entry_applies(entry) if not entry.iss

_entry_applies(entry) if entry.iss == input.subject.iss

_claimed_tiers contains _tier_value(input.subject.claims.tier)

# Okta-style groups such as "tier-plus". The prefix is matched in any case
# so that "TIER-gold" still counts as a (free) tier source rather than being
# ignored next to a higher claim: where sources disagree, the lowest wins.
_claimed_tiers contains _tier_value(suffix) if {
	prefix := data.tierguard.tier_group_prefix
	some group in input.subject.groups
	is_string(group)
	startswith(lower(group), prefix)
	suffix := substring(group, count(prefix), -1)
}

# Only an exact tier name counts; any other value (another case, a number,
# an array, null) is free.
_tier_value(value) := value if {
	is_string(value)
	_rank[value]
} else := "free"

_lowest(tiers) := data.tierguard.tiers[min({_rank[t] | some t in tiers})]

# METADATA
# description: |
#   The decision for input.check: {allow, reason, required_tier, tier}.
#   Undefined only for input the service never sends; it denies then.
# entrypoint: true
decision := _decide(input.check)

# METADATA
# description: |
#   The decisions for input.checks, in request order, so that a batch is
#   one evaluation.
# entrypoint: true
decisions := [_decide(check) | some check in input.checks]

_decide(check) := {"allow": true, "reason": "allowed", "required_tier": null, "tier": tier} if {
	_rank[tier] >= _rank[_required(check)]
} else := {"allow": false, "reason": _deny_reason, "required_tier": need, "tier": tier} if {
	need := _required(check)
	_rank[need]
} else := {"allow": false, "reason": "policy_error", "required_tier": null, "tier": tier} if {
	# Declared, but with a requirement that is not a tier: a broken policy
	# denies rather than guesses.
	_required(check)
} else := {"allow": false, "reason": _unknown_reason(object.get(check, "kind", null)), "required_tier": null, "tier": tier}

_deny_reason := "tier_required" if {
	input.subject.authenticated == true
} else := "unauthenticated"

# The lowest tier a check needs. Each lookup is an indexed object access
# by key, so the size of a route table does not change its cost.
_required(check) := _api_tier(check.method, check.template) if check.kind == "api"

_required(check) := _ui_tier(check.template) if check.kind == "ui"

_required(check) := data.tierguard.resources[check.type][check.action] if check.kind == "resource"

_required(check) := data.tierguard.features[check.name] if check.kind == "feature"

_api_tier(method, template) := data.tierguard.api_routes[method][template].tier

# A page needs its own tier and the tier of every API route it calls, so a
# page never opens for a subject whose data calls the API would refuse. A
# page that needs an undeclared route or names an unknown tier is broken:
# "invalid" makes it a policy_error for everyone.
_ui_tier(template) := data.tierguard.tiers[max(ranks)] if {
	route := data.tierguard.ui_routes[template]
	needs := array.concat([route.tier], [_requirement_tier(r) | some r in route.requires])
	count(needs) == count(route.requires) + 1
	ranks := {_rank[t] | some t in needs}
	every t in needs {
		_rank[t]
	}
} else := "invalid" if {
	data.tierguard.ui_routes[template]
}

# A requirement reads "METHOD /template", as the API route table is keyed.
_requirement_tier(requirement) := _api_tier(parts[0], parts[1]) if {
	parts := split(requirement, " ")
	count(parts) == 2
}

_unknown_reason(kind) := "route_unknown" if {
	kind in {"api", "ui"}
} else := "resource_unknown" if {
	kind == "resource"
} else := "feature_unknown" if {
	kind == "feature"
} else := "check_invalid"
