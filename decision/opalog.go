package decision

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/open-policy-agent/opa/v1/logging"
)

// opaLogger lets OPA's downloader and REST client log through the
// service's slog logger, at the levels it chose. OPA's messages are
// printf-style sentences; they arrive as the message, their fields as
// attributes.
type opaLogger struct{ l *slog.Logger }

func (o opaLogger) log(level slog.Level, format string, a []any) {
	if !o.l.Enabled(context.Background(), level) {
		return
	}
	o.l.Log(context.Background(), level, "opa: "+fmt.Sprintf(format, a...))
}

func (o opaLogger) Debug(format string, a ...any) { o.log(slog.LevelDebug, format, a) }
func (o opaLogger) Info(format string, a ...any)  { o.log(slog.LevelInfo, format, a) }
func (o opaLogger) Warn(format string, a ...any)  { o.log(slog.LevelWarn, format, a) }
func (o opaLogger) Error(format string, a ...any) { o.log(slog.LevelError, format, a) }

func (o opaLogger) WithFields(fields map[string]any) logging.Logger {
	attrs := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		attrs = append(attrs, k, v)
	}
	return opaLogger{o.l.With(attrs...)}
}

// GetLevel reports the most verbose level slog would print, so OPA skips
// building debug messages nobody reads.
func (o opaLogger) GetLevel() logging.Level {
	ctx := context.Background()
	switch {
	case o.l.Enabled(ctx, slog.LevelDebug):
		return logging.Debug
	case o.l.Enabled(ctx, slog.LevelInfo):
		return logging.Info
	case o.l.Enabled(ctx, slog.LevelWarn):
		return logging.Warn
	}
	return logging.Error
}

// SetLevel is ignored: the slog handler the service configured decides.
func (opaLogger) SetLevel(logging.Level) {}
