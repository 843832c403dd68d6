package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// The story's demo API. Its handlers know nothing of tiers: enforcement
// happens before them, from the policy, and a handler runs only on an
// allow. The data is fixed; the demo keeps no state between requests.

type video struct {
	ID       string `json:"id"`
	Title    string `json:"title"`
	Duration int    `json:"duration_seconds"`
}

var videos = []video{
	{"1", "Reading an old map", 312},
	{"2", "Tides and where they hide things", 845},
	{"3", "Digging without a shovel", 1290},
}

func registerDemoAPI(g *echo.Group) {
	g.GET("/news", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]any{"news": []string{
			"The treasure map is back for plus members.",
			"New: 4K streaming for pro.",
		}})
	})
	g.GET("/plans", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]any{"plans": []map[string]any{
			{"tier": "free", "price": 0, "includes": []string{"videos", "comments", "playlists"}},
			{"tier": "plus", "price": 5, "includes": []string{"the treasure map", "hd", "no ads"}},
			{"tier": "pro", "price": 12, "includes": []string{"4k", "offline", "downloads", "admin"}},
		}})
	})
	g.GET("/treasure-map", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]any{
			"title": "The treasure map",
			"map": []string{
				"Start at the old oak by the harbour.",
				"Walk forty paces north, towards the lighthouse.",
				"Turn east at the split rock; count twelve steps.",
				"X marks the spot: dig under the flat stone.",
			},
		})
	})
	g.GET("/admin", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]any{"users": 1204, "by_tier": map[string]int{
			"free": 980, "plus": 181, "pro": 43,
		}})
	})
	g.GET("/analytics", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]any{"views_last_7_days": []int{310, 290, 402, 388, 351, 420, 398}})
	})

	g.GET("/videos", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]any{"videos": videos})
	})
	g.GET("/videos/:id", func(c echo.Context) error {
		v, ok := findVideo(c.Param("id"))
		if !ok {
			return echo.ErrNotFound
		}
		return c.JSON(http.StatusOK, v)
	})
	g.GET("/videos/:id/comments", func(c echo.Context) error {
		if _, ok := findVideo(c.Param("id")); !ok {
			return echo.ErrNotFound
		}
		return c.JSON(http.StatusOK, map[string]any{"comments": []map[string]string{
			{"author": "marina", "text": "Watched it twice."},
		}})
	})
	g.POST("/videos/:id/comments", func(c echo.Context) error {
		if _, ok := findVideo(c.Param("id")); !ok {
			return echo.ErrNotFound
		}
		var in struct {
			Text string `json:"text"`
		}
		if err := decodeSmall(c, &in); err != nil || strings.TrimSpace(in.Text) == "" {
			return badField("text", "is required")
		}
		return c.JSON(http.StatusCreated, map[string]any{"author": identityOf(c).Subject, "text": in.Text})
	})
	g.GET("/videos/:id/download", func(c echo.Context) error {
		v, ok := findVideo(c.Param("id"))
		if !ok {
			return echo.ErrNotFound
		}
		return c.JSON(http.StatusOK, map[string]any{"id": v.ID, "url": "/downloads/" + v.ID + ".mp4"})
	})

	g.GET("/profile", func(c echo.Context) error {
		id := identityOf(c)
		out := map[string]any{"sub": id.Subject, "issuer": id.Issuer}
		if name, ok := id.Profile["name"].(string); ok {
			out["name"] = name
		}
		return c.JSON(http.StatusOK, out)
	})
	g.PUT("/profile", func(c echo.Context) error {
		var in map[string]any
		if err := decodeSmall(c, &in); err != nil {
			return newError(http.StatusBadRequest, reasonInvalidRequest, "the body is not a JSON object")
		}
		return c.JSON(http.StatusOK, map[string]any{"sub": identityOf(c).Subject, "updated": len(in)})
	})

	g.GET("/playlists", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]any{"playlists": []map[string]any{
			{"id": "p1", "name": "Maps and legends", "videos": []string{"1", "2"}},
		}})
	})
	g.POST("/playlists", func(c echo.Context) error {
		var in struct {
			Name string `json:"name"`
		}
		if err := decodeSmall(c, &in); err != nil || strings.TrimSpace(in.Name) == "" {
			return badField("name", "is required")
		}
		return c.JSON(http.StatusCreated, map[string]any{"id": "p2", "name": in.Name})
	})
	g.DELETE("/playlists/:id", func(c echo.Context) error {
		return c.NoContent(http.StatusNoContent)
	})
}

func findVideo(id string) (video, bool) {
	for _, v := range videos {
		if v.ID == id {
			return v, true
		}
	}
	return video{}, false
}

// decodeSmall reads a JSON body of at most 16 KiB: the demo API has no
// /authz-style body limit of its own.
func decodeSmall(c echo.Context, v any) error {
	return json.NewDecoder(io.LimitReader(c.Request().Body, 16<<10)).Decode(v)
}
