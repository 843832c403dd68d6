package tierguard.authz_test

import data.tierguard.authz

# Each expectation below was worked out by hand from data.json, not read
# back from the policy. A cell is "allowed" or "<reason>:<required_tier>",
# one per tier in the order anonymous, free, plus, pro.
_tiers := ["anonymous", "free", "plus", "pro"]

_api_want := {
	"GET /api/news": ["allowed", "allowed", "allowed", "allowed"],
	"GET /api/plans": ["allowed", "allowed", "allowed", "allowed"],
	"GET /api/videos": ["allowed", "allowed", "allowed", "allowed"],
	"GET /api/videos/:id": ["unauthenticated:free", "allowed", "allowed", "allowed"],
	"GET /api/videos/:id/comments": ["unauthenticated:free", "allowed", "allowed", "allowed"],
	"POST /api/videos/:id/comments": ["unauthenticated:free", "allowed", "allowed", "allowed"],
	"GET /api/videos/:id/download": ["unauthenticated:pro", "tier_required:pro", "tier_required:pro", "allowed"],
	"GET /api/profile": ["unauthenticated:free", "allowed", "allowed", "allowed"],
	"PUT /api/profile": ["unauthenticated:free", "allowed", "allowed", "allowed"],
	"GET /api/playlists": ["unauthenticated:free", "allowed", "allowed", "allowed"],
	"POST /api/playlists": ["unauthenticated:plus", "tier_required:plus", "allowed", "allowed"],
	"DELETE /api/playlists/:id": ["unauthenticated:plus", "tier_required:plus", "allowed", "allowed"],
	"GET /api/treasure-map": ["unauthenticated:plus", "tier_required:plus", "allowed", "allowed"],
	"GET /api/admin": ["unauthenticated:pro", "tier_required:pro", "tier_required:pro", "allowed"],
	"GET /api/analytics": ["unauthenticated:pro", "tier_required:pro", "tier_required:pro", "allowed"],
}

_ui_want := {
	"/": ["allowed", "allowed", "allowed", "allowed"],
	"/login": ["allowed", "allowed", "allowed", "allowed"],
	"/upgrade": ["allowed", "allowed", "allowed", "allowed"],
	"/videos": ["allowed", "allowed", "allowed", "allowed"],
	"/videos/:id": ["unauthenticated:free", "allowed", "allowed", "allowed"],
	"/account": ["unauthenticated:free", "allowed", "allowed", "allowed"],
	"/playlists": ["unauthenticated:free", "allowed", "allowed", "allowed"],
	"/protected-content": ["unauthenticated:plus", "tier_required:plus", "allowed", "allowed"],
	"/admin": ["unauthenticated:pro", "tier_required:pro", "tier_required:pro", "allowed"],
}

_resource_want := {
	"treasure-map read": ["unauthenticated:plus", "tier_required:plus", "allowed", "allowed"],
	"video list": ["allowed", "allowed", "allowed", "allowed"],
	"video read": ["unauthenticated:free", "allowed", "allowed", "allowed"],
	"video comment": ["unauthenticated:free", "allowed", "allowed", "allowed"],
	"video download": ["unauthenticated:pro", "tier_required:pro", "tier_required:pro", "allowed"],
	"playlist read": ["unauthenticated:free", "allowed", "allowed", "allowed"],
	"playlist create": ["unauthenticated:plus", "tier_required:plus", "allowed", "allowed"],
	"playlist delete": ["unauthenticated:plus", "tier_required:plus", "allowed", "allowed"],
	"report read": ["unauthenticated:pro", "tier_required:pro", "tier_required:pro", "allowed"],
	"report export": ["unauthenticated:pro", "tier_required:pro", "tier_required:pro", "allowed"],
}

_feature_want := {
	"comments": ["unauthenticated:free", "allowed", "allowed", "allowed"],
	"hd": ["unauthenticated:plus", "tier_required:plus", "allowed", "allowed"],
	"ad_free": ["unauthenticated:plus", "tier_required:plus", "allowed", "allowed"],
	"4k": ["unauthenticated:pro", "tier_required:pro", "tier_required:pro", "allowed"],
	"offline": ["unauthenticated:pro", "tier_required:pro", "tier_required:pro", "allowed"],
	"early_access": ["unauthenticated:pro", "tier_required:pro", "tier_required:pro", "allowed"],
}

# A subject of the given tier, as the service builds it from a token whose
# tier claim says so. Anonymous has no token and so no claims.
_subject(t) := {"authenticated": false} if {
	t == "anonymous"
} else := {
	"authenticated": true,
	"iss": "https://example.okta.com/oauth2/default",
	"sub": sprintf("%s@example.com", [t]),
	"claims": {"tier": t},
}

_cell(d) := "allowed" if {
	d.allow == true
	d.reason == "allowed"
	d.required_tier == null
} else := sprintf("%s:%s", [d.reason, d.required_tier]) if {
	d.allow == false
} else := sprintf("inconsistent %v", [d])

_row(check) := [_cell(d) |
	some t in _tiers
	d := authz.decision with input as {"subject": _subject(t), "check": check}
	d.tier == t
]

_api_check(key) := {"kind": "api", "method": parts[0], "template": parts[1]} if {
	parts := split(key, " ")
}

test_every_api_route_for_every_tier if {
	got := {key: _row(_api_check(key)) | some key, _ in _api_want}
	_assert_equal(got, _api_want)
}

test_every_ui_route_for_every_tier if {
	got := {p: _row({"kind": "ui", "template": p}) | some p, _ in _ui_want}
	_assert_equal(got, _ui_want)
}

test_every_resource_for_every_tier if {
	got := {key: _row({"kind": "resource", "type": parts[0], "action": parts[1]}) |
		some key, _ in _resource_want
		parts := split(key, " ")
	}
	_assert_equal(got, _resource_want)
}

test_every_feature_for_every_tier if {
	got := {name: _row({"kind": "feature", "name": name}) | some name, _ in _feature_want}
	_assert_equal(got, _feature_want)
}

# The tables above cover everything the data declares, so a route added to
# data.json without an expectation here fails the suite.
test_tables_cover_the_whole_policy if {
	_assert_equal({k | some k, _ in _api_want}, {sprintf("%s %s", [m, t]) |
		some m, routes in data.tierguard.api_routes
		some t, _ in routes
	})
	_assert_equal({k | some k, _ in _ui_want}, {k | some k, _ in data.tierguard.ui_routes})
	_assert_equal({k | some k, _ in _feature_want}, {k | some k, _ in data.tierguard.features})
	_assert_equal({k | some k, _ in _resource_want}, {sprintf("%s %s", [t, a]) |
		some t, actions in data.tierguard.resources
		some a, _ in actions
	})
}

# The story's bug, made impossible: for every tier, a page that opens has
# every API route it calls allowed for the same subject.
test_no_page_opens_whose_api_calls_are_denied if {
	every t in _tiers {
		every template, route in data.tierguard.ui_routes {
			_page_consistent(t, template, route)
		}
	}
}

_page_consistent(t, template, _) if {
	ui := authz.decision with input as {"subject": _subject(t), "check": {"kind": "ui", "template": template}}
	ui.allow == false
}

_page_consistent(t, template, route) if {
	ui := authz.decision with input as {"subject": _subject(t), "check": {"kind": "ui", "template": template}}
	ui.allow == true
	every requirement in route.requires {
		api := authz.decision with input as {"subject": _subject(t), "check": _api_check(requirement)}
		api.allow == true
	}
}

# And the converse, so the guard never locks a page the API would serve: a
# page opens exactly when its own tier is met and every call is allowed.
test_pages_open_when_their_tier_and_calls_allow if {
	every i, t in _tiers {
		every template, route in data.tierguard.ui_routes {
			ui := authz.decision with input as {"subject": _subject(t), "check": {"kind": "ui", "template": template}}
			calls := [api.allow |
				some requirement in route.requires
				api := authz.decision with input as {"subject": _subject(t), "check": _api_check(requirement)}
			]
			ui.allow == _should_open(i, route.tier, calls)
		}
	}
}

_should_open(i, page_tier, calls) if {
	some j, name in _tiers
	name == page_tier
	i >= j
	every allowed in calls {
		allowed == true
	}
} else := false

test_the_story if {
	map := {"kind": "api", "method": "GET", "template": "/api/treasure-map"}
	page := {"kind": "ui", "template": "/protected-content"}
	anonymous := authz.decision with input as {"subject": {"authenticated": false}, "check": map}
	free := authz.decision with input as {"subject": _subject("free"), "check": page}
	plus := authz.decision with input as {"subject": _subject("plus"), "check": page}
	_assert_equal(anonymous, {"allow": false, "reason": "unauthenticated", "required_tier": "plus", "tier": "anonymous"})
	_assert_equal(free, {"allow": false, "reason": "tier_required", "required_tier": "plus", "tier": "free"})
	_assert_equal(plus, {"allow": true, "reason": "allowed", "required_tier": null, "tier": "plus"})
}

# Claims to tier. Each case is a subject and the tier it must get.
_claim_cases := [
	{"note": "no claims at all", "subject": {"authenticated": true, "sub": "u"}, "want": "free"},
	{"note": "tier claim plus", "subject": _claims({"tier": "plus"}), "want": "plus"},
	{"note": "tier claim pro", "subject": _claims({"tier": "pro"}), "want": "pro"},
	{"note": "tier claim in another case", "subject": _claims({"tier": "Pro"}), "want": "free"},
	{"note": "tier claim upper case", "subject": _claims({"tier": "PLUS"}), "want": "free"},
	{"note": "tier claim with a space", "subject": _claims({"tier": " pro"}), "want": "free"},
	{"note": "tier claim unknown name", "subject": _claims({"tier": "gold"}), "want": "free"},
	{"note": "tier claim a number", "subject": _claims({"tier": 3}), "want": "free"},
	{"note": "tier claim an array", "subject": _claims({"tier": ["pro"]}), "want": "free"},
	{"note": "tier claim an object", "subject": _claims({"tier": {"name": "pro"}}), "want": "free"},
	{"note": "tier claim null", "subject": _claims({"tier": null}), "want": "free"},
	{"note": "tier claim a boolean", "subject": _claims({"tier": true}), "want": "free"},
	{"note": "tier claim empty", "subject": _claims({"tier": ""}), "want": "free"},
	{"note": "tier claim anonymous", "subject": _claims({"tier": "anonymous"}), "want": "anonymous"},
	{"note": "group tier-pro", "subject": _groups(["Everyone", "tier-pro"]), "want": "pro"},
	{"note": "group tier-plus", "subject": _groups(["tier-plus"]), "want": "plus"},
	{"note": "group with an unknown tier", "subject": _groups(["tier-gold"]), "want": "free"},
	{"note": "group tier in another case", "subject": _groups(["tier-Pro"]), "want": "free"},
	{"note": "group prefix in upper case", "subject": _groups(["TIER-pro"]), "want": "pro"},
	{"note": "two tier groups, lowest wins", "subject": _groups(["tier-pro", "tier-plus"]), "want": "plus"},
	{"note": "no tier groups", "subject": _groups(["Everyone", "admins"]), "want": "free"},
	{"note": "non-string groups are ignored", "subject": _groups([7, null, {"tier": "pro"}, "tier-plus"]), "want": "plus"},
	{"note": "claim above group, lowest wins", "subject": object.union(_groups(["tier-plus"]), _claims({"tier": "pro"})), "want": "plus"},
	{"note": "group above claim, lowest wins", "subject": object.union(_groups(["tier-pro"]), _claims({"tier": "plus"})), "want": "plus"},
	{"note": "odd group beside a pro claim", "subject": object.union(_groups(["TIER-gold"]), _claims({"tier": "pro"})), "want": "free"},
	{"note": "unauthenticated ignores claims", "subject": {"authenticated": false, "claims": {"tier": "pro"}, "groups": ["tier-pro"]}, "want": "anonymous"},
	{"note": "authenticated must be true, not truthy", "subject": {"authenticated": "yes", "claims": {"tier": "pro"}}, "want": "anonymous"},
]

_claims(claims) := {"authenticated": true, "iss": "https://issuer.test", "sub": "someone", "claims": claims}

_groups(groups) := {"authenticated": true, "iss": "https://issuer.test", "sub": "someone", "groups": groups}

test_claims_become_a_tier if {
	got := {c.note: t |
		some c in _claim_cases
		t := authz.tier with input as {"subject": c.subject}
	}
	want := {c.note: c.want | some c in _claim_cases}
	_assert_equal(got, want)
}

_subjects := {
	"alice@example.com": {"tier": "pro"},
	"bob@example.com": {"tier": "free"},
	"carol@example.com": {"tier": "platinum"},
	"dave@example.com": {"tier": "plus", "iss": "https://example.okta.com/oauth2/default"},
}

_entry_cases := [
	{"note": "entry raises a free token", "sub": "alice@example.com", "claims": {}, "want": "pro"},
	{"note": "entry lowers a pro claim", "sub": "bob@example.com", "claims": {"tier": "pro"}, "want": "free"},
	{"note": "entry with an unknown tier is free", "sub": "carol@example.com", "claims": {"tier": "pro"}, "want": "free"},
	{"note": "entry pinned to our issuer", "sub": "dave@example.com", "claims": {}, "want": "plus"},
	{"note": "no entry, claim decides", "sub": "erin@example.com", "claims": {"tier": "plus"}, "want": "plus"},
]

test_per_subject_entries_decide if {
	got := {c.note: t |
		some c in _entry_cases
		subject := {"authenticated": true, "iss": "https://example.okta.com/oauth2/default", "sub": c.sub, "claims": c.claims}
		t := authz.tier with input as {"subject": subject} with data.tierguard.subjects as _subjects
	}
	want := {c.note: c.want | some c in _entry_cases}
	_assert_equal(got, want)
}

test_entry_pinned_to_another_issuer_does_not_apply if {
	subject := {"authenticated": true, "iss": "https://other.example.com", "sub": "dave@example.com", "claims": {"tier": "pro"}}
	t := authz.tier with input as {"subject": subject} with data.tierguard.subjects as _subjects
	t == "pro"
}

test_anonymous_is_never_given_an_entry if {
	t := authz.tier with input as {"subject": {"authenticated": false, "sub": "alice@example.com"}}
		with data.tierguard.subjects as _subjects
	t == "anonymous"
}

test_tier_anonymous_claim_is_tier_required_not_unauthenticated if {
	d := authz.decision with input as {
		"subject": _claims({"tier": "anonymous"}),
		"check": {"kind": "api", "method": "GET", "template": "/api/profile"},
	}
	_assert_equal(d, {"allow": false, "reason": "tier_required", "required_tier": "free", "tier": "anonymous"})
}

_unknown_cases := [
	{"note": "unknown api template", "check": {"kind": "api", "method": "GET", "template": "/api/nope"}, "want": "route_unknown"},
	{"note": "known template, unknown method", "check": {"kind": "api", "method": "PATCH", "template": "/api/profile"}, "want": "route_unknown"},
	{"note": "method in lower case", "check": {"kind": "api", "method": "get", "template": "/api/news"}, "want": "route_unknown"},
	{"note": "concrete path, not a template", "check": {"kind": "api", "method": "GET", "template": "/api/videos/42"}, "want": "route_unknown"},
	{"note": "unknown ui route", "check": {"kind": "ui", "template": "/nowhere"}, "want": "route_unknown"},
	{"note": "api template asked as ui", "check": {"kind": "ui", "template": "/api/news"}, "want": "route_unknown"},
	{"note": "unknown resource type", "check": {"kind": "resource", "type": "gold", "action": "read"}, "want": "resource_unknown"},
	{"note": "unknown resource action", "check": {"kind": "resource", "type": "video", "action": "delete"}, "want": "resource_unknown"},
	{"note": "unknown feature", "check": {"kind": "feature", "name": "8k"}, "want": "feature_unknown"},
	{"note": "unknown kind", "check": {"kind": "teleport", "name": "hd"}, "want": "check_invalid"},
	{"note": "no kind", "check": {"name": "hd"}, "want": "check_invalid"},
]

test_unknown_checks_deny_with_their_reason if {
	got := {c.note: [d.allow, d.reason, d.required_tier] |
		some c in _unknown_cases
		d := authz.decision with input as {"subject": _subject("pro"), "check": c.check}
	}
	want := {c.note: [false, c.want, null] | some c in _unknown_cases}
	_assert_equal(got, want)
}

test_decision_is_undefined_without_a_check if {
	not authz.decision with input as {"subject": _subject("pro")}
}

# A broken policy (a requirement that is not a tier, a page that calls an
# undeclared route) denies everyone with policy_error.
test_broken_data_is_a_policy_error if {
	broken_routes := {"GET": {"/api/gold": {"tier": "gold"}, "/api/ok": {"tier": "anonymous"}}}
	broken_pages := {
		"/gold": {"tier": "anonymous", "requires": ["GET /api/gold"]},
		"/typo": {"tier": "anonymous", "requires": ["GET /api/typo"]},
		"/bad-requirement": {"tier": "anonymous", "requires": ["GET"]},
		"/bad-tier": {"tier": "Free", "requires": ["GET /api/ok"]},
	}
	checks := [
		{"kind": "api", "method": "GET", "template": "/api/gold"},
		{"kind": "ui", "template": "/gold"},
		{"kind": "ui", "template": "/typo"},
		{"kind": "ui", "template": "/bad-requirement"},
		{"kind": "ui", "template": "/bad-tier"},
		{"kind": "feature", "name": "shiny"},
	]
	got := authz.decisions with input as {"subject": _subject("pro"), "checks": checks}
		with data.tierguard.api_routes as broken_routes
		with data.tierguard.ui_routes as broken_pages
		with data.tierguard.features as {"shiny": 4}
	every d in got {
		d.allow == false
		d.reason == "policy_error"
		d.required_tier == null
	}
	count(got) == count(checks)
}

test_a_batch_answers_in_request_order if {
	checks := [
		{"kind": "feature", "name": "4k"},
		{"kind": "ui", "template": "/protected-content"},
		{"kind": "api", "method": "GET", "template": "/api/news"},
		{"kind": "feature", "name": "nope"},
	]
	decisions := authz.decisions with input as {"subject": _subject("plus"), "checks": checks}
	got := [[d.allow, d.reason, d.required_tier] | some d in decisions]
	_assert_equal(got, [
		[false, "tier_required", "pro"],
		[true, "allowed", null],
		[true, "allowed", null],
		[false, "feature_unknown", null],
	])
}

test_an_empty_batch_is_empty if {
	authz.decisions with input as {"subject": _subject("plus"), "checks": []} == []
}

# Every tier named anywhere in data is a real tier: a typo would otherwise
# surface only as policy_error at run time.
test_data_names_only_known_tiers if {
	named := (({r.tier | some routes in data.tierguard.api_routes; some r in routes} | {r.tier | some r in data.tierguard.ui_routes}) | {t | some actions in data.tierguard.resources; some t in actions}) | {t | some t in data.tierguard.features}
	every t in named {
		t in data.tierguard.tiers
	}
}

_assert_equal(got, want) if {
	got == want
} else := false if {
	print("got: ", got)
	print("want:", want)
}
