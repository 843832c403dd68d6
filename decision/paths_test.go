package decision

import (
	"strings"
	"testing"
)

// The logged paths must name the rules the engine really asks.
func TestLogPathsMatchQueries(t *testing.T) {
	tests := []struct{ path, query string }{
		{DecisionPath, singleQuery},
		{BatchPath, batchQuery},
	}
	for _, tt := range tests {
		if got := "data." + strings.ReplaceAll(tt.path, "/", "."); got != tt.query {
			t.Errorf("path %q names %q, but the engine asks %q", tt.path, got, tt.query)
		}
	}
}
