package decisionlog

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Mask operations, as OPA's decision-log mask rules name them.
const (
	OpRemove = "remove"
	OpUpsert = "upsert"
)

// MaskRule hides part of an event before it is written or shipped, as an
// OPA mask rule does: Path is a JSON pointer rooted at /input or /result
// (e.g. /input/subject/claims/email); OpRemove erases what is there,
// OpUpsert puts Value there (e.g. "****"), creating objects on the way.
// Erased and upserted paths are listed in the event's "erased" and
// "masked" fields, so a reader knows the log is incomplete.
//
// In a config file a rule is written as OPA writes it: a bare pointer
// string for a removal, or {"op": "upsert", "path": ..., "value": ...}.
type MaskRule struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`

	root  string   // "input" or "result"
	parts []string // unescaped reference tokens below root
}

// ParseMaskRule checks a rule and prepares it. op "" means OpRemove.
func ParseMaskRule(op, path string, value any) (MaskRule, error) {
	if op == "" {
		op = OpRemove
	}
	if op != OpRemove && op != OpUpsert {
		return MaskRule{}, fmt.Errorf("decisionlog: mask op %q is neither remove nor upsert", op)
	}
	if !strings.HasPrefix(path, "/") {
		return MaskRule{}, fmt.Errorf("decisionlog: mask path %q is not a JSON pointer", path)
	}
	tokens := strings.Split(path[1:], "/")
	for i, t := range tokens {
		tokens[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	if tokens[0] != "input" && tokens[0] != "result" {
		return MaskRule{}, fmt.Errorf("decisionlog: mask path %q is not under /input or /result", path)
	}
	return MaskRule{Op: op, Path: path, Value: value, root: tokens[0], parts: tokens[1:]}, nil
}

// UnmarshalJSON accepts OPA's two spellings of a rule.
func (r *MaskRule) UnmarshalJSON(raw []byte) error {
	var path string
	if err := json.Unmarshal(raw, &path); err == nil {
		parsed, err := ParseMaskRule(OpRemove, path, nil)
		*r = parsed
		return err
	}
	var obj struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return fmt.Errorf("decisionlog: a mask rule is a JSON pointer or {op, path, value}: %w", err)
	}
	parsed, err := ParseMaskRule(obj.Op, obj.Path, obj.Value)
	*r = parsed
	return err
}

// apply masks doc, the generic JSON tree of the event's input or result,
// and reports whether anything changed. doc must be a private copy.
func (r MaskRule) apply(doc *any) bool {
	if len(r.parts) == 0 {
		if r.Op == OpRemove {
			*doc = nil
			return true
		}
		*doc = r.Value
		return true
	}
	if r.Op == OpRemove {
		return remove(doc, r.parts)
	}
	return upsert(*doc, r.parts, r.Value)
}

// remove deletes the member or element that parts names under *node, if
// it exists, writing a shortened array back into its parent.
func remove(node *any, parts []string) bool {
	key, rest := parts[0], parts[1:]
	switch v := (*node).(type) {
	case map[string]any:
		child, ok := v[key]
		if !ok {
			return false
		}
		if len(rest) == 0 {
			delete(v, key)
			return true
		}
		if !remove(&child, rest) {
			return false
		}
		v[key] = child
		return true
	case []any:
		i, err := strconv.Atoi(key)
		if err != nil || i < 0 || i >= len(v) {
			return false
		}
		if len(rest) == 0 {
			*node = append(v[:i:i], v[i+1:]...)
			return true
		}
		return remove(&v[i], rest)
	}
	return false
}

// upsert sets parts to value, creating objects on the way; it gives up
// where the path crosses something that is neither object nor array.
func upsert(node any, parts []string, value any) bool {
	last := len(parts) - 1
	for _, p := range parts[:last] {
		switch v := node.(type) {
		case map[string]any:
			child, ok := v[p]
			if !ok {
				child = map[string]any{}
				v[p] = child
			}
			node = child
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(v) {
				return false
			}
			node = v[i]
		default:
			return false
		}
	}
	switch v := node.(type) {
	case map[string]any:
		v[parts[last]] = value
		return true
	case []any:
		i, err := strconv.Atoi(parts[last])
		if err != nil || i < 0 || i >= len(v) {
			return false
		}
		v[i] = value
		return true
	}
	return false
}

// credentialKeys are object keys that hold credentials in the shapes
// tokens and HTTP requests take. The decision input never carries one by
// contract; if a future change put one there, it is erased before any
// byte is written, and the erasure is listed like a mask's.
var credentialKeys = map[string]bool{
	"authorization": true, "token": true, "access_token": true,
	"id_token": true, "refresh_token": true, "bearer": true, "password": true,
	"client_secret": true,
}

// scrubCredentials erases credentialKeys anywhere under node and returns
// the JSON pointers it erased.
func scrubCredentials(node any, at string, erased []string) []string {
	switch v := node.(type) {
	case map[string]any:
		for k, child := range v {
			p := at + "/" + escapeToken(k)
			if credentialKeys[strings.ToLower(k)] {
				delete(v, k)
				erased = append(erased, p)
				continue
			}
			erased = scrubCredentials(child, p, erased)
		}
	case []any:
		for i, child := range v {
			erased = scrubCredentials(child, at+"/"+strconv.Itoa(i), erased)
		}
	}
	return erased
}

func escapeToken(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
