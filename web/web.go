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
	// "date" and "isotime" are bound to the zone by TemplatesIn.
	"date":    func(v any) string { return When(timeOf(v), time.UTC) },
	"isotime": func(v any) string { return "" },
	// {{ref .ID}} is a message's short reference (Ref).
	"ref": Ref,
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
// and uses the shared "layout" blocks. Times show in UTC.
func Templates() *template.Template { return TemplatesIn(time.UTC) }

// TemplatesIn is Templates with times ("date", "isotime") in loc, the
// organisation's time zone (org.time_zone).
func TemplatesIn(loc *time.Location) *template.Template {
	fm := template.FuncMap{}
	for k, f := range funcs {
		fm[k] = f
	}
	fm["date"] = func(v any) string { return When(timeOf(v), loc) }
	// {{isotime .T}} is the machine-readable form for <time datetime>.
	fm["isotime"] = func(v any) string {
		t := timeOf(v)
		if t.IsZero() {
			return ""
		}
		return t.In(loc).Format(time.RFC3339)
	}
	return template.Must(template.New("").Funcs(fm).ParseFS(templateFS, "templates/*.html"))
}

func timeOf(v any) time.Time {
	switch x := v.(type) {
	case time.Time:
		return x
	case *time.Time:
		if x != nil {
			return *x
		}
	}
	return time.Time{}
}
