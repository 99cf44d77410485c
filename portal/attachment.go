package portal

import (
	"mime"
	"net/http"
	"strings"

	"github.com/phigate/phigate/message"
)

// inlineTypes are the attachment types a browser shows by itself without
// running anything the sender wrote: a phone previews them instead of
// asking where to save a file (issue 13.7). Not SVG (it can carry script),
// not HTML, not text (which a browser may sniff into something else).
var inlineTypes = map[string]bool{
	"application/pdf": true,
	"image/png":       true,
	"image/jpeg":      true,
	"image/gif":       true,
	"image/webp":      true,
}

// inlineType is the attachment's media type if it is one of inlineTypes,
// else "".
func inlineType(a message.Attachment) string {
	mt, _, err := mime.ParseMediaType(a.ContentType)
	if err != nil {
		return ""
	}
	if mt = strings.ToLower(mt); inlineTypes[mt] {
		return mt
	}
	return ""
}

// inlineAttachments names, by id, the attachments the message page offers
// to open as well as to download.
func inlineAttachments(atts []message.Attachment) map[string]bool {
	m := map[string]bool{}
	for _, a := range atts {
		if inlineType(a) != "" {
			m[a.ID] = true
		}
	}
	return m
}

// serveAttachment answers with one attachment. A safe type (inlineTypes)
// on the page's plain link is sent as itself, inline; everything else, the
// API's answer and any ?download=1 link are a download of bytes
// (application/octet-stream, as before). Every answer keeps nosniff (from
// securityHeaders) and a CSP that lets nothing load or run; images are also
// sandboxed. A PDF is not: a browser's PDF viewer may refuse to open in a
// sandboxed document, and the viewer is the browser's own.
func serveAttachment(w http.ResponseWriter, r *http.Request, a message.Attachment) {
	h := w.Header()
	typ := inlineType(a)
	if typ == "" || isAPI(r) || r.URL.Query().Get("download") != "" {
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": a.Filename}))
		h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
		w.Write(a.Data)
		return
	}
	h.Set("Content-Type", typ)
	h.Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": a.Filename}))
	if typ == "application/pdf" {
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	} else {
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; sandbox")
	}
	w.Write(a.Data)
}
