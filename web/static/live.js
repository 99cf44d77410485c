// Live inbox and Sent page (issue 10.1). session.js holds the page's
// websocket; when it hears that a message of this account changed (the
// frame names only the kind of change and the message's id), this script
// re-reads the list through the JSON API and redraws it. The request says
// X-Phigate-Live, so it does not count as activity: an unattended page
// still signs out when idle. Without JavaScript the page is the server's
// own rendering, reloaded by hand.
(function () {
  "use strict";
  var root = document.querySelector("[data-live]");
  if (!root || !window.fetch) { return; }
  var box = root.getAttribute("data-live");
  var api = "/api/v1/messages";
  var status = document.getElementById("live-status");
  var org = root.getAttribute("data-org") || "your organisation";
  var running = false, again = false, expiryTimer = null;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  function date(s) {
    if (!s) { return ""; }
    var d = new Date(s);
    if (isNaN(d.getTime()) || d.getFullYear() < 2) { return ""; }
    return d.toLocaleString(undefined, { day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit" });
  }

  function inboxRow(m) {
    var li = el("li", m.read ? "" : "unread");
    li.setAttribute("data-id", m.id);
    if (m.recalled || m.locked) {
      var d = el("div", "locked");
      d.appendChild(el("span", "from", m.recalled ? "Recalled message" : "Locked message"));
      d.appendChild(el("span", "meta", "Received " + date(m.received_at) + " · " +
        (m.recalled ? "the sender withdrew it" : "waiting for " + org + " to restore access")));
      li.appendChild(d);
      return li;
    }
    var a = el("a");
    a.href = "/messages/" + encodeURIComponent(m.id);
    a.appendChild(el("span", "from", m.from || ""));
    a.appendChild(el("span", "subject", m.subject || "(no subject)"));
    var meta = el("span", "meta", date(m.date));
    if (m.attachments) { meta.textContent += " · " + m.attachments + " attachment" + (m.attachments > 1 ? "s" : ""); }
    if (!m.read) { meta.appendChild(document.createTextNode(" · ")); meta.appendChild(el("strong", "", "New")); }
    a.appendChild(meta);
    li.appendChild(a);
    return li;
  }

  function inbox(list) {
    if (!list.length) { return el("p", "", "You have no messages right now. Messages are removed after they expire."); }
    var ul = el("ul", "inbox");
    list.forEach(function (m) { ul.appendChild(inboxRow(m)); });
    return ul;
  }

  // The inbox lists only unexpired messages: re-read when the next one
  // expires, even if no event comes (the purge runs hourly).
  function watchExpiry(list) {
    if (expiryTimer) { clearTimeout(expiryTimer); }
    var next = Infinity, now = Date.now();
    list.forEach(function (m) {
      var t = Date.parse(m.expires_at);
      if (t > now && t < next) { next = t; }
    });
    if (next !== Infinity) { expiryTimer = setTimeout(refresh, Math.min(next - now + 1000, 0x7fffffff)); }
  }

  function draw(list, hint) {
    var view = inbox(list);
    while (root.firstChild) { root.removeChild(root.firstChild); }
    root.appendChild(view);
    root.setAttribute("data-live-count", String(list.length));
    if (status && hint) { status.textContent = hint; }
    watchExpiry(list);
  }

  // The Sent page is redrawn from the server's own rendering of /sent
  // (issue 13.3): subjects, statuses in words and times in the
  // organisation's zone are worded in one place, the template.
  function redrawSent(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live-list");
    if (!fresh) { return; }
    root.innerHTML = fresh.innerHTML;
    root.setAttribute("data-live-count", String(root.querySelectorAll("tbody tr").length));
  }

  function refresh(hint) {
    if (running) { again = true; return; }
    running = true;
    if (box === "sent") {
      fetch("/sent", { credentials: "same-origin", headers: { "Accept": "text/html", "X-Phigate-Live": "1" } })
        .then(function (r) { return r.status === 200 ? r.text() : null; })
        .then(function (html) { if (html) { redrawSent(html); } })
        .catch(function () { /* the next event or reload catches up */ })
        .then(function () {
          running = false;
          if (again) { again = false; refresh(); }
        });
      return;
    }
    fetch(api, { credentials: "same-origin", headers: { "Accept": "application/json", "X-Phigate-Live": "1" } })
      .then(function (r) { return r.status === 200 ? r.json() : null; })
      .then(function (d) { if (d && d.messages) { draw(d.messages, typeof hint === "string" ? hint : ""); } })
      .catch(function () { /* network trouble: the next event or reload catches up */ })
      .then(function () {
        running = false;
        if (again) { again = false; refresh(); }
      });
  }

  var hints = { "new-message": "A new secure message arrived.", "message-recalled": "A message was recalled." };
  document.addEventListener("phigate-live", function (e) {
    var m = e.detail || {};
    // data-live-state: "ready" while the page hears its events.
    if (m.type === "ready" || m.type === "resync") { root.setAttribute("data-live-state", "ready"); }
    if (m.type === "closed") { root.setAttribute("data-live-state", "closed"); }
    if (m.type === "resync") { refresh(); return; }
    if (m.type === "message" && m.box === box) { refresh(box === "inbox" ? hints[m.event] : ""); }
  });
  // Arm the expiry timer for what the server rendered.
  watchExpiry(Array.prototype.map.call(root.querySelectorAll("[data-expires]"), function (e) {
    return { expires_at: e.getAttribute("data-expires") };
  }));
})();
