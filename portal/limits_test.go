package portal

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/phigate/phigate/intake"
	"github.com/phigate/phigate/web"
)

// bodyServer serves each body class behind s.bounded on a real TLS socket,
// under /page/<class> and /api/<class>; the handler echoes what it read.
type bodyServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string // "text=<len>" and "file:<field>:<name>=<len>" per request
}

var testLimits = Limits{Body: 1 << 10, Reply: 16 << 10, Upload: 4 << 10}

func newBodyServer(t *testing.T) *bodyServer { return newBodyServerProto(t, false) }

// newBodyServerProto serves HTTP/2 too when h2 is set.
func newBodyServerProto(t *testing.T, h2 bool) *bodyServer {
	t.Helper()
	s := &Server{Log: slog.New(slog.DiscardHandler), Limits: testLimits, tmpl: web.Templates()}
	bs := &bodyServer{}
	echo := func(w http.ResponseWriter, r *http.Request, _ *viewer) {
		var got []string
		if isAPI(r) {
			var req map[string]string
			if !decodeJSON(w, r, &req) {
				return
			}
			got = append(got, fmt.Sprintf("text=%d", len(req["text"])))
		} else {
			got = append(got, fmt.Sprintf("text=%d", len(r.FormValue("text"))))
			// A handler asking net/http for a file must not make it parse
			// (and spill) the body again.
			if _, _, err := r.FormFile("files"); err == nil {
				got = append(got, "net/http parsed the body again")
			}
			for _, u := range uploads(r, "files") {
				got = append(got, fmt.Sprintf("file:%s:%s=%d", u.Field, u.Filename, len(u.Data)))
			}
		}
		bs.mu.Lock()
		bs.seen = append(bs.seen, strings.Join(got, " "))
		bs.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}
	mux := http.NewServeMux()
	for name, c := range map[string]bodyClass{"small": smallBody, "reply": replyBody, "upload": uploadBody, "escrow": escrowBody} {
		h := s.bounded(c, echo)
		f := func(w http.ResponseWriter, r *http.Request) { h(w, r, nil) }
		mux.HandleFunc("/page/"+name, f)
		mux.HandleFunc("/api/"+name, f)
	}
	bs.Server = httptest.NewUnstartedServer(mux)
	bs.EnableHTTP2 = h2
	bs.StartTLS()
	t.Cleanup(bs.Close)
	return bs
}

func (bs *bodyServer) last() string {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if len(bs.seen) == 0 {
		return ""
	}
	return bs.seen[len(bs.seen)-1]
}

// post sends body; chunked hides its length (the server learns it only by
// reading).
func (bs *bodyServer) post(t *testing.T, path, ct string, body []byte, chunked bool) (int, string) {
	t.Helper()
	var rd io.Reader = bytes.NewReader(body)
	if chunked {
		rd = io.MultiReader(rd) // unknown length: sent chunked
	}
	req, err := http.NewRequest("POST", bs.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	resp, err := bs.Client().Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	if want := map[bool]int{false: 1, true: 2}[bs.EnableHTTP2]; resp.ProtoMajor != want {
		t.Fatalf("POST %s went over HTTP/%d, want HTTP/%d", path, resp.ProtoMajor, want)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// formOf returns a url-encoded form whose encoded size is exactly n.
func formOf(n int) []byte { return []byte("text=" + strings.Repeat("a", n-len("text="))) }

// jsonOf returns a JSON object whose encoded size is exactly n.
func jsonOf(n int) []byte {
	return []byte(`{"text":"` + strings.Repeat("a", n-len(`{"text":""}`)) + `"}`)
}

func TestBodyBoundPerClass(t *testing.T) {
	t.Run("HTTP/1.1", func(t *testing.T) { testBodyBoundPerClass(t, false) })
	t.Run("HTTP/2", func(t *testing.T) { testBodyBoundPerClass(t, true) })
}

func testBodyBoundPerClass(t *testing.T, h2 bool) {
	bs := newBodyServerProto(t, h2)
	for _, c := range []struct {
		class string
		limit int64
	}{{"small", testLimits.Body}, {"reply", testLimits.Reply}, {"upload", testLimits.Upload}, {"escrow", testLimits.Upload}} {
		n := int(c.limit)
		for _, kind := range []struct {
			prefix, ct string
			body       func(int) []byte
			overhead   int // bytes around the text
		}{{"/page/", "application/x-www-form-urlencoded", formOf, len("text=")}, {"/api/", "application/json", jsonOf, len(`{"text":""}`)}} {
			path := kind.prefix + c.class
			if st, b := bs.post(t, path, kind.ct, kind.body(n), false); st != http.StatusNoContent {
				t.Errorf("%s: %d bytes (the bound): status %d: %s", path, n, st, b)
			} else if want := fmt.Sprintf("text=%d", n-kind.overhead); bs.last() != want {
				t.Errorf("%s: handler read %q, want %q", path, bs.last(), want)
			}
			for _, chunked := range []bool{false, true} {
				st, b := bs.post(t, path, kind.ct, kind.body(n+1), chunked)
				if st != http.StatusRequestEntityTooLarge {
					t.Errorf("%s: %d bytes (chunked %v): status %d, want 413", path, n+1, chunked, st)
				}
				if kind.prefix == "/api/" && !strings.Contains(b, `"too_large"`) {
					t.Errorf("%s: 413 body is not the JSON error: %s", path, b)
				}
				if kind.prefix == "/page/" && !strings.Contains(b, "larger than this page accepts") {
					t.Errorf("%s: 413 page does not say why: %s", path, b)
				}
			}
		}
	}
}

func multipartBody(t *testing.T, fields map[string]string, files map[string][]byte) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	for name, data := range files {
		fw, err := mw.CreateFormFile("files", name)
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(data)
	}
	mw.Close()
	return b.Bytes(), mw.FormDataContentType()
}

func TestContentTypeRefused(t *testing.T) {
	bs := newBodyServer(t)
	mp, mpType := multipartBody(t, map[string]string{"text": "hi"}, nil)
	for _, c := range []struct {
		path, ct string
		body     []byte
	}{
		{"/page/small", "text/plain", []byte("text=hi")},
		{"/page/small", "application/json", jsonOf(20)},
		{"/page/small", mpType, mp},  // multipart only where a route takes files
		{"/page/upload", mpType, mp}, // key uploads are pasted text
		{"/page/reply", "text/xml", []byte("<a/>")},
		{"/api/small", "application/x-www-form-urlencoded", []byte("text=hi")},
		{"/api/reply", mpType, mp},
		{"/api/small", "", []byte(`{"text":"hi"}`)},
	} {
		if st, b := bs.post(t, c.path, c.ct, c.body, false); st != http.StatusUnsupportedMediaType {
			t.Errorf("%s with %q: status %d, want 415: %s", c.path, c.ct, st, b)
		}
	}
}

// TestMultipartStaysInMemory: multipart forms are read into memory within
// the route's bound; no request, accepted or refused, leaves a file in the
// temporary directory (net/http's ParseMultipartForm would, for large
// files, and never removes them for a handler's copy of the request).
func TestMultipartStaysInMemory(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	if os.TempDir() != tmp {
		t.Fatalf("os.TempDir() = %s, want %s", os.TempDir(), tmp)
	}
	bs := newBodyServer(t)
	canary := bytes.Repeat([]byte("CANARY-ATTACHMENT "), 300) // 5400 bytes

	ok, okType := multipartBody(t, map[string]string{"text": "hello"}, map[string][]byte{"scan.pdf": canary})
	if st, b := bs.post(t, "/page/reply", okType, ok, false); st != http.StatusNoContent {
		t.Fatalf("multipart reply within the bound: %d: %s", st, b)
	}
	if got, want := bs.last(), "text=5 file:files:scan.pdf=5400"; got != want {
		t.Errorf("handler read %q, want %q", got, want)
	}
	big, bigType := multipartBody(t, map[string]string{"text": "hello"}, map[string][]byte{"a.pdf": canary, "b.pdf": canary, "c.pdf": canary, "d.pdf": canary})
	for _, chunked := range []bool{false, true} {
		if st, _ := bs.post(t, "/page/reply", bigType, big, chunked); st != http.StatusRequestEntityTooLarge {
			t.Errorf("multipart reply over the bound (chunked %v): %d, want 413", chunked, st)
		}
	}
	// Many tiny parts are refused too.
	fields := map[string]string{}
	for i := range maxParts + 1 {
		fields[fmt.Sprint("f", i)] = "x"
	}
	many, manyType := multipartBody(t, fields, nil)
	if st, _ := bs.post(t, "/page/reply", manyType, many, false); st != http.StatusBadRequest {
		t.Errorf("%d parts: %d, want 400", maxParts+1, st)
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left in the temporary directory: %s", e.Name())
	}
}

// TestDefaultReplyBoundFitsPolicyDefault: with the default settings, a
// reply as large as the policy's default reply_max_bytes fits the portal's
// default reply body bound, both as the API's JSON (base64) and as the
// page's multipart form; otherwise such a reply would get 413 before the
// policy could allow it.
func TestDefaultReplyBoundFitsPolicyDefault(t *testing.T) {
	text := "Thank you."
	att := bytes.Repeat([]byte{0xA5}, intake.DefaultReplyMaxBytes-len(text))
	js, err := json.Marshal(map[string]any{"text": text, "attachments": []map[string]string{{
		"filename": "a-rather-long-file-name-for-a-scanned-document.pdf", "content_type": "application/pdf",
		"data": base64.StdEncoding.EncodeToString(att)}}})
	if err != nil {
		t.Fatal(err)
	}
	form, _ := multipartBody(t, map[string]string{"text": text}, map[string][]byte{"scan.pdf": att})
	bound := defaults.MaxReplyBodyBytes
	for what, n := range map[string]int{"JSON": len(js), "multipart": len(form)} {
		if int64(n) > bound {
			t.Errorf("a %d-byte reply as %s is %d bytes, over the default bound of %d", intake.DefaultReplyMaxBytes, what, n, bound)
		}
	}
}
