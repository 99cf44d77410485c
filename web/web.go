// Package web holds the portal's templates and static assets, embedded in
// the binary so a deployment is one file and no CDN is ever involved.
package web

import (
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Static is the /static/ tree (CSS; small self-hosted scripts later).
func Static() fs.FS {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	return sub
}

var funcs = template.FuncMap{
	// {{count .N "message"}} writes "1 message" / "2 messages".
	"count": func(v any, noun string, plural ...string) (string, error) {
		n, ok := toInt(v)
		if !ok {
			return "", fmt.Errorf("count: %T is not an integer", v)
		}
		return Count(n, noun, plural...), nil
	},
	"date": func(v any) string {
		var t time.Time
		switch x := v.(type) {
		case time.Time:
			t = x
		case *time.Time:
			if x != nil {
				t = *x
			}
		}
		if t.IsZero() {
			return ""
		}
		return t.Local().Format("2 Jan 2006, 15:04")
	},
	"size": func(n int64) string {
		switch {
		case n >= 1<<20:
			return trim(float64(n)/(1<<20)) + " MB"
		case n >= 1<<10:
			return trim(float64(n)/(1<<10)) + " KB"
		}
		return itoa(n) + " bytes"
	},
}

// Templates parses every page; each page template is named after its file
// and uses the shared "layout" blocks.
func Templates() *template.Template {
	return template.Must(template.New("").Funcs(funcs).ParseFS(templateFS, "templates/*.html"))
}
