package server

import "github.com/labstack/echo/v4"

// registerAuthZEN mounts the AuthZEN 1.0 endpoints.
func (s *Server) registerAuthZEN(e *echo.Echo, limit echo.MiddlewareFunc) {}
