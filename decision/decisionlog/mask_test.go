package decisionlog

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestMaskRuleJSON reads rules as OPA's config writes them.
func TestMaskRuleJSON(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		wantOp  string
		wantErr string
	}{
		{"bare pointer erases", `"/input/subject/claims/email"`, OpRemove, ""},
		{"object upsert", `{"op": "upsert", "path": "/input/subject/sub", "value": "*"}`, OpUpsert, ""},
		{"object without op erases", `{"path": "/result/tier"}`, OpRemove, ""},
		{"not rooted at input or result", `"/subject/sub"`, "", "not under /input or /result"},
		{"not a pointer", `"input/subject"`, "", "not a JSON pointer"},
		{"unknown op", `{"op": "hash", "path": "/input/x"}`, "", "neither remove nor upsert"},
		{"neither string nor object", `42`, "", "JSON pointer or {op, path, value}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r MaskRule
			err := json.Unmarshal([]byte(tt.raw), &r)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Unmarshal(%s) = %v, want an error containing %q", tt.raw, err, tt.wantErr)
				}
				return
			}
			if err != nil || r.Op != tt.wantOp {
				t.Fatalf("Unmarshal(%s) = %+v, %v; want op %s", tt.raw, r, err, tt.wantOp)
			}
		})
	}
}

func TestMaskApply(t *testing.T) {
	doc := func() any {
		return map[string]any{
			"subject": map[string]any{
				"sub":    "ada",
				"groups": []any{"tier-plus", "staff", "beta"},
				"claims": map[string]any{"email": "ada@example.com", "a/b": 1, "m~n": 2},
			},
		}
	}
	tests := []struct {
		name, op, path string
		value          any
		wantChanged    bool
		want           any
	}{
		{"erase a member", OpRemove, "/input/subject/claims/email", nil, true,
			map[string]any{"subject": map[string]any{"sub": "ada",
				"groups": []any{"tier-plus", "staff", "beta"},
				"claims": map[string]any{"a/b": 1, "m~n": 2}}}},
		{"erase an array element", OpRemove, "/input/subject/groups/1", nil, true,
			map[string]any{"subject": map[string]any{"sub": "ada",
				"groups": []any{"tier-plus", "beta"},
				"claims": map[string]any{"email": "ada@example.com", "a/b": 1, "m~n": 2}}}},
		{"escaped tokens", OpRemove, "/input/subject/claims/a~1b", nil, true,
			map[string]any{"subject": map[string]any{"sub": "ada",
				"groups": []any{"tier-plus", "staff", "beta"},
				"claims": map[string]any{"email": "ada@example.com", "m~n": 2}}}},
		{"erase what is absent", OpRemove, "/input/subject/claims/phone", nil, false, doc()},
		{"erase past a leaf", OpRemove, "/input/subject/sub/x", nil, false, doc()},
		{"erase the whole input", OpRemove, "/input", nil, true, nil},
		{"upsert a member", OpUpsert, "/input/subject/sub", "****", true,
			map[string]any{"subject": map[string]any{"sub": "****",
				"groups": []any{"tier-plus", "staff", "beta"},
				"claims": map[string]any{"email": "ada@example.com", "a/b": 1, "m~n": 2}}}},
		{"upsert creates objects", OpUpsert, "/input/extra/note", "x", true,
			map[string]any{"extra": map[string]any{"note": "x"}, "subject": map[string]any{"sub": "ada",
				"groups": []any{"tier-plus", "staff", "beta"},
				"claims": map[string]any{"email": "ada@example.com", "a/b": 1, "m~n": 2}}}},
		{"upsert out of an array's range", OpUpsert, "/input/subject/groups/9", "x", false, doc()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseMaskRule(tt.op, tt.path, tt.value)
			if err != nil {
				t.Fatal(err)
			}
			got := doc()
			if changed := r.apply(&got); changed != tt.wantChanged {
				t.Errorf("%s %s reported changed=%v, want %v", tt.op, tt.path, changed, tt.wantChanged)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s %s (-want +got):\n%s", tt.op, tt.path, diff)
			}
		})
	}
}
