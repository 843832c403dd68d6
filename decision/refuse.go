package decision

import (
	"context"
	"log/slog"
	"time"
)

// refuse records a candidate policy that never reached Update, because it
// could not even be loaded (a syntax error, an unreadable directory, a
// bundle that failed verification). It is bookkept exactly as Update
// bookkeeps a refused policy, so Status and the failure count tell one
// story whichever stage failed. The running revision is untouched.
func (e *Engine) refuse(ctx context.Context, source, candidate string, err error) {
	e.updates.mu.Lock()
	defer e.updates.mu.Unlock()

	st := &e.updates.status
	st.Failures++
	st.LastError = err.Error()
	st.LastErrorAt = time.Now().UTC()
	st.LastErrorFrom = source
	e.logger.LogAttrs(ctx, slog.LevelError, "policy update refused",
		slog.String("source", source), slog.String("candidate", candidate),
		slog.String("serving", e.Current().ID), slog.Any("error", err))
}
