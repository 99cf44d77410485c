// Auto-logoff (HIPAA 164.312(a)(2)(iii)): warns 60 seconds before the idle
// timeout, offers "Stay signed in", and when the session ends for any reason
// removes the page's content and goes to the sign-in page, in every open
// tab. The server is the authority: it reports the time left and the end of
// the session over a websocket, so throttled background timers don't matter.
(function () {
  "use strict";
  var body = document.body;
  var idle = parseInt(body.getAttribute("data-idle"), 10);
  if (!idle) { return; }
  var WARN = 60;
  var expiresAt = Date.now() + idle * 1000;
  var box = document.getElementById("logoff-warning");
  var secs = document.getElementById("logoff-seconds");
  var stay = document.getElementById("logoff-stay");
  // The visible seconds change every second; a screen reader hears the
  // countdown twice only: when it opens and when NEAR seconds are left
  // (issue 13.8). The box itself is not a live region.
  var announce = document.getElementById("logoff-announce");
  var NEAR = 10;
  var saidNear = false;
  var done = false;
  // A form on this page is on its way (second factor, enrolment): its
  // answer is the next page, so a "privilege" end it causes must not
  // reload this one over it.
  var submitting = false;
  document.addEventListener("submit", function () { submitting = true; }, true);
  var chan = ("BroadcastChannel" in window) ? new BroadcastChannel("phigate-session") : null;

  function wipe(reason) {
    if (done) { return; }
    done = true;
    // Remove everything the page showed before leaving it.
    var main = document.getElementById("main");
    if (main) { main.innerHTML = ""; }
    Array.prototype.forEach.call(document.querySelectorAll("iframe"), function (f) { f.remove(); });
    document.title = "Signed out";
    if (chan) { chan.postMessage({ type: "ended", reason: reason }); }
    window.location.replace("/login?ended=" + encodeURIComponent(reason || "idle"));
  }

  function say(text) {
    if (announce && announce.textContent !== text) { announce.textContent = text; }
  }

  function hide() {
    box.hidden = true;
    saidNear = false;
    // Emptied quietly, so that the next countdown's words are news again.
    if (announce) { announce.textContent = ""; }
  }

  function setExpiry(at) {
    expiresAt = at;
    if (box && box.hidden === false && expiresAt - Date.now() > WARN * 1000) { hide(); }
  }

  function tick() {
    if (done) { return; }
    var left = Math.ceil((expiresAt - Date.now()) / 1000);
    if (left <= 0) { wipe("idle"); return; }
    if (left <= WARN && box) {
      secs.textContent = String(left);
      if (box.hidden) {
        box.hidden = false;
        saidNear = left <= NEAR;
        say("You will be signed out in " + left + " seconds to protect your information. Choose Stay signed in to continue.");
        stay.focus();
      } else if (left <= NEAR && !saidNear) {
        saidNear = true;
        say(left + " seconds left before you are signed out.");
      }
    }
  }
  setInterval(tick, 1000);

  if (stay) {
    stay.addEventListener("click", function () {
      fetch("/session/keepalive", { method: "POST", credentials: "same-origin" }).then(function (r) {
        if (r.status !== 200) { wipe("idle"); return; }
        var at = Date.now() + idle * 1000;
        setExpiry(at);
        hide();
        if (chan) { chan.postMessage({ type: "extend", expiresAt: at }); }
      }, function () { /* network trouble: the countdown goes on */ });
    });
  }

  if (chan) {
    chan.onmessage = function (e) {
      if (!e.data) { return; }
      if (e.data.type === "ended") { wipe(e.data.reason); }
      if (e.data.type === "extend") { setExpiry(e.data.expiresAt); }
    };
  }

  function live(m) {
    if (typeof CustomEvent === "function") { document.dispatchEvent(new CustomEvent("phigate-live", { detail: m })); }
  }

  var retry = 1000, opened = false, ready = false;
  function connect() {
    if (done || !("WebSocket" in window)) { return; }
    var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    ws.onmessage = function (e) {
      var m;
      try { m = JSON.parse(e.data); } catch (err) { return; }
      // "privilege": the session got a new id (second factor, role change);
      // reloading picks up the new cookie or lands on the sign-in page.
      if (m.type === "ended" && m.reason === "privilege") { done = true; if (!submitting) { window.location.reload(); } return; }
      if (m.type === "ended") { wipe(m.reason); }
      // A message of this account changed: live.js re-reads the list.
      if (m.type === "message") { live(m); }
      // The first report means the server listens for this account's
      // events; after a reconnect, those sent meanwhile were missed.
      if (m.type === "state" && !ready) {
        ready = true;
        live({ type: opened ? "resync" : "ready" });
        opened = true;
      }
      if (m.type === "state" && typeof m.expires_in === "number") {
        retry = 1000;
        setExpiry(Date.now() + m.expires_in * 1000);
      }
    };
    ws.onclose = function () {
      ready = false;
      live({ type: "closed" });
      if (done) { return; }
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }
  connect();
})();
