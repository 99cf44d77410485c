package portal

// Web Push (issue 10.3): the service worker and web app manifest that let
// the portal be added to a phone's home screen, and the account's push
// devices. Subscribing, listing and removing are one operation each
// behind the account page and the JSON API.

import (
	"bytes"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io/fs"
	"net/http"
	"sync"

	"github.com/phigate/phigate/notify"
	"github.com/phigate/phigate/store"
	"github.com/phigate/phigate/web"
)

// pushView is the account page's notifications section.
type pushView struct {
	Key     string          `json:"public_key"` // the VAPID public key (applicationServerKey)
	Devices []notify.Device `json:"devices"`
	Max     int             `json:"max_devices"`
}

// pushRoutes adds the push routes when push is set up.
func (s *Server) pushRoutes(h func(pattern string, p Perm, fn handler)) {
	// The worker and manifest are public: a browser fetches them itself.
	h("GET /sw.js", PermPublic, s.serviceWorker)
	h("GET /manifest.webmanifest", PermPublic, s.manifest)
	h("GET /icons/{name}", PermPublic, s.icon)
	if s.Push == nil {
		return
	}
	h("POST /account/push", PermOwn, s.pushSubscribeSubmit)
	h("POST /account/push/{id}/delete", PermOwn, s.pushRemoveSubmit)
	h("GET /api/v1/push", PermOwn, s.apiPush)
	h("POST /api/v1/push/devices", PermOwn, s.apiPushSubscribe)
	h("DELETE /api/v1/push/devices/{id}", PermOwn, s.apiPushRemove)
}

// serviceWorker serves web/static/sw.js from the root, so its scope is
// the whole portal (Service Workers 1, 4.3: the default scope is the
// script's folder; the header says the same explicitly).
func (s *Server) serviceWorker(w http.ResponseWriter, r *http.Request, _ *viewer) {
	b, err := fs.ReadFile(web.Static(), "sw.js")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Service-Worker-Allowed", "/")
	w.Write(b)
}

type manifestIcon struct {
	Src     string `json:"src"`
	Sizes   string `json:"sizes"`
	Type    string `json:"type"`
	Purpose string `json:"purpose"`
}

// manifest is the web app manifest: installable, standalone, named after
// the organisation (Web Application Manifest, W3C).
func (s *Server) manifest(w http.ResponseWriter, r *http.Request, _ *viewer) {
	m := map[string]any{
		"name":             s.Org.Name + " secure messages",
		"short_name":       s.Org.Name,
		"description":      "Secure messages from " + s.Org.Name,
		"start_url":        "/inbox",
		"scope":            "/",
		"id":               "/",
		"display":          "standalone",
		"background_color": "#ffffff",
		"theme_color":      "#0b5394",
		"icons": []manifestIcon{
			{Src: "/icons/icon-192.png", Sizes: "192x192", Type: "image/png", Purpose: "any"},
			{Src: "/icons/icon-512.png", Sizes: "512x512", Type: "image/png", Purpose: "any"},
			{Src: "/icons/maskable-512.png", Sizes: "512x512", Type: "image/png", Purpose: "maskable"},
		},
	}
	w.Header().Set("Content-Type", "application/manifest+json")
	json.NewEncoder(w).Encode(m)
}

var iconSizes = map[string]int{"icon-192.png": 192, "icon-512.png": 512, "maskable-512.png": 512, "apple-touch-icon.png": 180}

var (
	iconOnce  sync.Once
	iconCache map[string][]byte
)

func (s *Server) icon(w http.ResponseWriter, r *http.Request, _ *viewer) {
	iconOnce.Do(func() {
		iconCache = map[string][]byte{}
		for name, size := range iconSizes {
			iconCache[name] = drawIcon(size)
		}
	})
	b, ok := iconCache[r.PathValue("name")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Write(b)
}

// drawIcon paints the portal's icon: a white envelope on the portal's
// blue, inside the middle 60% so a maskable crop keeps it whole.
func drawIcon(size int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	blue, white := color.NRGBA{0x0b, 0x53, 0x94, 0xff}, color.NRGBA{0xff, 0xff, 0xff, 0xff}
	f := float64(size)
	left, right, top, bottom := 0.24*f, 0.76*f, 0.32*f, 0.68*f
	stroke := 0.035 * f
	for y := range size {
		for x := range size {
			c := blue
			fx, fy := float64(x), float64(y)
			if fx >= left && fx <= right && fy >= top && fy <= bottom {
				c = white
				// The flap: a V from the top corners to the middle.
				mid, half := (left+right)/2, (right-left)/2
				d := fy - top - (0.5*(bottom-top))*(1-abs(fx-mid)/half)
				if abs(d) < stroke {
					c = blue
				}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err) // only on a writer error; bytes.Buffer has none
	}
	return buf.Bytes()
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func (s *Server) pushData(r *http.Request, v *viewer) (*pushView, error) {
	if s.Push == nil {
		return nil, nil
	}
	return s.opPushDevices(r, v, struct{}{})
}

// opPushDevices lists the account's push devices and the key a browser
// subscribes with.
func (s *Server) opPushDevices(r *http.Request, v *viewer, _ struct{}) (*pushView, error) {
	devs, err := s.Push.Devices(r.Context(), v.user.ID)
	if err != nil {
		return nil, err
	}
	if devs == nil {
		devs = []notify.Device{}
	}
	return &pushView{Key: s.Push.VAPIDPublic, Devices: devs, Max: s.Push.MaxDevices}, nil
}

type subscribeIn struct {
	Subscription notify.Subscription `json:"subscription"`
	Label        string              `json:"label"`
}

// opPushSubscribe adds (or replaces) a push device; it audits the outcome,
// refusals included.
func (s *Server) opPushSubscribe(r *http.Request, v *viewer, in subscribeIn) (notify.Device, error) {
	dev, err := s.Push.Subscribe(r.Context(), v.user.ID, in.Subscription, in.Label)
	var re *notify.RefusedError
	switch {
	case errors.As(err, &re):
		s.audit(r, "push.subscribe", "user", v.user.ID, "refused", map[string]string{"reason": re.Reason})
		return dev, refused(http.StatusBadRequest, "refused", "This browser's notification service cannot be used: "+re.Reason+".", err)
	case errors.Is(err, notify.ErrTooManyDevices):
		s.audit(r, "push.subscribe", "user", v.user.ID, "refused", map[string]string{"reason": "too many devices"})
		return dev, refused(http.StatusConflict, "too_many_devices", "You already have the most devices with notifications on. Remove one first.", err)
	case err != nil:
		return dev, err
	}
	s.Log.InfoContext(r.Context(), "push subscription added", "user", v.user.ID, "device", dev.ID, "service", dev.Service)
	s.audit(r, "push.subscribe", "user", v.user.ID, "ok", map[string]string{"device": dev.ID, "service": dev.Service})
	return dev, nil
}

type deviceIn struct{ ID string }

// opPushRemove removes one of the account's push devices.
func (s *Server) opPushRemove(r *http.Request, v *viewer, in deviceIn) (struct{}, error) {
	err := s.Push.Remove(r.Context(), v.user.ID, in.ID)
	if errors.Is(err, store.ErrNotFound) {
		return struct{}{}, refused(http.StatusNotFound, "not_found", "That device does not get notifications (any more).", err)
	}
	if err != nil {
		return struct{}{}, err
	}
	s.Log.InfoContext(r.Context(), "push subscription removed", "user", v.user.ID, "device", in.ID)
	s.audit(r, "push.unsubscribe", "user", v.user.ID, "ok", map[string]string{"device": in.ID})
	return struct{}{}, nil
}

// pushSubscribeSubmit takes the subscription push.js read from the
// browser (PushSubscription.toJSON()) as form fields.
func (s *Server) pushSubscribeSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in subscribeIn
	in.Subscription.Endpoint, in.Subscription.Keys.P256dh, in.Subscription.Keys.Auth = r.PostFormValue("endpoint"), r.PostFormValue("p256dh"), r.PostFormValue("auth")
	in.Label = r.PostFormValue("label")
	if _, err := s.opPushSubscribe(r, v, in); err != nil {
		s.pageRefused(w, r, err, s.accountData(r, v), func(status int, d pageData) { s.render(w, r, status, "account.html", d) })
		return
	}
	http.Redirect(w, r, "/account?push=on#notifications", http.StatusSeeOther)
}

func (s *Server) pushRemoveSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	_, err := s.opPushRemove(r, v, deviceIn{ID: r.PathValue("id")})
	if oe := asRefusal(err); err != nil && (oe == nil || oe.Status != http.StatusNotFound) {
		s.pageRefused(w, r, err, s.accountData(r, v), func(status int, d pageData) { s.render(w, r, status, "account.html", d) })
		return
	}
	// Gone already (or never theirs): the list shows what is left.
	http.Redirect(w, r, "/account?push=removed#notifications", http.StatusSeeOther)
}

func (s *Server) apiPush(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opPushDevices(r, v, struct{}{})
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

func (s *Server) apiPushSubscribe(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in subscribeIn
	if !decodeJSON(w, r, &in) {
		return
	}
	out, err := s.opPushSubscribe(r, v, in)
	s.apiAnswer(w, r, http.StatusCreated, out, err)
}

func (s *Server) apiPushRemove(w http.ResponseWriter, r *http.Request, v *viewer) {
	_, err := s.opPushRemove(r, v, deviceIn{ID: r.PathValue("id")})
	s.apiAnswer(w, r, http.StatusNoContent, nil, err)
}
