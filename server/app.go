package server

import (
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/labstack/echo/v4"
)

// serveApp serves a built single-page app from cfg.App. Paths with a file
// get the file; any other GET outside the service's own prefixes gets
// index.html, so the app's router can take over (deep links work).
func (s *Server) serveApp(e *echo.Echo) {
	files := http.FileServerFS(s.cfg.App)
	e.GET("/*", func(c echo.Context) error {
		p := c.Request().URL.Path
		for _, prefix := range []string{"/api/", "/authz/", "/access/", "/dev/", "/health/", "/.well-known/"} {
			if strings.HasPrefix(p, prefix) {
				return echo.ErrNotFound
			}
		}
		name := strings.TrimPrefix(path.Clean(p), "/")
		if name == "" {
			name = "index.html"
		}
		if st, err := fs.Stat(s.cfg.App, name); err != nil || st.IsDir() {
			c.Request().URL.Path = "/"
			c.Response().Header().Set(echo.HeaderCacheControl, "no-cache")
		}
		files.ServeHTTP(c.Response(), c.Request())
		return nil
	})
}
