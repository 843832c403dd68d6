package decision

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long WatchDir waits after the last change before
// it reloads. Editors and deploy tools write a file in several steps
// (truncate, write, rename, chmod); reloading at the first event would
// load a half-written policy.
const DefaultDebounce = 200 * time.Millisecond

// WatchDir keeps e serving the policy tree in dir: on every change under
// dir, including in subdirectories created later, it waits for the writes
// to settle, reloads the tree with LoadDir and hands it to e.Update, which
// runs the tree's Rego tests and compiles it strictly before swapping.
//
// A tree that fails to load, compile or pass its tests never replaces the
// running revision: the failure is logged, counted and kept in
// e.Status() until a later change succeeds. A tree whose content hash
// equals the serving revision, or the last refused one, is not revalidated,
// so editor swap files and touch(1) cost a parse, not a test run.
//
// WatchDir reconciles once after its watches are in place, so a change made
// between the caller's first LoadDir and this call is not lost. It returns
// nil when ctx ends, or an error if dir cannot be watched at all. Events
// on dot-directories (.git) are not watched; Kubernetes ConfigMap volumes
// work because their swap renames "..data" in dir itself.
func WatchDir(ctx context.Context, e *Engine, dir string, logger *slog.Logger) error {
	return watchDir(ctx, e, dir, logger, DefaultDebounce)
}

func watchDir(ctx context.Context, e *Engine, dir string, logger *slog.Logger,
	debounce time.Duration) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("decision: watch %s: %w", dir, err)
	}
	defer w.Close()

	if err := addTree(w, dir, true); err != nil {
		return fmt.Errorf("decision: watch %s: %w", dir, err)
	}
	logger.LogAttrs(ctx, slog.LevelInfo, "watching policy directory", slog.String("dir", dir))

	d := &dirWatch{engine: e, dir: dir}
	d.reload(ctx)

	timer := time.NewTimer(debounce)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil

		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("decision: policy watcher closed")
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			if ev.Has(fsnotify.Create) {
				// A new subdirectory needs its own watch; files written into
				// it before the watch existed are caught by the reload.
				if err := addTree(w, ev.Name, false); err != nil {
					logger.LogAttrs(ctx, slog.LevelWarn, "cannot watch new policy path",
						slog.String("path", ev.Name), slog.Any("error", err))
				}
			}
			timer.Reset(debounce)

		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("decision: policy watcher closed")
			}
			// An overflowed inotify queue loses events: reload to be sure.
			logger.LogAttrs(ctx, slog.LevelWarn, "policy watcher error", slog.Any("error", err))
			timer.Reset(debounce)

		case <-timer.C:
			d.reload(ctx)
		}
	}
}

// addTree watches root and every directory below it, skipping
// dot-directories. Paths that vanish during the walk are ignored, and so is
// a missing root unless mustExist: editors create and delete temporary
// files faster than a watch can be added.
func addTree(w *fsnotify.Watcher, root string, mustExist bool) error {
	return filepath.WalkDir(root, func(path string, entry fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && (path != root || !mustExist) {
				return nil
			}
			return err
		}
		if !entry.IsDir() {
			return nil
		}
		if path != root && strings.HasPrefix(entry.Name(), ".") {
			return filepath.SkipDir
		}
		return w.Add(path)
	})
}

// dirWatch remembers the last refusal, so a broken tree is counted once
// however many unrelated events arrive before it is fixed.
type dirWatch struct {
	engine *Engine
	dir    string
	failed string // revision or load error of the last refused tree; "" if none
}

func (d *dirWatch) reload(ctx context.Context) {
	p, err := LoadDir(d.dir)
	if err != nil {
		key := "load: " + err.Error()
		if key != d.failed {
			d.engine.refuse(ctx, d.dir, "", err)
		}
		d.failed = key
		return
	}

	// After a refusal, even the serving revision is revalidated: the
	// update that succeeds clears the error that operators see.
	if p.Revision == d.failed || (d.failed == "" && p.Revision == d.engine.Current().ID) {
		return
	}
	if err := d.engine.Update(ctx, d.dir, p); err != nil {
		d.failed = p.Revision
		return
	}
	d.failed = ""
}
