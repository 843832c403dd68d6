package server

import "testing"

func TestScanMembers(t *testing.T) {
	tests := []struct {
		json string
		dup  bool
	}{
		{`{"kind": "ui", "path": "/"}`, false},
		{`{"kind": "ui", "path": "/", "path": "/admin"}`, true},
		{`{"kind": "ui", "p\u0061th": "/", "path": "/admin"}`, true},
		{`{"checks": [{"kind": "ui"}, {"kind": "ui"}]}`, false},
		{`{"checks": [{"kind": "ui", "kind": "api"}]}`, true},
		{`{"a": {"b": 1}, "b": {"a": 2}}`, false},
		{`{"a": "}{\"a\": 1", "b": ["a", "a"]}`, false},
		{`{"a": {"x": 1, "x": 2}}`, true},
		{`[{"a": 1}, {"a": 1}]`, false},
		{`{"a\\": 1, "a\\": 2}`, true},
		{`{"unterminated`, false},
	}
	for _, tt := range tests {
		_, err := scanMembers([]byte(tt.json))
		if (err != nil) != tt.dup {
			t.Errorf("scanMembers(%s) = %v, want duplicate=%v", tt.json, err, tt.dup)
		}
	}
	deep := make([]byte, 0, 100)
	for range 40 {
		deep = append(deep, '[')
	}
	if _, err := scanMembers(deep); err == nil {
		t.Error("40 levels of nesting were accepted")
	}
}

func TestScanMembersNamesTheOuterObject(t *testing.T) {
	got, err := scanMembers([]byte(`{"checks": [{"kind": "ui"}], "x": {"y": 1}}`))
	if err != nil || len(got) != 2 || got[0] != "checks" || got[1] != "x" {
		t.Errorf("scanMembers = %v %v, want [checks x]", got, err)
	}
}
