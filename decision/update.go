package decision

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// UpdateStatus reports the outcome of the most recent policy updates, for
// readiness details and metrics.
type UpdateStatus struct {
	Revision      string    `json:"revision"`
	Source        string    `json:"source"`
	LoadedAt      time.Time `json:"loaded_at"`
	Failures      uint64    `json:"failures"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorAt   time.Time `json:"last_error_at,omitzero"`
	LastErrorFrom string    `json:"last_error_from,omitempty"`
}

type updates struct {
	mu     sync.Mutex
	status UpdateStatus
}

// Update validates p and makes it current: it must compile in strict mode
// and pass its own tests first. On any failure the running revision stays,
// and the failure is counted, logged and kept for Status. Source names
// where p came from ("embedded", a directory, a bundle URL) for operators.
func (e *Engine) Update(ctx context.Context, source string, p *Policy) error {
	err := p.Test(ctx)
	var r *Revision
	if err == nil {
		r, err = e.Prepare(ctx, p)
	}

	e.updates.mu.Lock()
	defer e.updates.mu.Unlock()
	st := &e.updates.status
	if err != nil {
		st.Failures++
		st.LastError = err.Error()
		st.LastErrorAt = time.Now().UTC()
		st.LastErrorFrom = source
		e.logger.LogAttrs(ctx, slog.LevelError, "policy update refused",
			slog.String("source", source), slog.String("candidate", p.Revision),
			slog.String("serving", e.Current().ID), slog.Any("error", err))
		return err
	}

	previous := e.Current().ID
	e.Swap(r)
	st.Revision, st.Source, st.LoadedAt = r.ID, source, time.Now().UTC()
	st.LastError, st.LastErrorAt, st.LastErrorFrom = "", time.Time{}, ""
	e.logger.LogAttrs(ctx, slog.LevelInfo, "policy updated",
		slog.String("source", source), slog.String("revision", r.ID), slog.String("previous", previous))
	return nil
}

// Status reports the current revision and the last refused update, if
// the latest attempt failed.
func (e *Engine) Status() UpdateStatus {
	e.updates.mu.Lock()
	defer e.updates.mu.Unlock()
	st := e.updates.status
	st.Revision = e.Current().ID
	return st
}
