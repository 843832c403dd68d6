package decision

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tierguard/tierguard/policies"
)

// copyPolicies writes the embedded policy tree, tests included, into a
// fresh directory and returns its path.
func copyPolicies(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := copyPoliciesTo(dir); err != nil {
		t.Fatalf("copying the embedded policies: %v", err)
	}
	return dir
}

func copyPoliciesTo(dir string) error {
	return fs.WalkDir(policies.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(path))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		raw, err := fs.ReadFile(policies.FS, path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, raw, 0o644)
	})
}

// editFile replaces old with new in the file at path, failing the test if
// old is not there: a fixture edit that silently does nothing would make
// the test pass for the wrong reason.
func editFile(t testing.TB, path, old, new string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), old) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	edited := strings.Replace(string(raw), old, new, 1)
	if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v, still waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tierSubject(tier string) Subject {
	claims := map[string]any{"tier": tier}
	return Subject{Authenticated: true, Subject: tier + "@example.com", Claims: claims}
}

var treasureRead = Check{Kind: KindResource, Type: "treasure-map", Action: "read"}

// The line of authz_test.rego that pins who may read the treasure map,
// before and after it moves up to pro.
const (
	treasureTestPlus = `"treasure-map read": ` +
		`["unauthenticated:plus", "tier_required:plus", "allowed", "allowed"]`
	treasureTestPro = `"treasure-map read": ` +
		`["unauthenticated:pro", "tier_required:pro", "tier_required:pro", "allowed"]`
)

// startWatch runs WatchDir on dir for the length of the test and checks
// that it returns nil once its context ends.
func startWatch(t *testing.T, e *Engine, dir string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- watchDir(ctx, e, dir, testLogger(t), 50*time.Millisecond) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("WatchDir returned %v after its context ended, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("WatchDir did not return within 5s of its context ending")
		}
	})
}

func TestWatchDir(t *testing.T) {
	dir := copyPolicies(t)
	p, err := LoadDir(dir)
	if err != nil {
		t.Fatalf("LoadDir(copy of embedded) = %v", err)
	}
	e, err := NewEngine(context.Background(), p, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	startWatch(t, e, dir)

	plus := Input{Subject: tierSubject("plus"), Check: treasureRead}
	if d := e.Decide(context.Background(), plus); !d.Allow {
		t.Fatalf("before any edit, plus reading the treasure map = %+v, want allow", d)
	}

	// A data change, with the policy test that pins it, as an author
	// commits them: the treasure map moves up to pro.
	first := e.Current().ID
	editFile(t, filepath.Join(dir, "tierguard", "data.json"),
		`"treasure-map": {"read": "plus"}`, `"treasure-map": {"read": "pro"}`)
	editFile(t, filepath.Join(dir, "tierguard", "authz", "authz_test.rego"),
		treasureTestPlus, treasureTestPro)
	eventually(t, 20*time.Second, "the data change to be served", func() bool {
		return e.Current().ID != first && e.Status().LastError == ""
	})
	d := e.Decide(context.Background(), plus)
	if d.Allow || d.Reason != ReasonTierRequired || d.RequiredTier != "pro" {
		t.Fatalf("after the edit, plus reading the treasure map = %+v, want tier_required/pro", d)
	}
	if d.Revision != e.Current().ID {
		t.Errorf("decision revision = %q, want the current %q", d.Revision, e.Current().ID)
	}
	good := e.Current().ID

	broken := []struct {
		name, file, src, stage string
	}{
		{"syntax", "broken.rego", "package tierguard.broken\n\nallow if {\n", "to load"},
		{"strict compile", "broken.rego",
			"package tierguard.broken\n\nunused if {\n\tx := input.check.kind\n}\n", "to compile"},
		{"failing rego test", "broken_test.rego",
			"package tierguard.broken_test\n\ntest_fails if {\n\t1 == 2\n}\n", "to test"},
	}
	for _, tt := range broken {
		t.Run(tt.name, func(t *testing.T) {
			before := e.Status().Failures
			path := filepath.Join(dir, "tierguard", tt.file)
			if err := os.WriteFile(path, []byte(tt.src), 0o644); err != nil {
				t.Fatal(err)
			}
			eventually(t, 20*time.Second, "the broken policy to be refused", func() bool {
				return e.Status().Failures > before
			})
			st := e.Status()
			if st.Revision != good || e.Current().ID != good {
				t.Errorf("serving %q after a broken %s, want %q kept", st.Revision, tt.name, good)
			}
			if !strings.Contains(st.LastError, tt.stage) || st.LastErrorFrom != dir {
				t.Errorf("Status() = %+v, want LastError naming %q from %s", st, tt.stage, dir)
			}
			if d := e.Decide(context.Background(), plus); d.Reason != ReasonTierRequired {
				t.Errorf("while broken, plus reading the treasure map = %+v, want tier_required", d)
			}

			// Fixing it (here: removing the file) revalidates and clears
			// the error operators see.
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			eventually(t, 20*time.Second, "the fixed tree to clear the error", func() bool {
				return e.Status().LastError == ""
			})
			if got := e.Status().Failures; got != before+1 {
				t.Errorf("Failures went from %d to %d, want one more", before, got)
			}
			if e.Current().ID != good {
				t.Errorf("serving %q after the fix, want %q", e.Current().ID, good)
			}
		})
	}

	// A subdirectory created after the watch started is watched too.
	extra := filepath.Join(dir, "tierguard", "extra")
	if err := os.Mkdir(extra, 0o755); err != nil {
		t.Fatal(err)
	}
	src := "package tierguard.extra\n\nversion := 2\n"
	if err := os.WriteFile(filepath.Join(extra, "extra.rego"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "a module in a new subdirectory to be served", func() bool {
		return e.Current().ID != good
	})
	third := e.Current().ID
	src += "\nmore := 3\n"
	if err := os.WriteFile(filepath.Join(extra, "extra.rego"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "an edit inside the new subdirectory to be served", func() bool {
		return e.Current().ID != third
	})
}

func TestWatchDirMissing(t *testing.T) {
	e := embeddedEngine(t)
	missing := filepath.Join(t.TempDir(), "nope")
	err := WatchDir(context.Background(), e, missing, testLogger(t))
	if err == nil {
		t.Fatalf("WatchDir(%s) = nil, want an error for a missing directory", missing)
	}
}

// testLogger logs into the test's output, so a failure shows what the
// engine said. Lines arriving after the test ended are dropped rather
// than panicking the test binary.
func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	w := &testWriter{t: t}
	t.Cleanup(func() { w.done.Store(true) })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct {
	t    testing.TB
	done atomic.Bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}
