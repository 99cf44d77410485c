package portal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"

	"github.com/phigate/phigate/config"
)

// Limits bound request bodies; each is a byte count, zero picks the
// configuration's default ([portal] in docs/configuration.md).
type Limits struct {
	Body   int64 // every route not named below
	Reply  int64 // the secure reply, attachments included
	Upload int64 // routes that carry an OpenPGP key or a policy document
}

var defaults = config.Default().Portal

// maxParts bounds the parts of one multipart body, so that many tiny parts
// cannot cost more than their bytes.
const maxParts = 100

// bodyClass names a route's body bound; multipart says whether its page
// form may be multipart/form-data (file uploads).
type bodyClass struct {
	limit     func(Limits) int64
	multipart bool
}

var (
	smallBody  = bodyClass{limit: func(l Limits) int64 { return orDefault(l.Body, defaults.MaxBodyBytes) }}
	replyBody  = bodyClass{limit: func(l Limits) int64 { return orDefault(l.Reply, defaults.MaxReplyBodyBytes) }, multipart: true}
	uploadBody = bodyClass{limit: func(l Limits) int64 { return orDefault(l.Upload, defaults.MaxUploadBytes) }}
	// escrowBody is an upload whose page form sends the key as a file.
	escrowBody = bodyClass{limit: uploadBody.limit, multipart: true}
)

func orDefault(n, def int64) int64 {
	if n > 0 {
		return n
	}
	return def
}

// upload is one file of a multipart form, held in memory: request bodies
// never reach the disk in plaintext (net/http's ParseMultipartForm would
// spill large files to temporary files, and leave them behind when the
// handler has a copy of the request).
type upload struct {
	Field, Filename, ContentType string
	Data                         []byte
}

type uploadsKey struct{}

// uploads returns the files a multipart form sent in field.
func uploads(r *http.Request, field string) []upload {
	all, _ := r.Context().Value(uploadsKey{}).([]upload)
	var out []upload
	for _, u := range all {
		if u.Field == field {
			out = append(out, u)
		}
	}
	return out
}

// bounded wraps a route so that its body is bounded before anything reads
// it and is of a type the route accepts: JSON for the API, a url-encoded
// form for pages (or multipart/form-data where the class allows it). Page
// forms are parsed here, so no handler can reach net/http's disk-spilling
// multipart parser through FormValue.
func (s *Server) bounded(class bodyClass, h handler) handler {
	return func(w http.ResponseWriter, r *http.Request, v *viewer) {
		limit := class.limit(s.Limits)
		if r.ContentLength > limit {
			s.tooLarge(w, r, limit)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		// Non-nil, so that FormValue never reaches ParseMultipartForm's
		// parser (which spills to temporary files).
		r.MultipartForm = &multipart.Form{}
		if r.ContentLength == 0 {
			// No body: nothing to check; ParseForm reads only the query.
			_ = r.ParseForm()
			h(w, r, v)
			return
		}
		mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		var err error
		switch {
		case isAPI(r) && mt == "application/json":
			// Decoded by the handler, within the bound.
		case !isAPI(r) && mt == "application/x-www-form-urlencoded":
			err = r.ParseForm()
		case !isAPI(r) && mt == "multipart/form-data" && class.multipart:
			r, err = readMultipart(r, params["boundary"])
		default:
			s.unsupported(w, r, class.multipart)
			return
		}
		if err != nil {
			s.badBody(w, r, err, limit)
			return
		}
		h(w, r, v)
	}
}

// readMultipart reads a multipart form into memory (the body is already
// bounded) and returns the request with its values in r.Form/r.PostForm
// and its files in the context (see uploads).
func readMultipart(r *http.Request, boundary string) (*http.Request, error) {
	if boundary == "" {
		return r, http.ErrMissingBoundary
	}
	mr := multipart.NewReader(r.Body, boundary)
	vals := url.Values{}
	var files []upload
	for n := 0; ; n++ {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return r, err
		}
		if n >= maxParts {
			return r, fmt.Errorf("more than %d parts", maxParts)
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return r, err
		}
		if p.FileName() == "" {
			vals.Add(p.FormName(), string(data))
			continue
		}
		files = append(files, upload{Field: p.FormName(), Filename: p.FileName(),
			ContentType: p.Header.Get("Content-Type"), Data: data})
	}
	if err := r.ParseForm(); err != nil { // the query string
		return r, err
	}
	r.PostForm = vals
	for k, vs := range vals {
		r.Form[k] = append(r.Form[k], vs...)
	}
	r.MultipartForm = &multipart.Form{Value: vals}
	return r.WithContext(context.WithValue(r.Context(), uploadsKey{}, files)), nil
}

// badBody answers a body that could not be read: 413 past the bound, 400
// for a malformed one.
func (s *Server) badBody(w http.ResponseWriter, r *http.Request, err error, limit int64) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		s.tooLarge(w, r, limit)
		return
	}
	if isAPI(r) {
		writeJSONError(w, http.StatusBadRequest, "bad_request", "the request body could not be read")
		return
	}
	d := s.data("Request not understood")
	d.Error = "What your browser sent could not be read. Go back and try again."
	s.render(w, r, http.StatusBadRequest, "error.html", d)
}

// tooLarge answers 413. An HTTP/1 connection is closed after it, since
// what the client still sends is never read; HTTP/2 resets just the stream.
func (s *Server) tooLarge(w http.ResponseWriter, r *http.Request, limit int64) {
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	if isAPI(r) {
		jsonTooLarge(w, limit)
		return
	}
	d := s.data("Too large")
	d.Error = fmt.Sprintf("What you sent is larger than this page accepts (at most %s). Go back and send less: fewer or smaller attachments, or a shorter text.", humanBytes(limit))
	s.render(w, r, http.StatusRequestEntityTooLarge, "error.html", d)
}

func jsonTooLarge(w http.ResponseWriter, limit int64) {
	writeJSONError(w, http.StatusRequestEntityTooLarge, "too_large",
		fmt.Sprintf("the request body is larger than this call accepts (%d bytes)", limit))
}

// unsupported answers 415: the API takes JSON, pages take their form.
func (s *Server) unsupported(w http.ResponseWriter, r *http.Request, multipart bool) {
	if isAPI(r) {
		writeJSONError(w, http.StatusUnsupportedMediaType, "bad_request", "send Content-Type: application/json")
		return
	}
	want := "application/x-www-form-urlencoded"
	if multipart {
		want += " or multipart/form-data"
	}
	d := s.data("Not understood")
	d.Error = "This page accepts only its own form (" + want + ")."
	s.render(w, r, http.StatusUnsupportedMediaType, "error.html", d)
}

// humanBytes writes n as KB or MB for people.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
